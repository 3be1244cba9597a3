"""A run's execution metrics and how one event changes them.

:func:`apply_event` is the single place that decides what an event does to a
run: the state transition it asks for (applied or refused), the step record it
opens or closes, the counters. It does no I/O; the store and the monitors both
call it, so a run replayed from its events always ends where it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flowsight.model.runs.events import Event, EventKind
from flowsight.model.runs.state import EVENT_STATE, StateTransition, WorkflowState, is_allowed


@dataclass(slots=True)
class ExecutionMetrics:
    """The specification's ``ExecutionMetrics``: one run of a workflow.

    ``workflow_id`` is the run's id (one execution); ``workflow`` the name of
    the workflow it is a run of. ``current_step`` is the name of the step that
    is running, if any. Mutated in place by :func:`apply_event`.
    """

    workflow_id: str
    workflow: str
    state: WorkflowState = WorkflowState.PENDING
    start_time: float | None = None
    end_time: float | None = None
    current_step: str | None = None
    total_steps: int | None = None
    completed_steps: int = 0
    failed_steps: int = 0
    retries: int = 0
    last_activity: float = 0.0
    progress_done: float | None = None
    progress_total: float | None = None
    error: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    # step name -> attempts started; step name -> (attempt, started_at) while open
    step_attempts: dict[str, int] = field(default_factory=dict)
    open_steps: dict[str, tuple[int, float]] = field(default_factory=dict)
    completed_names: set[str] = field(default_factory=set)
    failed_names: set[str] = field(default_factory=set)  # last attempt failed
    last_step_end: float | None = None

    @property
    def run_id(self) -> str:
        return self.workflow_id

    @property
    def percent_done(self) -> float | None:
        """Share of steps completed (0-100), counting progress inside the running step."""
        if self.state is WorkflowState.COMPLETED:
            return 100.0
        if not self.total_steps:
            return None
        done = float(self.completed_steps)
        if self.current_step and self.progress_total:
            done += min(1.0, (self.progress_done or 0.0) / self.progress_total)
        return min(100.0, 100.0 * done / self.total_steps)

    def last_step_end_or_start(self) -> float | None:
        return self.last_step_end if self.last_step_end is not None else self.start_time

    def duration(self, now: float) -> float | None:
        if self.start_time is None:
            return None
        return (self.end_time if self.end_time is not None else now) - self.start_time


class StepRecord(NamedTuple):
    """One attempt at one step of a run (a NamedTuple: made once per step on the hot path)."""

    run_id: str
    step: str
    attempt: int
    status: str  # running | completed | failed
    started_at: float | None
    ended_at: float | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)


class Outcome(NamedTuple):
    """What one event did: at most one transition and one step record."""

    transition: StateTransition | None = None
    step: StepRecord | None = None


_NOTHING = Outcome()


def new_metrics(event: Event) -> ExecutionMetrics:
    return ExecutionMetrics(workflow_id=event.run_id, workflow=event.workflow, last_activity=event.ts)


def _transition(m: ExecutionMetrics, new: WorkflowState, ev: Event, reason: str | None) -> StateTransition:
    old = m.state
    ok = is_allowed(old, new)
    if ok:
        m.state = new
    return StateTransition(
        workflow_id=m.workflow_id,
        timestamp=ev.ts,
        old_state=old,
        new_state=new,
        reason=reason,
        # a run's own attributes (source="warehouse") are not who changed its state
        source=str(ev.attrs.get("transition_source", "event")),
        applied=ok,
        event_id=ev.id,
    )


def _error_text(ev: Event) -> str | None:
    err = ev.attrs.get("error")
    if err is None:
        return None
    kind = ev.attrs.get("error_type")
    return f"{kind}: {err}" if kind and kind != err else str(err)


#: attributes of any event of a run (its own, its steps') that the run keeps, merged: the
#: datasets it read and wrote (OpenLineage's inputs and outputs, ``namespace/name``)
DATASETS = ("lineage_inputs", "lineage_outputs")


def apply_event(m: ExecutionMetrics, ev: Event, steps: bool = True) -> Outcome:
    """Apply ``ev`` to ``m`` (in place) and say what followed.

    A state-changing event whose transition is illegal changes nothing but is
    returned as a refused transition. A step event on a Pending run starts it
    implicitly (its Started event was lost or never sent). ``steps=False``
    skips building step records (the store's write path needs only the
    metrics and the transitions). The :data:`DATASETS` of every event are
    kept on the run, each list merged in the order first seen.
    """
    attrs, kept = ev.attrs, m.attrs
    if (
        "lineage_inputs" not in attrs
        and "lineage_outputs" not in attrs
        and "lineage_inputs" not in kept
        and "lineage_outputs" not in kept
    ):
        return _apply(m, ev, steps)
    before = {k: kept.get(k) for k in DATASETS}
    out = _apply(m, ev, steps)
    refused = out.transition is not None and not out.transition.applied
    merged = dict(m.attrs)  # a Started may have replaced them: what the run had is kept
    for k in DATASETS:
        names = [*_names(before[k]), *_names(m.attrs.get(k)), *([] if refused else _names(attrs.get(k)))]
        if names:
            merged[k] = list(dict.fromkeys(names))
        else:
            merged.pop(k, None)
    m.attrs = merged
    return out


def _names(value: Any) -> list[str]:
    """The dataset names in an attribute: a list's texts (anything else is no list of datasets)."""
    return [n for n in value if isinstance(n, str)] if isinstance(value, list) else []


