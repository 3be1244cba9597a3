"""The state machine: the table of allowed transitions, how apply_event follows
it, and that any sequence of events, applied in memory or through a real
store, ends in the state its transition history replays to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flowsight.errors import TransitionError
from flowsight.model.runs.events import STEP_KINDS, Event, EventKind, make_event
from flowsight.model.runs.execution import ExecutionMetrics, apply_event, new_metrics
from flowsight.model.runs.state import (
    EVENT_STATE,
    TERMINAL,
    TRANSITIONS,
    StateTransition,
    WorkflowState,
    allowed_next,
    is_allowed,
    replay,
)
from flowsight.store import SqlStore, open_store

S = WorkflowState
K = EventKind
T0 = 1_700_000_000.0

# Written out by hand from the specification, not derived from TRANSITIONS.
EXPECTED: dict[WorkflowState, set[WorkflowState]] = {
    S.PENDING: {S.RUNNING, S.CANCELLED, S.FAILED},
    S.RUNNING: {S.COMPLETED, S.FAILED, S.SUSPENDED, S.CANCELLED},
    S.SUSPENDED: {S.RUNNING, S.CANCELLED, S.FAILED},
    S.COMPLETED: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
}

# ---- the table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [(old, new) for old in WorkflowState for new in WorkflowState],
    ids=lambda s: s.value,
)
def test_a_transition_is_allowed_exactly_when_the_specification_allows_it(old: S, new: S) -> None:
    expected = new in EXPECTED[old]
    assert is_allowed(old, new) is expected
    assert (new in TRANSITIONS[old]) is expected
    assert (new in allowed_next(old)) is expected


def test_the_table_has_a_row_for_every_state() -> None:
    assert set(TRANSITIONS) == set(WorkflowState)


@pytest.mark.parametrize("state", [S.COMPLETED, S.FAILED, S.CANCELLED])
def test_completed_failed_and_cancelled_are_terminal(state: S) -> None:
    assert state.terminal
    assert state in TERMINAL
    assert TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize("state", [S.PENDING, S.RUNNING, S.SUSPENDED])
def test_pending_running_and_suspended_are_not_terminal(state: S) -> None:
    assert not state.terminal
    assert TRANSITIONS[state]


def test_a_suspended_run_may_resume_or_be_cancelled() -> None:
    assert is_allowed(S.SUSPENDED, S.RUNNING)
    assert is_allowed(S.SUSPENDED, S.CANCELLED)


def test_a_completed_run_may_not_run_again() -> None:
    assert not is_allowed(S.COMPLETED, S.RUNNING)


@pytest.mark.parametrize("state", list(WorkflowState), ids=lambda s: s.value)
def test_moving_to_the_state_a_run_is_in_is_refused(state: S) -> None:
    assert not is_allowed(state, state)


def test_a_transition_error_names_both_states_and_what_is_allowed() -> None:
    err = TransitionError("run-1", "completed", "running", allowed=(s.value for s in allowed_next(S.COMPLETED)))
    assert "completed -> running" in str(err)
    assert "terminal" in str(err)
    assert (err.old_state, err.new_state, err.run_id) == ("completed", "running", "run-1")
    err = TransitionError("run-1", "suspended", "completed", allowed=(s.value for s in allowed_next(S.SUSPENDED)))
    assert "allowed from suspended: cancelled, failed, running" in str(err)


def test_replay_applies_only_applied_transitions() -> None:
    history = [
        StateTransition("r", 1.0, S.PENDING, S.RUNNING),
        StateTransition("r", 2.0, S.RUNNING, S.SUSPENDED),
        StateTransition("r", 3.0, S.SUSPENDED, S.COMPLETED, applied=False),
        StateTransition("r", 4.0, S.SUSPENDED, S.RUNNING),
    ]
    assert replay(S.PENDING, history) is S.RUNNING
    assert replay(S.PENDING, []) is S.PENDING


# ---- apply_event ----------------------------------------------------------


def ev(
    kind: K | str, step: str | None = None, attrs: dict[str, Any] | None = None, *, t: float = 0.0, run: str = "run-1"
) -> Event:
    return make_event(kind, "etl", run, step, attrs, ts=T0 + t)


def run_of(*events: Event) -> ExecutionMetrics:
    m = new_metrics(events[0])
    for e in events:
        apply_event(m, e)
    return m


# events that bring a fresh run into each state
REACH: dict[WorkflowState, list[K]] = {
    S.PENDING: [],
    S.RUNNING: [K.STARTED],
    S.SUSPENDED: [K.STARTED, K.SUSPENDED],
    S.COMPLETED: [K.STARTED, K.COMPLETED],
    S.FAILED: [K.STARTED, K.FAILED],
    S.CANCELLED: [K.STARTED, K.CANCELLED],
}


@pytest.mark.parametrize(
    ("state", "kind"),
    [(s, k) for s in WorkflowState for k in EVENT_STATE],
    ids=lambda x: x.value,
)
def test_a_state_event_is_applied_only_when_the_table_allows_its_transition(state: S, kind: K) -> None:
    m = ExecutionMetrics("run-1", "etl", last_activity=T0)
    for i, k in enumerate(REACH[state]):
        assert apply_event(m, ev(k, t=i)).transition.applied  # type: ignore[union-attr]
    assert m.state is state
    before = (m.start_time, m.end_time, m.total_steps, dict(m.attrs))
    out = apply_event(m, ev(kind, attrs={"total_steps": 9, "reason": "test"}, t=10))
    tr = out.transition
    assert tr is not None
    target = EVENT_STATE[kind]
    assert (tr.old_state, tr.new_state) == (state, target)
    assert tr.reason == "test"
    if target in EXPECTED[state]:
        assert tr.applied
        assert m.state is target
    else:
        assert not tr.applied
        assert m.state is state
        assert (m.start_time, m.end_time, m.total_steps, dict(m.attrs)) == before


def test_an_illegal_transition_is_returned_refused_and_changes_nothing() -> None:
    m = run_of(ev(K.STARTED, attrs={"total_steps": 2}), ev(K.COMPLETED, t=5))
    assert m.state is S.COMPLETED and m.end_time == T0 + 5
    out = apply_event(m, ev(K.RESUMED, t=9))
    assert out.transition is not None
    assert out.transition.applied is False
    assert (out.transition.old_state, out.transition.new_state) == (S.COMPLETED, S.RUNNING)
    assert m.state is S.COMPLETED
    assert m.end_time == T0 + 5


def test_a_second_started_event_is_refused_and_keeps_the_first_start() -> None:
    m = run_of(ev(K.STARTED, attrs={"total_steps": 2}))
    out = apply_event(m, ev(K.STARTED, attrs={"total_steps": 7}, t=3))
    assert out.transition is not None and not out.transition.applied
    assert (m.state, m.start_time, m.total_steps) == (S.RUNNING, T0, 2)


def test_a_step_event_on_a_pending_run_starts_it_implicitly() -> None:
    m = ExecutionMetrics("run-1", "etl", last_activity=T0)
    out = apply_event(m, ev(K.STEP_STARTED, "extract", t=1))
    assert out.transition is not None
    assert (out.transition.old_state, out.transition.new_state, out.transition.applied) == (S.PENDING, S.RUNNING, True)
    assert out.transition.reason is not None and "implicit" in out.transition.reason
    assert m.state is S.RUNNING and m.start_time == T0 + 1
    assert out.step is not None and out.step.status == "running"


def test_a_transition_records_its_event_and_time() -> None:
    e = ev(K.STARTED, t=4)
    out = apply_event(ExecutionMetrics("run-1", "etl"), e)
    assert out.transition is not None
    assert out.transition.event_id == e.id
    assert out.transition.timestamp == T0 + 4
    assert out.transition.workflow_id == "run-1"


# ---- any sequence of events -----------------------------------------------

STEPS = ["extract", "transform", "load"]
ATTRS: list[dict[str, Any]] = [
    {},
    {"total_steps": 3},
    {"done": 1, "total": 4},
    {"error": "boom", "error_type": "ValueError"},
    {"reason": "operator"},
]


@dataclass(frozen=True)
class Spec:
    kind: K
    step: str | None
    attrs: dict[str, Any]
    gap_ms: int


specs = st.builds(
    Spec,
    kind=st.sampled_from(list(EventKind)),
    step=st.none() | st.sampled_from(STEPS),
    attrs=st.sampled_from(ATTRS),
    gap_ms=st.integers(1, 100_000),
)


def with_output(kind: EventKind, attrs: dict[str, Any] | None) -> dict[str, Any] | None:
    """``attrs``, with the file an ``output`` event must name."""
    if kind is not K.OUTPUT:
        return attrs
    return {**(attrs or {}), "path": "/data/out.csv", "sha256": "0" * 64}


def build(run_id: str, seq: list[Spec]) -> list[Event]:
    """Events of one run at increasing times (step kinds always get a step)."""
    out, t = [], T0
    for s in seq:
        t += s.gap_ms / 1000
        step = s.step or ("extract" if s.kind in STEP_KINDS else None)
        out.append(make_event(s.kind, "etl", run_id, step, with_output(s.kind, s.attrs), ts=t))
    return out


def pure_run(events: list[Event]) -> tuple[ExecutionMetrics, list[StateTransition]]:
    """Apply ``events`` in memory, checking the state machine after each; the run and its transitions."""
    m = new_metrics(events[0])
    history: list[StateTransition] = []
    for e in events:
        before = m.state
        tr = apply_event(m, e).transition
        if tr is None:
            assert m.state is before
            continue
        history.append(tr)
        assert tr.old_state is before
        assert tr.applied is is_allowed(tr.old_state, tr.new_state)
        assert m.state is (tr.new_state if tr.applied else before)
        if before.terminal:
            assert not tr.applied
    return m, history


@given(st.lists(specs, min_size=1, max_size=40))
def test_any_sequence_of_events_keeps_the_run_in_a_state_its_history_replays_to(seq: list[Spec]) -> None:
    m, history = pure_run(build("run-1", seq))
    assert m.state in TRANSITIONS
    assert all(tr.new_state in TRANSITIONS[tr.old_state] for tr in history if tr.applied)
    assert replay(S.PENDING, history) is m.state
    # applied transitions chain: each starts where the previous one ended
    applied = [tr for tr in history if tr.applied]
    for a, b in zip(applied, applied[1:]):
        assert a.new_state is b.old_state


class EventSequences(RuleBasedStateMachine):
    """Events of every kind, one at a time, with the invariants checked after each."""

    def __init__(self) -> None:
        super().__init__()
        self.m = ExecutionMetrics("run-1", "etl", last_activity=T0)
        self.history: list[StateTransition] = []
        self.t = T0
        self.was_terminal: WorkflowState | None = None

    @rule(
        kind=st.sampled_from(list(EventKind)),
        step=st.sampled_from(STEPS),
        attrs=st.sampled_from(ATTRS),
        gap=st.floats(0.001, 1000),
    )
    def send(self, kind: K, step: str, attrs: dict[str, Any], gap: float) -> None:
        self.t += gap
        before = self.m.state
        tr = apply_event(self.m, make_event(kind, "etl", "run-1", step, with_output(kind, attrs), ts=self.t)).transition
        if tr is not None:
            assert tr.old_state is before
            self.history.append(tr)
        if self.m.state.terminal and self.was_terminal is None:
            self.was_terminal = self.m.state

    @invariant()
    def every_applied_transition_is_in_the_table(self) -> None:
        for tr in self.history:
            assert tr.applied is (tr.new_state in TRANSITIONS[tr.old_state])

    @invariant()
    def the_state_is_what_the_history_replays_to(self) -> None:
        assert replay(S.PENDING, self.history) is self.m.state

    @invariant()
    def a_terminal_state_is_never_left(self) -> None:
        if self.was_terminal is not None:
            assert self.m.state is self.was_terminal


EventSequences.TestCase.settings = settings(max_examples=100, stateful_step_count=30)
TestAnyEventSequenceFollowsTheStateMachine = EventSequences.TestCase


# ---- the same sequences through a real store ---------------------------------


def write_in_batches(stores: list[SqlStore], events: list[Event], cuts: list[int]) -> list[StateTransition]:
    """Write ``events`` in batches split at ``cuts``, alternating between ``stores``; the transitions reported."""
    bounds = sorted({c % (len(events) + 1) for c in cuts} | {0, len(events)})
    reported: list[StateTransition] = []
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        result = stores[i % len(stores)].runs.write_events(events[lo:hi])
        assert result.accepted == [e.id for e in events[lo:hi]]
        reported.extend(result.transitions)
    return reported


def _key(tr: StateTransition) -> tuple[Any, ...]:
    return (tr.workflow_id, tr.timestamp, tr.old_state, tr.new_state, tr.applied, tr.event_id)


def check_store_matches_pure_replay(stores: list[SqlStore], seq: list[Spec], cuts: list[int]) -> None:
    run_id = f"run-{uuid.uuid4().hex}"
    events = build(run_id, seq)
    m, history = pure_run(events)
    reported = write_in_batches(stores, events, cuts)
    assert [_key(t) for t in reported] == [_key(t) for t in history]
    for s in stores:
        stored = s.runs.get_run(run_id)
        assert stored is not None
        assert stored.state is m.state
        assert replay(S.PENDING, reported) is stored.state
        assert (stored.completed_steps, stored.failed_steps, stored.retries, stored.current_step) == (
            m.completed_steps,
            m.failed_steps,
            m.retries,
            m.current_step,
        )


store_settings = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@store_settings
@given(seq=st.lists(specs, min_size=1, max_size=25), cuts=st.lists(st.integers(0, 25), max_size=4))
def test_any_sequence_written_through_sqlite_ends_where_the_pure_replay_does(
    sqlite_store: SqlStore, seq: list[Spec], cuts: list[int]
) -> None:
    check_store_matches_pure_replay([sqlite_store], seq, cuts)


@store_settings
@given(seq=st.lists(specs, min_size=1, max_size=25), cuts=st.lists(st.integers(0, 25), max_size=4))
def test_any_sequence_written_by_two_sqlite_writers_ends_where_the_pure_replay_does(
    sqlite_store: SqlStore, seq: list[Spec], cuts: list[int]
) -> None:
    # A second store on the same file: each batch must start from what the
    # other writer left, not from a stale cached copy of the run.
    other = open_store(str(getattr(sqlite_store, "path")))
    try:
        check_store_matches_pure_replay([sqlite_store, other], seq, cuts)
    finally:
        other.close()


SEQUENCES = {
    "full life with a suspension": [K.STARTED, K.STEP_STARTED, K.SUSPENDED, K.RESUMED, K.STEP_COMPLETED, K.COMPLETED],
    "refusals after the end": [K.STARTED, K.FAILED, K.RESUMED, K.COMPLETED, K.STARTED, K.CANCELLED],
    "implicit start then cancel while suspended": [K.STEP_COMPLETED, K.SUSPENDED, K.SUSPENDED, K.CANCELLED, K.RESUMED],
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_a_sequence_written_through_each_backend_ends_where_the_pure_replay_does(
    store: SqlStore, store_url: str, name: str
) -> None:
    seq = [Spec(k, None, {}, 1000) for k in SEQUENCES[name]]
    other = open_store(store_url)
    try:
        check_store_matches_pure_replay([store], seq, [2])
        check_store_matches_pure_replay([store, other], seq, [1, 3, 4])
    finally:
        other.close()


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_the_stored_transitions_of_a_run_replay_to_its_stored_state(store: SqlStore, name: str) -> None:
    run_id = f"run-{uuid.uuid4().hex}"
    events = build(run_id, [Spec(k, None, {}, 1000) for k in SEQUENCES[name]])
    _, history = pure_run(events)
    store.runs.write_events(events)
    stored = store.runs.run_transitions(run_id)
    assert [_key(t) for t in stored] == [_key(t) for t in history]
    run = store.runs.get_run(run_id)
    assert run is not None
    assert replay(S.PENDING, stored) is run.state


@store_settings
@given(seq=st.lists(specs, min_size=1, max_size=25), cuts=st.lists(st.integers(0, 25), max_size=4))
def test_the_stored_transitions_of_any_sequence_replay_to_the_stored_state(
    sqlite_store: SqlStore, seq: list[Spec], cuts: list[int]
) -> None:
    run_id = f"run-{uuid.uuid4().hex}"
    events = build(run_id, seq)
    write_in_batches([sqlite_store], events, cuts)
    run = sqlite_store.runs.get_run(run_id)
    assert run is not None
    assert replay(S.PENDING, sqlite_store.runs.run_transitions(run_id)) is run.state


def test_a_run_keeps_the_datasets_of_its_events_and_steps_and_odd_values_are_passed_over() -> None:
    def ev(kind: EventKind, step: str | None = None, **attrs: Any) -> Event:
        return Event(id=uuid.uuid4().hex, ts=1.0, kind=kind, workflow="w", run_id="r", step=step, attrs=attrs)

    first = ev(EventKind.STARTED, lineage_inputs=["pg/a"])
    m = new_metrics(first)
    for e in (
        first,
        ev(EventKind.STEP_STARTED, "load", lineage_inputs=["pg/b", "pg/a"], lineage_outputs="s3/x"),
        ev(EventKind.STEP_COMPLETED, "load", lineage_inputs=5, lineage_outputs=["s3/y", 7]),
        ev(EventKind.COMPLETED, lineage_outputs=["s3/z"]),
    ):
        apply_event(m, e)
    assert (m.state, m.attrs["lineage_inputs"], m.attrs["lineage_outputs"]) == (
        S.COMPLETED,
        ["pg/a", "pg/b"],
        ["s3/y", "s3/z"],
    )
    # a refused event adds none of its own
    apply_event(m, ev(EventKind.STARTED, lineage_inputs=["pg/refused"]))
    assert m.attrs["lineage_inputs"] == ["pg/a", "pg/b"]


def test_a_late_started_keeps_the_datasets_its_steps_gave_the_run() -> None:
    def ev(kind: EventKind, step: str | None = None, **attrs: Any) -> Event:
        return Event(id=uuid.uuid4().hex, ts=2.0, kind=kind, workflow="w", run_id="r", step=step, attrs=attrs)

    step = ev(EventKind.STEP_STARTED, "load", lineage_inputs=["pg/b"])
    m = new_metrics(step)
    apply_event(m, step)  # the run started by its step (its own Started comes later: OTLP)
    apply_event(m, ev(EventKind.STARTED, k=1))
    assert (m.attrs["k"], m.attrs["lineage_inputs"]) == (1, ["pg/b"])
