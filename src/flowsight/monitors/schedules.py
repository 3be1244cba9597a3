"""Schedules at work: :class:`ScheduleMonitor` judges every scheduled
workflow's slots as time passes and runs report, keeps the judgements, and
sends the alerts they call for (firing once, resolved once).

The judgements and the alerts are the pure functions of
:mod:`flowsight.model.schedules`; this class feeds them:

* runs, from the events the server stores (:meth:`observe`: ``started``,
  the run's end, and the steps of workflows with step limits), read back
  from the store once at the first call (the runs of the last days);
* when flowsight was watching: its own heartbeat, written to the store
  every ``heartbeat`` seconds (``store.schedules.watching``), and the
  spans other (and earlier) server processes wrote. A heartbeat that cannot
  be written (the store is down or full) ends this process's span as well:
  what it could not store, it did not see;
* time: a workflow is looked at again when something can change without an
  event (the grace of its current slot runs out, the next slot comes, a run
  passes its max_runtime, a deadline comes), or when an event of it came.

Each look judges from the first slot that is not settled, so a server that
was down for a while judges, once, the slots that passed meanwhile: those
whose deciding period it did not watch are ``unknown`` (no alert), and they
are kept so (a second restart judges them no more). A start reported late
(from an SDK's spool) for a slot judged before judges that slot again.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from flowsight.model.alerts import Alert, AlertStatus
from flowsight.model.alerts.builtin_rules import resolve
from flowsight.model.runs.events import Event, EventKind
from flowsight.model.runs.execution import ExecutionMetrics
from flowsight.model.runs.state import WorkflowState
from flowsight.model.schedules import Expectations, ExpectationError, make_expectations
from flowsight.model.schedules.alerts import ALERT_NAMES, AlertKey, alert_key, cleared, wanted
from flowsight.model.schedules.judge import (
    PENDING,
    Coverage,
    RunFacts,
    SlotJudgement,
    judge,
    judge_slot,
    run_findings,
)
from flowsight.model.schedules.slots import NEVER, CronGrid, early
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.schedules")
K, S = EventKind, WorkflowState
#: the events a schedule reads (and, for workflows with step limits, their steps')
RUN_KINDS = frozenset({K.STARTED, K.COMPLETED, K.FAILED, K.CANCELLED, K.SUSPENDED, K.RESUMED})
STEP_KINDS = frozenset({K.STEP_STARTED, K.STEP_COMPLETED, K.STEP_FAILED})
_END = {K.COMPLETED: S.COMPLETED, K.FAILED: S.FAILED, K.CANCELLED: S.CANCELLED}
KEEP = 50  # slots kept per workflow (the strip, the RunMissed chain)
MAX_RUNS = 200  # runs kept per workflow
HEARTBEAT = 10.0  # two spans closer than three of these are one (a heartbeat late on a busy machine)
KEEP_FOR = 35 * 86400.0  # slot judgements kept this long
LOOKBACK = 8 * 86400.0  # how far back the first call reads runs


def manual(attrs: Mapping[str, object]) -> bool:
    """A run started by hand (``trigger = "manual"``): not counted against a slot."""
    return str(attrs.get("trigger", "")).lower() == "manual"


def facts_of(m: ExecutionMetrics) -> RunFacts:
    """What a judgement needs of a stored run."""
    started = m.start_time if m.start_time is not None else m.last_activity
    ended = m.end_time if m.state.terminal else None
    return RunFacts(
        m.run_id,
        started,
        m.state,
        ended,
        manual(m.attrs),
        not m.attrs.get("start_unknown"),
        m.error,
        {name: (began, None) for name, (_attempt, began) in m.open_steps.items()},
    )


@dataclass
class Watch:
    """One workflow being watched."""

    exp: Expectations
    since: float  #: slots before this are not judged
    source: str = "config"  #: "config" (flowsight.toml) or "api" (the API, the SDK)
    grid: CronGrid | None = None
    runs: dict[str, RunFacts] = field(default_factory=dict)
    slots: list[SlotJudgement] = field(default_factory=list)  #: oldest first
    open_from: float | None = None  #: the first slot not settled (None: not known yet)
    next_at: float = NEVER
    due: float = 0.0

    def sorted_runs(self) -> list[RunFacts]:
        return sorted(self.runs.values(), key=lambda r: r.started_at)


def settled(j: SlotJudgement, now: float) -> bool:
    """Whether judging from before ``j`` again can no longer change which
    run is its: the next slot has come (and its deadline, if it has one).
    A live run's own findings (overran) still change: :meth:`ScheduleMonitor._look`
    judges those slots again one by one."""
    if j.next_at > now or j.status == PENDING:
        return False
    return j.deadline_at is None or j.deadline is not None


class ScheduleMonitor:
    """Judges the slots of the workflows in ``expectations`` (and those set
    later, :meth:`set_expectations`) and hands each alert to ``send`` (called
    with the monitor's lock held: it must not call back into the monitor)."""

    def __init__(
        self,
        store: Store,
        send: Callable[[Alert], None],
        expectations: Mapping[str, Expectations] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        external_url: str = "",
        heartbeat: float = HEARTBEAT,
        tolerance: float | None = None,
        keep: float = KEEP_FOR,
        process: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.store = store
        self.send = send
        self.clock = clock
        self.external_url = external_url
        self.heartbeat = heartbeat
        self.tolerance = 3 * heartbeat if tolerance is None else tolerance
        self.keep = keep
        self._pruned = -NEVER
        #: judge without writing (a command's one look): no heartbeat, no judgement kept
        self.read_only = read_only
        self.process = process or f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        self._config = dict(expectations or {})
        self.watches: dict[str, Watch] = {}
        self.firing: dict[AlertKey, Alert] = {}
        self._restored: list[Alert] = []
        self._lock = threading.RLock()
        self._heap: list[tuple[float, str]] = []
        self._dirty: set[str] = set()
        self._started_at: float | None = None
        self._span = (self.process, 0.0)  # the span the heartbeat extends: (key, from)
        self._spans_made = 0
        self._last_beat = -NEVER  # when the last heartbeat was written
        self._spans: list[tuple[float, float]] = []
        self._spans_read = -NEVER
        self._version: tuple[int, float] | None = None
        self._version_read = -NEVER
        self._unsaved: list[tuple[str, SlotJudgement]] = []
        self.ready = False

    # ---- what is expected --------------------------------------------------------------
    def step_workflows(self) -> set[str]:
        """Workflows whose step events matter (those with step limits)."""
        with self._lock:
            return {wf for wf, w in self.watches.items() if w.exp.steps}

    def _load_expectations(self, now: float) -> None:
        """The configuration's expectations and those kept in the store (set
        through the API or the SDK); the configuration's win."""
        if not self.read_only and self._version is None:  # the configuration's are kept with the others
            self.store.schedules.sync_config({wf: e.to_doc() for wf, e in self._config.items()}, now)
        version = self.store.schedules.version()
        self._version_read = now
        if version == self._version:
            return
        self._version = version
        found: dict[str, tuple[Expectations, float, str]] = {}
        for row in self.store.schedules.expectations():
            exp = self._config.get(row.workflow)
            if exp is None:
                try:
                    exp = make_expectations(row.workflow, row.spec)
                except ExpectationError as exc:
                    log.error("the stored expectations of %r are not usable: %s", row.workflow, exc)
                    continue
            found[row.workflow] = (exp, row.since, "config" if row.workflow in self._config else row.source)
        for wf, exp in self._config.items():
            found.setdefault(wf, (exp, now, "config"))
        for wf in list(self.watches):
            if wf not in found:
                self._drop(wf, now)
        for wf, (exp, since, source) in found.items():
            self._apply(exp, since, source, now)

    def _apply(self, exp: Expectations, since: float, source: str, now: float) -> Watch:
        """Watch ``exp``'s workflow, or take its changed expectations."""
        wf = exp.workflow
        w = self.watches.get(wf)
        if w is None:
            w = self.watches[wf] = Watch(exp, since, source, _grid(exp))
            self._dirty.add(wf)
        elif w.exp != exp:
            grid = w.grid if (w.exp.schedule, w.exp.timezone) == (exp.schedule, exp.timezone) else _grid(exp)
            if grid is not w.grid or w.exp.every != exp.every:  # slots from now on, on the new grid
                w.slots = [j for j in w.slots if settled(j, now)]
                w.open_from = None
                w.since = max(since, now) if source == "config" else since
            w.exp, w.grid, w.source = exp, grid, source
            self._dirty.add(wf)
        return w

    def _drop(self, workflow: str, now: float) -> None:
        self.watches.pop(workflow, None)
        for key in [k for k in self.firing if k[1] == workflow]:
            a = self.firing.pop(key)
            self.send(resolve(a, now, cleared(a, None, [], [], now)))

    def set_expectations(self, workflow: str, exp: Expectations | None, since: float | None = None) -> None:
        """Take a change made through the API (kept in the store, with ``since``)
        now, so that it is read back at once: judged right away when the
        monitor has made its first look (else at it)."""
        with self._lock:
            self._version_read = -NEVER  # the next tick reads every expectation again, this one included
            if not self.ready:
                return
            now = self.clock()
            if exp is None:
                self._drop(workflow, now)
                return
            w = self._apply(exp, now if since is None else since, "api", now)
            self._dirty.discard(workflow)
            self._look(w, now, self._coverage(now))
            try:
                self._save(now)
            except Exception:  # noqa: BLE001 - the expectations are kept; the judgements wait for the next tick
                log.warning("schedules: judgements could not be kept (retried at the next tick)", exc_info=True)

    # ---- input ---------------------------------------------------------------------
    def observe(self, events: Sequence[Event]) -> None:
        """Take a batch the store has just written (duplicates are harmless)."""
        with self._lock:
            watches = self.watches
            for ev in events:
                w = watches.get(ev.workflow)
                if w is None:
                    continue
                kind = ev.kind
                run = w.runs.get(ev.run_id)
                if kind is K.STARTED:
                    if run is None:
                        w.runs[ev.run_id] = run = RunFacts(
                            ev.run_id, ev.ts, S.RUNNING, None, manual(ev.attrs), not ev.attrs.get("start_unknown")
                        )
                        self._reopen(w, ev.ts)
                    continue
                if run is None:
                    if kind in STEP_KINDS or kind is K.RESUMED:
                        continue
                    # an end without a start seen (it came before the first call): read it whole at the next look
                    run = w.runs[ev.run_id] = RunFacts(ev.run_id, ev.ts, S.RUNNING)
                    self._reopen(w, ev.ts)
                if kind in _END:
                    run.state, run.ended_at = _END[kind], ev.ts
                    if kind is K.FAILED:
                        err = ev.attrs.get("error")
                        run.error = str(err) if err is not None else None
                elif kind is K.SUSPENDED:
                    run.state = S.SUSPENDED
                elif kind is K.RESUMED:
                    run.state = S.RUNNING
                elif kind in STEP_KINDS and ev.step:
                    if kind is K.STEP_STARTED:
                        run.steps[ev.step] = (ev.ts, None)
                    else:
                        began = run.steps.get(ev.step, (ev.ts, None))[0]
                        run.steps[ev.step] = (began, ev.ts)
                else:
                    continue
                self._dirty.add(ev.workflow)
            for wf in {ev.workflow for ev in events if ev.kind is K.STARTED and ev.workflow in watches}:
                self._dirty.add(wf)

    def _reopen(self, w: Watch, started_at: float) -> None:
        """A run started at ``started_at``: if a slot judged before holds it (a
        start that came late), judge from that slot again."""
        if w.open_from is None or started_at >= w.open_from - early(60.0):
            return
        for k, j in enumerate(w.slots):
            if j.at - early(j.next_at - j.at) <= started_at < j.next_at and not j.started:
                w.open_from = j.at
                del w.slots[k:]
                return

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Take the alerts fired before a restart (the alert manager's): the
        next call resolves those whose condition ended meanwhile."""
        with self._lock:
            for a in alerts:
                if a.status is AlertStatus.FIRING and a.labels.get("alertname") in ALERT_NAMES:
                    self.firing.setdefault(alert_key(a), a)

    # ---- time --------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Write the heartbeat, look at every workflow due, keep what changed."""
        with self._lock:
            now = self.clock() if now is None else now
            first = not self.ready
            if self._started_at is None:
                self._started_at = now
                self._span = (self.process, now)
            self._beat(now)
            if now - self._version_read >= 5.0:
                self._load_expectations(now)
            if first:
                self._first_call(now)
            coverage = self._coverage(now)
            due = set(self._dirty)
            self._dirty.clear()
            heap = self._heap
            while heap and heap[0][0] <= now:
                at, wf = heapq.heappop(heap)
                w = self.watches.get(wf)
                if w is not None and w.due == at:  # else a due time since replaced
                    w.due = NEVER  # taken: the look sets the next
                    due.add(wf)
            for wf in sorted(due):
                w = self.watches.get(wf)
                if w is not None:
                    self._look(w, now, coverage)
            if first:  # alerts handed over for workflows with no expectations now
                for wf in {k[1] for k in self.firing} - set(self.watches):
                    self._drop(wf, now)
            self._save(now)

    def _beat(self, now: float) -> None:
        """Write the heartbeat. After a gap (beats that could not be written, or
        a machine too busy to beat) a new span starts: the gap stays one."""
        if self.read_only or now - self._last_beat < self.heartbeat:
            return
        key, start = self._span
        if self._last_beat > -NEVER and now - self._last_beat > self.tolerance:
            self._spans_made += 1
            key, start = f"{self.process}#{self._spans_made}", now
        try:
            self.store.schedules.watching(key, start, now)
        except Exception:  # noqa: BLE001 - the store is away: this process's span ends at its last beat
            log.warning("schedules: the heartbeat could not be written; slots are unknown until it can", exc_info=True)
            return
        self._span, self._last_beat = (key, start), now

    def _coverage(self, now: float) -> Coverage:
        if self.read_only and not self.store.schedules.ever_watched():
            return Coverage.always()  # no server ever watched this store: the runs alone decide
        if now - self._spans_read >= min(60.0, self.heartbeat * 6):
            try:
                self._spans = self.store.schedules.watch_spans(now - LOOKBACK)
                self._spans_read = now
            except Exception:  # noqa: BLE001 - judged with what was read before
                log.warning("schedules: the watch spans could not be read", exc_info=True)
        # a span whose heartbeat is recent is a process watching now (this one's, when its beats are written)
        live = now - self.tolerance
        spans = [(a, now if b >= live else b) for a, b in self._spans]
        if self._last_beat > -NEVER:
            spans.append((self._span[1], now if self._last_beat >= live else self._last_beat))
        return Coverage(spans, self.tolerance)

    def _first_call(self, now: float) -> None:
        """The judged slots and the runs of the last days, from the store."""
        names = list(self.watches)
        stored = self.store.schedules.recent_slots(names, per=KEEP)
        for wf, slots in stored.items():
            w = self.watches.get(wf)
            if w is not None:
                w.slots = slots
        self._read_runs(since=now - LOOKBACK)  # the last days' runs
        self._read_runs(states=(S.RUNNING, S.SUSPENDED, S.PENDING))  # live ones, whatever their age
        for wf, w in self.watches.items():  # a weekly job failing: its last runs, older than the days read
            n = w.exp.failures_before_alert
            if n is not None and sum(1 for r in w.runs.values() if not r.live) < n:
                self._read_runs(workflow=wf, limit=n + 1)
        self._dirty.update(self.watches)
        self.ready = True

    def _read_runs(
        self,
        *,
        since: float | None = None,
        states: Sequence[WorkflowState] | None = None,
        workflow: str | None = None,
        limit: int | None = None,
    ) -> None:
        """Runs of the watched workflows from the store, newest first."""
        for m in self.store.runs.each_run(workflow=workflow, states=states, since=since, limit=limit, page=1000):
            w = self.watches.get(m.workflow)
            if w is not None and len(w.runs) < MAX_RUNS:
                w.runs.setdefault(m.run_id, facts_of(m))

    def _first_slot(self, w: Watch, now: float) -> float:
        """Where judging starts for a workflow: after its last settled slot kept, else after ``since``."""
        settled_ = [j for j in w.slots if settled(j, now)]
        w.slots = settled_
        exp = w.exp
        if settled_:
            last = settled_[-1]
            # on the grid of the schedule as it is now (the slots kept may have been judged on an earlier one)
            return w.grid.after(max(last.at, w.since)) if w.grid is not None else max(last.next_at, w.since)
        if exp.every is not None:
            starts = [r.started_at for r in w.runs.values() if not r.manual and r.started_at >= w.since]
            return (max(starts) if starts else w.since) + exp.every
        assert w.grid is not None
        return w.grid.after(w.since)

    def _look(self, w: Watch, now: float, coverage: Coverage) -> None:
        exp = w.exp
        runs = w.sorted_runs()
        recheck = NEVER
        if exp.scheduled:
            if w.open_from is None:
                w.open_from = self._first_slot(w, now)
            first, still_open = self._catch_up_from(w, w.open_from, now), None
            while True:  # a judgement covers MAX_SLOTS at most: a long downtime of a frequent schedule takes a few
                v = judge(exp, runs, now, first=first, coverage=coverage, grid=w.grid)
                before = {j.at: j for j in w.slots}
                kept = [j for j in w.slots if j.at < first]
                for j in v.slots:
                    if before.get(j.at) != j and j.status != PENDING:
                        self._unsaved.append((exp.workflow, j))
                w.slots = (kept + v.slots)[-KEEP:]
                if still_open is None:
                    still_open = next((j.at for j in v.slots if not settled(j, now)), None)
                if v.next_at > now or not v.slots:
                    break
                first = v.next_at
            w.open_from = still_open if still_open is not None else v.next_at
            w.next_at = v.next_at
            recheck = v.recheck_at
            self._rejudge_live(w, now, coverage)
        for r in runs:
            if r.live:
                recheck = min(recheck, run_findings(exp, r, now)[1])
        want = wanted(exp, w.slots, runs, now, external_url=self.external_url)
        for key, a in want.items():
            if key not in self.firing:
                self.firing[key] = a
                self.send(a)
        for key in [k for k in self.firing if k[1] == exp.workflow and k not in want]:
            a = self.firing.pop(key)
            self.send(resolve(a, now, cleared(a, exp, w.slots, runs, now)))
        self._prune_runs(w)
        if recheck != w.due and recheck < NEVER:  # one entry per due time: the heap does not grow by the look
            heapq.heappush(self._heap, (recheck, exp.workflow))
        w.due = recheck

    def _rejudge_live(self, w: Watch, now: float, coverage: Coverage) -> None:
        """The settled slots whose run is still live, judged again by
        themselves (their run may have overrun since)."""
        assert w.open_from is not None
        for k, j in enumerate(w.slots):
            if j.at >= w.open_from or j.run_id is None:
                continue
            run = w.runs.get(j.run_id)
            if run is None or (not run.live and j.run_state == run.state.value and j.ended_at == run.ended_at):
                continue
            again, _ = judge_slot(w.exp, j.at, j.next_at, run, now, coverage, j.deadline_at)
            if again != j:
                w.slots[k] = again
                self._unsaved.append((w.exp.workflow, again))

    def _catch_up_from(self, w: Watch, first: float, now: float) -> float:
        """Where to judge from: ``first``, unless more than :data:`KEEP` slots
        passed since (a long downtime): then the last KEEP of them. Older ones are
        not judged, and not kept: a frequent schedule down for a month would
        otherwise judge thousands of slots nobody watched, one by one."""
        exp = w.exp
        if exp.every is not None:
            behind = int((now - first) // exp.every) - KEEP
            if behind > 0 and not any(r.started_at >= first for r in w.runs.values()):
                return first + behind * exp.every
            return first
        if w.grid is None or now - first < 3600:
            return first
        back = w.grid.before(now, KEEP)
        return back if back is not None and back > first else first

    def _prune_runs(self, w: Watch) -> None:
        if len(w.runs) <= MAX_RUNS:
            return
        ended = sorted((r for r in w.runs.values() if not r.live), key=lambda r: r.started_at)
        for r in ended[: len(w.runs) - MAX_RUNS]:
            del w.runs[r.run_id]

    def _save(self, now: float) -> None:
        if not self.read_only and now - self._pruned >= 3600.0:
            self._pruned = now
            self.store.schedules.prune(now - self.keep)
        if not self._unsaved or self.read_only:
            self._unsaved.clear()
            return
        rows, self._unsaved = self._unsaved, []
        try:
            self.store.schedules.save_slots(rows, now)
        except Exception:  # noqa: BLE001 - kept for the next tick
            self._unsaved = rows + self._unsaved
            raise

    # ---- reading ------------------------------------------------------------------------
    def snapshot(self, workflow: str | None = None) -> list[ScheduleState]:
        """Every watched workflow as it stands, by name (only ``workflow``, when given)."""
        with self._lock:
            out = []
            for wf in sorted(self.watches) if workflow is None else [workflow] if workflow in self.watches else []:
                w = self.watches[wf]
                names = sorted(k[0] for k in self.firing if k[1] == wf)
                out.append(ScheduleState(w.exp, w.source, list(w.slots), w.next_at, names))
            return out


@dataclass(frozen=True)
class ScheduleState:
    """One workflow's schedule as it stands: what the API, the command and the dashboard show."""

    exp: Expectations
    source: str
    slots: list[SlotJudgement]  #: oldest first
    next_at: float  #: NEVER when none is expected
    firing: list[str]


def _grid(exp: Expectations) -> CronGrid | None:
    return CronGrid(exp.schedule, exp.timezone) if exp.schedule is not None else None