def _apply(m: ExecutionMetrics, ev: Event, steps: bool) -> Outcome:
    kind = ev.kind
    if ev.ts > m.last_activity:
        m.last_activity = ev.ts
    target = EVENT_STATE.get(kind)
    if target is not None:
        if kind is EventKind.STARTED and m.state is WorkflowState.RUNNING and m.attrs.get(IMPLICIT) is True:
            _late_start(m, ev)  # no transition: the run is running already
            return _NOTHING
        reason = ev.attrs.get("reason")
        tr = _transition(m, target, ev, str(reason) if reason is not None else _error_text(ev))
        if not tr.applied:
            return Outcome(transition=tr)
        if kind is EventKind.STARTED:
            m.start_time = ev.ts
            total = ev.attrs.get("total_steps")
            if isinstance(total, int) and total >= 0:
                m.total_steps = total
            m.attrs = dict(ev.attrs)
        elif target.terminal:
            m.end_time = ev.ts
            m.current_step = None
            if kind is EventKind.FAILED:
                m.error = _error_text(ev) or m.error
        return Outcome(transition=tr)

    implicit = None
    if ev.step is not None and m.state is WorkflowState.PENDING:
        implicit = _transition(m, WorkflowState.RUNNING, ev, "implicit: first step event")
        m.start_time = ev.ts
        if implicit.applied:
            m.attrs = {**m.attrs, IMPLICIT: True}
    step = None
    if kind is _STEP_STARTED:
        step = _open_step(m, ev, steps)
    elif kind is _STEP_COMPLETED or kind is _STEP_FAILED:
        step = _close_step(m, ev, steps)
        if implicit is None and kind is _STEP_COMPLETED and "ends_run_after" in ev.attrs:
            done = _steps_done(m, ev)
            if done is not None:
                return Outcome(done, step)
    elif kind is EventKind.PROGRESS:
        done, total = ev.attrs.get("done"), ev.attrs.get("total")
        if isinstance(done, (int, float)):
            m.progress_done = float(done)
        if isinstance(total, (int, float)) and total > 0:
            m.progress_total = float(total)
    if implicit is None and step is None:
        return _NOTHING
    return Outcome(implicit, step)


_STEP_STARTED, _STEP_COMPLETED, _STEP_FAILED = EventKind.STEP_STARTED, EventKind.STEP_COMPLETED, EventKind.STEP_FAILED
#: a run's attribute while its first step's event, not its own Started, has started it
IMPLICIT = "implicit_start"


def _late_start(m: ExecutionMetrics, ev: Event) -> None:
    """The run's own Started, come after a step's event had started it (an
    OpenTelemetry exporter sends a run's span after its steps', as each span
    ends): its time, if earlier, and its attributes; the run stays running."""
    if m.start_time is None or ev.ts < m.start_time:
        m.start_time = ev.ts
    total = ev.attrs.get("total_steps")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        m.total_steps = total
    m.attrs = dict(ev.attrs)


def _steps_done(m: ExecutionMetrics, ev: Event) -> StateTransition | None:
    """A completed step that says ``ends_run_after=N`` (one of N units run
    apart, as a Celery group's tasks: no one of them knows it is the last)
    completes its running run once N step completions are counted and no
    step is open."""
    n = ev.attrs["ends_run_after"]
    if (
        not isinstance(n, int)
        or isinstance(n, bool)
        or m.state is not WorkflowState.RUNNING
        or m.open_steps
        or m.completed_steps < n
    ):
        return None
    tr = _transition(m, WorkflowState.COMPLETED, ev, f"all {n} steps completed")
    m.end_time = ev.ts
    m.current_step = None
    return tr


def _open_step(m: ExecutionMetrics, ev: Event, record: bool) -> StepRecord | None:
    name = ev.step or ""
    attempt = m.step_attempts.get(name, 0) + 1
    m.step_attempts[name] = attempt
    if name in m.failed_names:
        # started again after failing: a retry (a step run again after
        # succeeding, as in a loop, is not)
        m.retries += 1
        m.failed_names.discard(name)
    m.open_steps[name] = (attempt, ev.ts)
    m.current_step = name
    m.progress_done = m.progress_total = None
    return StepRecord(m.workflow_id, name, attempt, "running", ev.ts) if record else None


def _close_step(m: ExecutionMetrics, ev: Event, record: bool) -> StepRecord | None:
    name = ev.step or ""
    opened = m.open_steps.pop(name, None)
    if opened is None:
        # StepCompleted/StepFailed without StepStarted (the specification's
        # minimal flow): the step ran since the last thing that happened.
        attempt = m.step_attempts.get(name, 0) + 1
        m.step_attempts[name] = attempt
        started: float | None = ev.attrs.get("started_at") or m.last_step_end_or_start()
    else:
        attempt, started = opened
    failed = ev.kind is _STEP_FAILED
    if failed:
        m.failed_steps += 1
        m.failed_names.add(name)
        m.error = _error_text(ev)
    else:
        m.completed_steps += 1
        m.completed_names.add(name)
    if m.current_step == name:
        m.current_step = next(reversed(m.open_steps), None) if m.open_steps else None
        m.progress_done = m.progress_total = None
    m.last_step_end = ev.ts
    if not record:
        return None
    if not failed:
        return StepRecord(m.workflow_id, name, attempt, "completed", started, ev.ts)
    tb = ev.attrs.get("traceback")
    return StepRecord(
        m.workflow_id, name, attempt, "failed", started, ev.ts, _error_text(ev), tb if isinstance(tb, str) else None
    )
