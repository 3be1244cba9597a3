"""The built-in alert rules, run against the store: :class:`RuleEngine`.

The decisions are :mod:`flowsight.model.alerts.builtin_rules`' pure functions; this class
only feeds them runs, histories and step failures, and remembers what it has
fired so that each alert is sent firing once and resolved once.

* :meth:`RuleEngine.observe` is called after the hub stored a batch. It keeps
  step failures and completions from the events themselves, and reads a run
  (``store.runs.get_run``, at most once per run per batch) only when one of its
  events can change a verdict: ``failed`` (RunFailed), ``completed`` while its
  workflow has a failure firing ("green again"), and any of ``started``,
  ``step_failed``, ``step_completed``, ``failed``, ``completed``,
  ``cancelled``, ``resumed`` for a run that has an alert firing.
* :meth:`RuleEngine.tick` is called every few seconds: it checks the Running
  and Suspended runs for stalls and slowness (``store.runs.list_runs``), with each
  workflow's history cached for ``history_ttl`` seconds (``history_refresh``
  once one of its runs completes), and reads again the
  runs whose stall or slowness alert fires but that are no longer live.

What fires converges on what a fresh engine would fire from the store: after
a restart the engine rebuilds it at its first call from failed runs of the
last ``lookback`` seconds not followed by a completion of their workflow, the
live runs, and the step failures within the rules' windows. Re-sending those
is harmless (the alert manager dedups by fingerprint). Alerts fired before a
restart whose condition ended while the engine was down are not in the store
any more; hand them over with :meth:`RuleEngine.restore` (e.g. from the alert
manager's snapshot) and the next call checks each against the store and
resolves those that ended: a RunFailed whose run is gone, turned off, or
answered by a completion of its workflow after it; a StepFailedRepeatedly
whose step completed after it fired (in a run started within the rule's
window before it, or still live), or turned off; a RunStalled or RunSlow
whose run is no longer live (the tick). For the same reason a RunFailed
expires ``lookback`` after its failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType

from flowsight.model.alerts import Alert, AlertStatus
from flowsight.model.runs.events import Event, EventKind
from flowsight.model.runs.execution import ExecutionMetrics
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.alerts.builtin_rules import (
    ALERT_NAMES,
    RUN_FAILED,
    RUN_SLOW,
    RUN_STALLED,
    STEP_FAILED_REPEATEDLY,
    AlertKey,
    RuleSettings,
    StepFailure,
    StepFailures,
    WorkflowSettings,
    alert_key,
    answered_by,
    evaluate_run,
    evaluate_step,
    expire_failures,
    green_again,
    resolve,
    rules_for,
    step_failure,
)
from flowsight.model.runs.stall import DEFAULT_TIMEOUT
from flowsight.model.runs.state import WorkflowState
from flowsight.store.interface import Store

K, S = EventKind, WorkflowState
_LOOKUP_KINDS = frozenset({K.STARTED, K.STEP_FAILED, K.STEP_COMPLETED, K.FAILED, K.COMPLETED, K.CANCELLED, K.RESUMED})
_LIVE = (S.RUNNING, S.SUSPENDED)
_NO_WORKFLOWS: Mapping[str, WorkflowSettings] = MappingProxyType({})
_PAGE = 500


class RuleEngine:
    """Runs the built-in rules and hands each alert to ``send`` (firing once,
    resolved once). ``send`` is called with the engine's lock held: it must
    not call back into the engine.

    ``settings``: the global rules; ``workflows``: per-workflow settings whose
    ``rules`` win over them. ``clock``: the time used when none is passed.
    ``external_url``: the base of each alert's link (``{external_url}/runs/{run_id}``).
    ``stall_timeout``: the stall bound for a run without history or its own.
    ``history_ttl``: how long a workflow's history is reused;
    ``history_refresh``: how long at most once a run of it has completed (a
    workflow that completes runs all the time is not read again for each
    one: one more run barely moves the median of twenty). ``lookback``:
    how far back a restart looks for failed runs. ``max_runs``: at most this
    many runs are read per scan (live runs per tick, runs at a rebuild).
    """

    def __init__(
        self,
        store: Store,
        send: Callable[[Alert], None],
        settings: RuleSettings = RuleSettings(),
        workflows: Mapping[str, WorkflowSettings] = _NO_WORKFLOWS,
        *,
        clock: Callable[[], float] = time.time,
        external_url: str = "",
        stall_timeout: float = DEFAULT_TIMEOUT,
        history_ttl: float = 30.0,
        history_refresh: float = 5.0,
        lookback: float = 7 * 86400.0,
        max_runs: int = 10_000,
    ) -> None:
        self.store = store
        self.send = send
        self.settings = settings
        self.workflows = dict(workflows)
        self.clock = clock
        self.external_url = external_url
        self.stall_timeout = stall_timeout
        self.history_ttl = history_ttl
        self.history_refresh = history_refresh
        self.lookback = lookback
        self.max_runs = max_runs
        #: what this engine has sent firing and not yet resolved
        self.firing: dict[AlertKey, Alert] = {}
        self._steps: dict[tuple[str, str], StepFailures] = {}
        # workflow -> (read at, reuse until, history)
        self._history: dict[str, tuple[float, float, WorkflowHistory]] = {}
        self._lock = threading.Lock()
        self._rebuilt = False
        self._restored: set[AlertKey] = set()  # handed over by restore(), not yet checked

    # ---- input ----------------------------------------------------------------
    def step_workflows(self) -> set[str]:
        """Workflows whose step completions matter now (a step with failures
        counted, or a StepFailedRepeatedly firing): a reader of the store
        need fetch ``step_completed`` events of these only."""
        with self._lock:
            out = {wf for wf, _ in self._steps}
            out.update(key[1] for key in self.firing if key[0] == STEP_FAILED_REPEATEDLY)
            return out

    def observe(self, events: Sequence[Event]) -> None:
        """Take a batch the store has just written (duplicates are harmless)."""
        if not events:
            return
        with self._lock:
            now = self.clock()
            self._rebuild(now)
            self._catch_up(now)
            touched: set[tuple[str, str]] = set()
            # per run of the batch: its workflow, the kinds that may matter, its `failed` event
            lookups: dict[str, tuple[str, set[EventKind], list[Event]]] = {}
            for ev in events:
                kind = ev.kind
                if (kind is K.STEP_FAILED or kind is K.STEP_COMPLETED) and ev.step:
                    if self._track_step(ev):
                        touched.add((ev.workflow, ev.step))
                if kind in _LOOKUP_KINDS:
                    entry = lookups.get(ev.run_id)
                    if entry is None:
                        entry = lookups[ev.run_id] = (ev.workflow, set(), [])
                    entry[1].add(kind)
                    if kind is K.FAILED:
                        entry[2][:] = [ev]  # it carries the traceback
            for wf, step in sorted(touched):
                self._evaluate_step(wf, step, now)
            for rid, (wf, kinds, failed) in lookups.items():
                if K.COMPLETED in kinds and wf in self._history:  # one more completed run: the usual duration moves
                    at, until, h = self._history[wf]
                    self._history[wf] = (at, min(until, at + self.history_refresh), h)
                if self._worth_reading(rid, wf, kinds):
                    self._evaluate_run_id(rid, now, failed[0] if failed else None)

    def tick(self, now: float | None = None) -> None:
        """Check the live runs for stalls and slowness; resolve what ended unseen."""
        with self._lock:
            now = self.clock() if now is None else now
            self._rebuild(now)
            self._catch_up(now)
            self._tick(now)

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Take alerts fired before a restart (e.g. the alert manager's
        snapshot): the firing ones this engine's rules made are remembered,
        and the next :meth:`observe` or :meth:`tick` resolves those whose
        condition ended meanwhile (then the rest as their condition ends).
        Others are ignored."""
        with self._lock:
            for a in alerts:
                if a.status is AlertStatus.FIRING and a.labels.get("alertname") in ALERT_NAMES:
                    key = alert_key(a)
                    if key not in self.firing:
                        self.firing[key] = a
                        self._restored.add(key)

    # ---- the work --------------------------------------------------------------------
    def _emit(self, alerts: Iterable[Alert]) -> None:
        """Send what changes: a firing alert not yet firing, a resolution of one that is."""
        for a in alerts:
            key = alert_key(a)
            if a.status is AlertStatus.RESOLVED:
                if self.firing.pop(key, None) is None:
                    continue
            elif key in self.firing:
                continue
            else:
                self.firing[key] = a
            self.send(a)

    def _rules(self, workflow: str) -> RuleSettings:
        return rules_for(workflow, self.settings, self.workflows)

    def _run_alerts(self, run_id: str) -> list[Alert]:
        return [a for (name, _, rid), a in self.firing.items() if rid == run_id and name != STEP_FAILED_REPEATEDLY]

    def _worth_reading(self, run_id: str, workflow: str, kinds: set[EventKind]) -> bool:
        """Whether the run's verdicts may change with events of ``kinds``: only
        a failure fires from an event; anything else can only resolve what fires."""
        if K.FAILED in kinds:
            return True
        if K.COMPLETED in kinds and any(name == RUN_FAILED and wf == workflow for name, wf, _ in self.firing):
            return True
        return bool(self._run_alerts(run_id))

    def _evaluate_run_id(self, run_id: str, now: float, ev: Event | None = None) -> None:
        m = self.store.runs.get_run(run_id)
        if m is None:  # pruned (or never stored): nothing of it can still fire
            self._emit(resolve(a, now, "the run is no longer in the store") for a in self._run_alerts(run_id))
            return
        tb = ev.attrs.get("traceback") if ev is not None and ev.kind is K.FAILED else None
        self._evaluate_run(m, now, tb if isinstance(tb, str) else None)

    def _evaluate_run(
        self,
        m: ExecutionMetrics,
        now: float,
        traceback: str | None = None,
        last_ok: dict[str, ExecutionMetrics | None] | None = None,
    ) -> None:
        """Send what ``m`` calls for. ``last_ok``: a cache of :meth:`_last_completed` by workflow."""
        history = None if m.state.terminal else self._history_of(m.workflow, now)
        out = evaluate_run(
            m,
            history,
            self._rules(m.workflow),
            now,
            self._run_alerts(m.run_id),
            traceback=traceback,
            timeout=self.stall_timeout,
            external_url=self.external_url,
        )
        if any(a.status is AlertStatus.FIRING and a.name == RUN_FAILED for a in out):
            # a failure reaching us after a later run of its workflow completed
            # (events delivered late, or seen again) is old news: as at a rebuild
            if last_ok is None:
                last_ok = {}
            if m.workflow not in last_ok:
                last_ok[m.workflow] = self._last_completed(m.workflow)
            done = last_ok[m.workflow]
            if done is not None:
                out = [a for a in out if not (a.status is AlertStatus.FIRING and answered_by(a, done))]
        self._emit(out)
        if m.state is S.COMPLETED:
            failed = [a for (name, wf, _), a in self.firing.items() if name == RUN_FAILED and wf == m.workflow]
            self._emit(green_again(m, failed, now))

    def _last_completed(self, workflow: str) -> ExecutionMetrics | None:
        """The completed run of ``workflow`` that ended last (among its 20 newest)."""
        best: ExecutionMetrics | None = None
        for m in self._runs(workflow=workflow, states=(S.COMPLETED,), limit=20):
            if m.end_time is not None and (best is None or best.end_time is None or m.end_time > best.end_time):
                best = m
        return best

    def _history_of(self, workflow: str, now: float) -> WorkflowHistory:
        hit = self._history.get(workflow)
        if hit is not None and hit[0] <= now < hit[1]:
            return hit[2]
        runs = max(20, self._rules(workflow).run_slow.min_runs)
        h = self.store.stats.history(workflow, runs)
        self._history[workflow] = (now, now + self.history_ttl, h)
        return h

    def _track_step(self, ev: Event) -> bool:
        """Note a step failure or completion; True when it may change a verdict."""
        key = (ev.workflow, ev.step or "")
        known = self._steps.get(key)
        if ev.kind is K.STEP_COMPLETED:
            if known is None:
                if (STEP_FAILED_REPEATEDLY, key[0], key[1]) not in self.firing:
                    return False  # nothing counted, nothing firing: a completion changes nothing
                known = self._steps[key] = StepFailures()  # firing since before a restart
            known.completed(ev.ts)
            return True
        if known is None:
            known = self._steps[key] = StepFailures()
        return known.failed(step_failure(ev))

    def _evaluate_step(self, workflow: str, step: str, now: float) -> None:
        key = (workflow, step)
        known = self._steps.get(key)
        if known is None:
            return
        rule = self._rules(workflow).step_failed
        known.prune(now, rule.window)
        firing = self.firing.get((STEP_FAILED_REPEATEDLY, workflow, step))
        self._emit(evaluate_step(workflow, step, known, rule, now, firing, external_url=self.external_url))
        if not known.failures and (STEP_FAILED_REPEATEDLY, workflow, step) not in self.firing:
            del self._steps[key]  # nothing left to count or resolve

    def _tick(self, now: float) -> None:
        seen: set[str] = set()
        for m in self._runs(states=_LIVE):
            seen.add(m.run_id)
            self._evaluate_run(m, now)
        # a stalled or slow run that ended (or was suspended and then ended)
        # between ticks without an event this engine saw
        gone = {rid for (name, _, rid), _a in self.firing.items() if name in (RUN_STALLED, RUN_SLOW)} - seen
        for rid in sorted(gone):
            self._evaluate_run_id(rid, now)
        for wf, step in list(self._steps):
            self._evaluate_step(wf, step, now)  # prunes failures out of the window
        self._emit(
            expire_failures([a for (name, _, _r), a in self.firing.items() if name == RUN_FAILED], now, self.lookback)
        )
        for wf, (at, until, _h) in list(self._history.items()):
            if not at <= now < until:
                del self._history[wf]

    def _runs(
        self,
        *,
        states: Sequence[WorkflowState] | None = None,
        since: float | None = None,
        workflow: str | None = None,
        limit: int | None = None,
    ) -> Iterator[ExecutionMetrics]:
        """Runs newest first, page by page, up to ``limit`` (default ``max_runs``)."""
        return self.store.runs.each_run(
            workflow=workflow, states=states, since=since, limit=self.max_runs if limit is None else limit, page=_PAGE
        )

    # ---- after a restart ---------------------------------------------------------------
    def _rebuild(self, now: float) -> None:
        """Once, at the first call: what should fire now, from the store."""
        if self._rebuilt:
            return
        self._rebuilt = True
        self._rebuild_failed_runs(now)
        self._rebuild_steps(now)
        self._tick(now)

    def _rebuild_failed_runs(self, now: float) -> None:
        """RunFailed for the runs that failed within the last ``lookback``
        seconds and that no later completion of their workflow answered. Runs
        are read by creation, so one created before that horizon and failed
        after it is not fired again here (what fired is handed over by
        :meth:`restore`)."""
        last_ok: dict[str, ExecutionMetrics | None] = {}
        for m in reversed(list(self._runs(states=(S.FAILED,), since=now - self.lookback))):  # oldest first
            if m.end_time is None or now - m.end_time <= self.lookback:
                self._evaluate_run(m, now, last_ok=last_ok)

    def _catch_up(self, now: float) -> None:
        """Check the alerts :meth:`restore` handed over against the store and
        resolve those whose condition ended while no engine ran. RunStalled
        and RunSlow need nothing here: the tick reads their runs."""
        if not self._restored:
            return
        keys, self._restored = sorted(self._restored), set()
        last_ok: dict[str, ExecutionMetrics | None] = {}
        for key in keys:
            name, wf, which = key
            if key not in self.firing:
                continue
            if name == RUN_FAILED:
                self._evaluate_run_id(which, now)  # gone from the store, no longer Failed, rule turned off
                alert = self.firing.get(key)
                if alert is not None:
                    if wf not in last_ok:
                        last_ok[wf] = self._last_completed(wf)
                    done = last_ok[wf]
                    if done is not None:
                        self._emit(green_again(done, [alert], now))
            elif name == STEP_FAILED_REPEATEDLY:
                self._catch_up_step(wf, which, self.firing[key], now)

    def _catch_up_step(self, workflow: str, step: str, alert: Alert, now: float) -> None:
        """Whether ``step`` completed since ``alert`` fired, from the step records
        of the workflow's live runs and those started within the rule's window
        before the alert (a run started earlier and ended since is missed: the
        alert then resolves at the step's next completion)."""
        key = (workflow, step)
        known = self._steps.setdefault(key, StepFailures())
        rule = self._rules(workflow).step_failed
        if rule.enabled:
            runs = {m.run_id: m for m in self._runs(workflow=workflow, states=_LIVE)}
            runs.update((m.run_id, m) for m in self._runs(workflow=workflow, since=alert.starts_at - rule.window))
            for m in runs.values():
                if step not in m.completed_names or (m.end_time is not None and m.end_time < alert.starts_at):
                    continue
                ends = [
                    s.ended_at
                    for s in self.store.runs.run_steps(m.run_id)
                    if s.step == step
                    and s.status == "completed"
                    and s.ended_at is not None
                    and s.ended_at >= alert.starts_at
                ]
                if ends:
                    known.completed(max(ends))
                    break
        self._evaluate_step(workflow, step, now)

    def _rebuild_steps(self, now: float) -> None:
        """Step failures within each workflow's window, and the completions of
        those steps after them, from the step records of the runs concerned."""
        rules = [self.settings, *(w.rules for w in self.workflows.values() if w.rules is not None)]
        window = max((r.step_failed.window for r in rules if r.step_failed.enabled), default=0.0)
        if window <= 0:
            return
        runs = {m.run_id: m for m in self._runs(since=now - window)}
        runs.update((m.run_id, m) for m in self._runs(states=_LIVE))  # started earlier, failing lately
        failing = {(m.workflow, name) for m in runs.values() if m.failed_steps for name in m.step_attempts}
        wanted = [
            m
            for m in runs.values()
            if m.failed_steps or any((m.workflow, name) in failing for name in m.completed_names)
        ]
        failures: list[tuple[tuple[str, str], StepFailure]] = []
        completions: list[tuple[tuple[str, str], float]] = []
        for m in wanted:
            # the events, not the step records: their ids match what observe() may see again
            for ev in self.store.runs.run_events(m.run_id):
                key = (ev.workflow, ev.step or "")
                if key not in failing:
                    continue
                if ev.kind is K.STEP_FAILED and now - ev.ts <= window:
                    failures.append((key, step_failure(ev)))
                elif ev.kind is K.STEP_COMPLETED:
                    completions.append((key, ev.ts))
        for key, f in failures:
            self._steps.setdefault(key, StepFailures()).failed(f)
        for key, ts in completions:  # after all failures: the order runs were read in does not matter
            if key in self._steps:
                self._steps[key].completed(ts)
        for wf, step in sorted(self._steps):
            self._evaluate_step(wf, step, now)
