"""Built-in alert rules on the execution and state monitors: their settings,
and the pure decisions that turn a run (or a step's failures) into alerts.

Each rule can be changed or turned off in ``flowsight.toml`` (``[rules.NAME]``)
and per workflow (``[workflows.NAME.rules.RULE]``), overriding the global one.

The decisions take the data and ``now`` and return the alerts to send: a
firing :class:`~flowsight.model.alerts.Alert` for a condition that has begun,
and a resolved copy of an alert passed in as firing whose condition has ended.
They do no I/O and keep no state; :class:`flowsight.monitors.rule_engine.RuleEngine`
keeps what fired and feeds them.

The rules and when they fire and resolve:

``RunFailed`` (source ``state``)
    Fires when a run is Failed. Resolves when that run is no longer Failed
    (Running or Completed again, should a retry or resume ever move it: the
    state table makes Failed terminal today, so this is the rarer path), and
    when another run of the same workflow completes *after* the failure
    (:func:`green_again`: the workflow's latest outcome is a success, "it is
    green again"). A run that completed before the failure resolves nothing,
    and a failure already answered that way when it reaches the engine (its
    events arrived late, or again) does not fire at all (:func:`answered_by`).
    The alert carries no ``ends_at`` (the alert manager's ``resolve_timeout``
    applies to alerts posted to the API without one, not to these): a failure
    nobody fixed stays firing until its workflow runs green or the rule is
    turned off, for at most ``max_age`` after the failure
    (:func:`expire_failures`; the engine's ``lookback``, 7 days, the same
    horizon it rebuilds from after a restart, so a restart neither revives
    nor forgets one).

``RunStalled`` (source ``execution``)
    Fires when :func:`flowsight.model.runs.stall.stall_verdict` says the run is
    stalled. Resolves as soon as it is not: activity again, suspended, ended.

``StepFailedRepeatedly`` (source ``execution``)
    One alert per workflow and step (no ``run_id`` label, so it deduplicates
    across runs). Fires when the step has failed ``times`` times within the
    last ``window`` seconds *with no completion of that step after them*: the
    count starts again whenever the step completes, so a flaky step whose
    retries succeed does not fire and resolve at every retry. Resolves when
    the step later completes (in any run of the workflow).

``RunSlow`` (source ``execution``)
    Fires when a Running run has been running for more than ``factor`` times
    the median duration of the workflow's last completed runs, once there are
    at least ``min_runs`` of them (the bound is never under 5 s, so a workflow
    that takes milliseconds does not alert on a tick's delay). Once fired it
    stays firing until the run ends (Completed, Failed or Cancelled): a run
    does not become less late; a suspended run keeps it.

A rule with ``enabled=False`` never fires, and an alert it fired before it was
turned off is resolved at the next evaluation. A workflow's
:class:`WorkflowSettings` ``rules``, when set, is that workflow's whole rule
set and wins over the global one (:func:`rules_for`); a config loader builds
it by applying ``[workflows.NAME.rules.RULE]`` over the globals.

Labels: ``alertname``, ``workflow``, ``run_id`` (run alerts), ``step`` (where
one step is concerned), ``severity``. Annotations: ``summary`` (one line) and
``description`` (the error first, then durations and the bound used); a
resolved alert also carries ``resolution`` (why it ended).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from flowsight.model.alerts import Alert, AlertStatus, Severity
from flowsight.model.durations import format_duration
from flowsight.model.runs.events import Event, EventKind
from flowsight.model.runs.execution import ExecutionMetrics
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.runs.stall import BASIS_MEANS, DEFAULT_TIMEOUT, MIN_BOUND, stall_verdict
from flowsight.model.runs.state import WorkflowState


@dataclass(frozen=True)
class RunFailed:
    """A run ended Failed."""

    enabled: bool = True
    severity: Severity = Severity.ERROR


@dataclass(frozen=True)
class RunStalled:
    """A run is stalled (see :mod:`flowsight.model.runs.stall`)."""

    enabled: bool = True
    severity: Severity = Severity.WARNING


@dataclass(frozen=True)
class StepFailed:
    """The same step failed ``times`` times within ``window`` seconds (in one
    run or across runs of the workflow)."""

    enabled: bool = True
    severity: Severity = Severity.WARNING
    times: int = 3
    window: float = 3600.0


@dataclass(frozen=True)
class RunSlow:
    """A run has taken more than ``factor`` times its workflow's usual (median)
    duration, once the workflow has at least ``min_runs`` completed runs."""

    enabled: bool = True
    severity: Severity = Severity.WARNING
    factor: float = 2.0
    min_runs: int = 5


@dataclass(frozen=True)
class RuleSettings:
    run_failed: RunFailed = field(default_factory=RunFailed)
    run_stalled: RunStalled = field(default_factory=RunStalled)
    step_failed: StepFailed = field(default_factory=StepFailed)
    run_slow: RunSlow = field(default_factory=RunSlow)


@dataclass(frozen=True)
class WorkflowSettings:
    """Per-workflow settings: what it depends on (a firing fault alert for a
    dependency mutes this workflow's step and run alerts) and rule overrides."""

    name: str
    depends_on: tuple[str, ...] = ()
    rules: RuleSettings | None = None  # None: the global rules


# ---- decisions -------------------------------------------------------------------
RUN_FAILED = "RunFailed"
RUN_STALLED = "RunStalled"
STEP_FAILED_REPEATEDLY = "StepFailedRepeatedly"
RUN_SLOW = "RunSlow"
ALERT_NAMES = frozenset({RUN_FAILED, RUN_STALLED, STEP_FAILED_REPEATEDLY, RUN_SLOW})
RUN_ALERTS = (RUN_FAILED, RUN_STALLED, RUN_SLOW)

#: What identifies one rule alert whatever its severity: (alertname, workflow,
#: run id) for run alerts, (alertname, workflow, step) for StepFailedRepeatedly.
AlertKey = tuple[str, str, str]

_FIRING, _RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
_RUNNING, _FAILED, _COMPLETED = WorkflowState.RUNNING, WorkflowState.FAILED, WorkflowState.COMPLETED


def alert_key(alert: Alert) -> AlertKey:
    labels = alert.labels
    name = labels.get("alertname", "")
    which = labels.get("step", "") if name == STEP_FAILED_REPEATEDLY else labels.get("run_id", "")
    return name, labels.get("workflow", ""), which


def rules_for(
    workflow: str, settings: RuleSettings, workflows: Mapping[str, WorkflowSettings] | None = None
) -> RuleSettings:
    """The rules that apply to ``workflow``: its own when its settings give
    some, else the global ``settings``."""
    own = workflows.get(workflow) if workflows else None
    return own.rules if own is not None and own.rules is not None else settings


def resolve(alert: Alert, now: float, why: str) -> Alert:
    """``alert`` resolved at ``now``; ``why`` goes in the ``resolution`` annotation."""
    return replace(alert, status=_RESOLVED, ends_at=now, annotations={**alert.annotations, "resolution": why})


def error_line(error: str | None, traceback: str | None = None) -> str | None:
    """The line that says what went wrong: the error's first line, else the
    traceback's last non-empty one (a Python traceback's first line is its
    ``Traceback (most recent call last):`` header, its last the exception)."""
    if error and error.strip():
        return error.strip().splitlines()[0]
    if traceback:
        lines = [ln.strip() for ln in traceback.strip().splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return None


def _link(external_url: str, run_id: str) -> str | None:
    return f"{external_url.rstrip('/')}/runs/{run_id}" if external_url else None


def _labels(
    name: str, workflow: str, severity: Severity, *, run_id: str | None = None, step: str | None = None
) -> dict[str, str]:
    labels = {"alertname": name, "workflow": workflow}
    if run_id is not None:
        labels["run_id"] = run_id
    if step:
        labels["step"] = step
    labels["severity"] = Severity(severity).value
    return labels


def _steps_done(m: ExecutionMetrics) -> str:
    total = "?" if m.total_steps is None else str(m.total_steps)
    return f"{m.completed_steps}/{total} steps completed"


# ---- RunFailed -------------------------------------------------------------------
def run_failed_alert(
    m: ExecutionMetrics, rule: RunFailed, now: float, *, traceback: str | None = None, external_url: str = ""
) -> Alert | None:
    """The RunFailed alert ``m`` calls for: firing when it is Failed and the
    rule is on, else None. ``traceback``: from the ``failed`` event, when at hand."""
    if not rule.enabled or m.state is not _FAILED:
        return None
    failed_steps = sorted(m.failed_names)
    step = failed_steps[0] if len(failed_steps) == 1 else None
    where = f" in step '{step}'" if step else ""
    took = m.duration(now)
    facts = [f"run {m.run_id} of {m.workflow} failed" + (f" after {format_duration(took)}" if took is not None else "")]
    if failed_steps:
        facts.append("failed steps: " + ", ".join(failed_steps))
    facts.append(_steps_done(m))
    return Alert(
        labels=_labels(RUN_FAILED, m.workflow, rule.severity, run_id=m.run_id, step=step),
        annotations={
            "summary": f"{m.workflow}: run {m.run_id} failed{where}",
            "description": f"{error_line(m.error, traceback) or 'no error reported'}\n" + "; ".join(facts),
        },
        severity=rule.severity,
        source="state",
        starts_at=m.end_time if m.end_time is not None else now,
        link=_link(external_url, m.run_id),
    )


def answered_by(alert: Alert, m: ExecutionMetrics) -> bool:
    """Whether ``m`` makes the RunFailed ``alert`` old news: ``m`` is another
    run of the same workflow that completed *after* the failure (its
    ``starts_at``). A run that completed before it, or at the same instant,
    says nothing about it."""
    return (
        m.state is _COMPLETED
        and m.end_time is not None
        and alert.labels.get("alertname") == RUN_FAILED
        and alert.labels.get("workflow") == m.workflow
        and alert.labels.get("run_id") != m.run_id
        and alert.starts_at < m.end_time
    )


def green_again(m: ExecutionMetrics, firing: Iterable[Alert], now: float) -> list[Alert]:
    """RunFailed alerts of other runs of ``m``'s workflow that ``m``, Completed,
    resolves (:func:`answered_by`): those whose failure came before ``m`` completed."""
    return [
        resolve(a, now, f"{m.workflow} is green again: run {m.run_id} completed")
        for a in firing
        if a.status is _FIRING and answered_by(a, m)
    ]


def expire_failures(firing: Iterable[Alert], now: float, max_age: float) -> list[Alert]:
    """RunFailed alerts of ``firing`` whose failure is more than ``max_age``
    seconds old, resolved: no run of the workflow completed since, and nobody
    turned the rule off; they are not news any more."""
    return [
        resolve(
            a,
            now,
            f"expired: failed more than {format_duration(max_age)} ago and no later run of "
            f"{a.labels.get('workflow', '?')} has completed since",
        )
        for a in firing
        if a.status is _FIRING and a.labels.get("alertname") == RUN_FAILED and now - a.starts_at > max_age
    ]


# ---- RunStalled -----------------------------------------------------------------


def run_stalled_alert(
    m: ExecutionMetrics,
    history: WorkflowHistory | None,
    rule: RunStalled,
    now: float,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    external_url: str = "",
) -> Alert | None:
    """The RunStalled alert ``m`` calls for: firing when the rule is on and
    :func:`~flowsight.model.runs.stall.stall_verdict` says stalled, else None."""
    if not rule.enabled:
        return None
    v = stall_verdict(m, history, now, timeout=timeout)
    if v is None or not v.stalled:
        return None
    step = m.current_step
    where = f" in step '{step}'" if step else ""
    basis = BASIS_MEANS.get(v.basis, v.basis)
    return Alert(
        labels=_labels(RUN_STALLED, m.workflow, rule.severity, run_id=m.run_id, step=step),
        annotations={
            "summary": f"{m.workflow}: run {m.run_id} is stalled{where}",
            "description": (
                f"no activity (step start or end, heartbeat, progress) for {format_duration(v.idle_for)}, "
                f"longer than the bound of {format_duration(v.bound)} ({basis}); "
                f"{_steps_done(m)}" + (f"; last error: {error_line(m.error)}" if m.error else "")
            ),
        },
        severity=rule.severity,
        source="execution",
        starts_at=m.last_activity + v.bound,
        link=_link(external_url, m.run_id),
    )


# ---- RunSlow ---------------------------------------------------------------------
def usual_duration(history: WorkflowHistory | None) -> float | None:
    """The median duration of the history's completed runs (None without any)."""
    if history is None or not history.run_durations:
        return None
    return float(statistics.median(history.run_durations))


def run_slow_alert(
    m: ExecutionMetrics, history: WorkflowHistory | None, rule: RunSlow, now: float, *, external_url: str = ""
) -> Alert | None:
    """The RunSlow alert ``m`` calls for: firing when the rule is on, ``m`` is
    Running and has run for longer than ``factor`` x the usual duration (with
    at least ``min_runs`` completed runs in ``history``; never under 5 s), else None."""
    if not rule.enabled or m.state is not _RUNNING or m.start_time is None:
        return None
    usual = usual_duration(history)
    if usual is None or history is None or len(history.run_durations) < rule.min_runs:
        return None
    bound = max(rule.factor * usual, MIN_BOUND)
    elapsed = now - m.start_time
    if elapsed <= bound:
        return None
    step = f"; now in step '{m.current_step}'" if m.current_step else ""
    return Alert(
        labels=_labels(RUN_SLOW, m.workflow, rule.severity, run_id=m.run_id),
        annotations={
            "summary": f"{m.workflow}: run {m.run_id} is slower than usual",
            "description": (
                f"running for {format_duration(elapsed)}, longer than the bound of {format_duration(bound)} "
                f"({rule.factor:g}x the usual {format_duration(usual)}, the median of the last "
                f"{len(history.run_durations)} completed runs); {_steps_done(m)}{step}"
            ),
        },
        severity=rule.severity,
        source="execution",
        starts_at=m.start_time + bound,
        link=_link(external_url, m.run_id),
    )


# ---- one run, all three -----------------------------------------------------------
def evaluate_run(
    m: ExecutionMetrics,
    history: WorkflowHistory | None,
    rules: RuleSettings,
    now: float,
    firing: Iterable[Alert] = (),
    *,
    traceback: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    external_url: str = "",
) -> list[Alert]:
    """The run alerts to send for ``m`` as it is at ``now``.

    ``firing``: the alerts already firing (those not about ``m`` are ignored).
    Returns a firing alert for each condition that holds and is not firing
    yet, and a resolved copy of each firing one whose condition has ended
    (see the module docstring for each rule's end). ``history``: the
    workflow's (None: no stall bound from history, no RunSlow).
    """
    mine = {
        a.labels.get("alertname", ""): a
        for a in firing
        if a.status is _FIRING and a.labels.get("run_id") == m.run_id and a.labels.get("workflow") == m.workflow
    }
    out: list[Alert] = []

    failed = mine.get(RUN_FAILED)
    want = run_failed_alert(m, rules.run_failed, now, traceback=traceback, external_url=external_url)
    if failed is None and want is not None:
        out.append(want)
    elif failed is not None and want is None:
        why = "the RunFailed rule was turned off" if not rules.run_failed.enabled else f"run is {m.state.value} again"
        out.append(resolve(failed, now, why))

    stalled = mine.get(RUN_STALLED)
    want = run_stalled_alert(m, history, rules.run_stalled, now, timeout=timeout, external_url=external_url)
    if stalled is None and want is not None:
        out.append(want)
    elif stalled is not None and want is None:
        if not rules.run_stalled.enabled:
            why = "the RunStalled rule was turned off"
        elif m.state is _RUNNING:
            why = "the run shows activity again"
        else:
            why = f"run is {m.state.value}"
        out.append(resolve(stalled, now, why))

    slow = mine.get(RUN_SLOW)
    if slow is not None:
        if m.state.terminal:
            took = m.duration(now)
            out.append(resolve(slow, now, f"run {m.state.value}" + (f" after {format_duration(took)}" if took else "")))
        elif not rules.run_slow.enabled:
            out.append(resolve(slow, now, "the RunSlow rule was turned off"))
    else:
        want = run_slow_alert(m, history, rules.run_slow, now, external_url=external_url)
        if want is not None:
            out.append(want)
    return out


# ---- StepFailedRepeatedly --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StepFailure:
    """One failed attempt at a step (from a ``step_failed`` event or a step record)."""

    ts: float
    run_id: str
    event_id: str = ""
    error: str | None = None
    traceback: str | None = None


def step_failure(ev: Event) -> StepFailure:
    """The failure a ``step_failed`` event reports."""
    if ev.kind is not EventKind.STEP_FAILED:
        raise ValueError(f"event {ev.id}: a step failure comes from a step_failed event, not {ev.kind.value}")
    err, kind, tb = ev.attrs.get("error"), ev.attrs.get("error_type"), ev.attrs.get("traceback")
    error = None if err is None else (f"{kind}: {err}" if kind and kind != err else str(err))
    return StepFailure(ev.ts, ev.run_id, ev.id, error, tb if isinstance(tb, str) else None)


@dataclass
class StepFailures:
    """What is known of one (workflow, step): its failures since it last
    completed (oldest first) and when it last completed. Kept by the engine;
    changed only through :meth:`failed`, :meth:`completed` and :meth:`prune`."""

    failures: list[StepFailure] = field(default_factory=list)
    last_completed: float | None = None

    def failed(self, f: StepFailure) -> bool:
        """Count ``f``, unless it is known (same event id) or came before the
        last completion. Returns whether it was counted."""
        if self.last_completed is not None and f.ts <= self.last_completed:
            return False
        if f.event_id and any(x.event_id == f.event_id for x in self.failures):
            return False
        self.failures.append(f)
        self.failures.sort(key=lambda x: x.ts)
        return True

    def completed(self, ts: float) -> None:
        """The step completed at ``ts``: failures before it no longer count."""
        if self.last_completed is None or ts > self.last_completed:
            self.last_completed = ts
            self.failures = [f for f in self.failures if f.ts > ts]

    def prune(self, now: float, window: float) -> None:
        self.failures = [f for f in self.failures if now - f.ts <= window]


def evaluate_step(
    workflow: str,
    step: str,
    known: StepFailures,
    rule: StepFailed,
    now: float,
    firing: Alert | None = None,
    *,
    external_url: str = "",
) -> list[Alert]:
    """The StepFailedRepeatedly alert to send for one (workflow, step).

    Fires (when ``firing`` is None) once ``rule.times`` failures lie within
    ``rule.window`` seconds before ``now``, none followed by a completion of
    the step. ``firing`` is resolved when the step completed at or after it
    started (its last counted failure), or when the rule is off.
    """
    if firing is not None:
        if not rule.enabled:
            return [resolve(firing, now, "the StepFailedRepeatedly rule was turned off")]
        if known.last_completed is not None and known.last_completed >= firing.starts_at:
            return [resolve(firing, now, f"step '{step}' completed again")]
        return []
    if not rule.enabled:
        return []
    recent = [
        f
        for f in known.failures
        if now - f.ts <= rule.window and (known.last_completed is None or f.ts > known.last_completed)
    ]
    if len(recent) < max(1, rule.times):
        return []
    last = recent[-1]
    runs = sorted({f.run_id for f in recent})
    across = f"in run {runs[0]}" if len(runs) == 1 else f"across {len(runs)} runs"
    return [
        Alert(
            labels=_labels(STEP_FAILED_REPEATEDLY, workflow, rule.severity, step=step),
            annotations={
                "summary": f"{workflow}: step '{step}' failed {len(recent)} times within {format_duration(rule.window)}",
                "description": (
                    f"{error_line(last.error, last.traceback) or 'no error reported'}\n"
                    f"{len(recent)} failures {across} within {format_duration(rule.window)} "
                    f"(the bound is {rule.times}), none followed by a completion of the step; "
                    f"the last {format_duration(max(0.0, now - last.ts))} ago in run {last.run_id}"
                ),
            },
            severity=rule.severity,
            source="execution",
            starts_at=last.ts,
            link=_link(external_url, last.run_id),
        )
    ]
