"""The store on both backends: idempotent ingest, what events make of runs,
steps and transitions, listing and paging, history, retention, migrations.

Every timestamp is injected (``ts=`` on the events), so nothing here waits on
or reads the clock.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from flowsight.errors import ConfigError, StoreError
from flowsight.model import Event, EventKind, StateTransition, WorkflowState, make_event
from flowsight.store import SqlStore, open_store
from flowsight.store.migrations import LATEST

S = WorkflowState


def ev(
    kind: str,
    run_id: str,
    ts: float,
    step: str | None = None,
    *,
    workflow: str = "etl",
    event_id: str | None = None,
    **attrs: Any,
) -> Event:
    return make_event(kind, workflow, run_id, step, attrs or None, ts=ts, event_id=event_id)


def ids(events: list[Event]) -> list[str]:
    return [e.id for e in events]


def a_completed_run(run_id: str, start: float, steps: dict[str, float], *, workflow: str = "etl") -> list[Event]:
    """Started, then each step (name -> duration) back to back, then Completed."""
    out = [ev("started", run_id, start, workflow=workflow)]
    t = start
    for name, duration in steps.items():
        out.append(ev("step_started", run_id, t, name, workflow=workflow))
        t += duration
        out.append(ev("step_completed", run_id, t, name, workflow=workflow))
    out.append(ev("completed", run_id, t + 1.0, workflow=workflow))
    return out


# ---- idempotent ingest ---------------------------------------------------


def test_a_batch_written_twice_is_stored_and_counted_once(store: SqlStore) -> None:
    batch = [
        ev("started", "r1", 100.0, total_steps=2),
        ev("step_started", "r1", 101.0, "extract"),
        ev("step_completed", "r1", 102.0, "extract"),
        ev("step_started", "r1", 103.0, "load"),
        ev("step_completed", "r1", 104.0, "load"),
    ]

    first = store.runs.write_events(batch)
    second = store.runs.write_events(batch)

    assert first.accepted == ids(batch)
    assert first.duplicates == []
    assert second.accepted == []
    assert second.duplicates == ids(batch)
    assert second.transitions == []
    assert store.runs.count_events() == len(batch)
    run = store.runs.get_run("r1")
    assert run is not None
    assert (run.state, run.completed_steps, run.failed_steps, run.retries) == (S.RUNNING, 2, 0, 0)
    assert run.step_attempts == {"extract": 1, "load": 1}
    assert len(store.runs.run_steps("r1")) == 2


def test_a_duplicate_id_inside_one_batch_is_applied_once(store: SqlStore) -> None:
    started = ev("started", "r1", 100.0)
    done = ev("step_completed", "r1", 101.0, "extract")
    # the same id again, even with other content: a retry, ignored
    again = Event(id=done.id, ts=150.0, kind=EventKind.STEP_FAILED, workflow="etl", run_id="r1", step="extract")

    result = store.runs.write_events([started, done, again, done])

    assert result.accepted == [started.id, done.id]
    assert result.duplicates == [done.id, done.id]
    assert store.runs.count_events() == 2
    run = store.runs.get_run("r1")
    assert run is not None
    assert (run.completed_steps, run.failed_steps, run.last_activity) == (1, 0, 101.0)
    assert [e.kind for e in store.runs.run_events("r1")] == [EventKind.STARTED, EventKind.STEP_COMPLETED]


@pytest.mark.parametrize(
    ("seen", "new"),
    [
        pytest.param(2, 1, id="one-new-after-two-seen"),
        pytest.param(1, 3, id="three-new-after-one-seen"),
        pytest.param(4, 0, id="nothing-new"),
    ],
)
def test_a_batch_mixing_seen_and_new_ids_applies_only_the_new_ones(store: SqlStore, seen: int, new: int) -> None:
    started = ev("started", "r1", 100.0)
    steps = [ev("step_completed", "r1", 101.0 + i, f"s{i}") for i in range(seen + new)]
    store.runs.write_events([started, *steps[:seen]])

    # the seen ones come again, the new ones interleaved among them
    old, fresh = steps[:seen], steps[seen:]
    mixed = [e for i in range(max(seen, new)) for e in (fresh[i : i + 1] + old[i : i + 1])]
    result = store.runs.write_events(mixed)

    assert sorted(result.accepted) == sorted(ids(fresh))
    assert sorted(result.duplicates) == sorted(ids(old))
    assert store.runs.count_events() == 1 + seen + new
    run = store.runs.get_run("r1")
    assert run is not None
    assert run.completed_steps == seen + new
    assert run.step_attempts == {f"s{i}": 1 for i in range(seen + new)}


def test_an_empty_batch_writes_nothing(store: SqlStore) -> None:
    result = store.runs.write_events([])

    assert (result.accepted, result.duplicates, result.transitions) == ([], [], [])
    assert store.runs.count_events() == 0


# ---- runs, steps, transitions ---------------------------------------------


def test_steps_run_apart_complete_their_run_with_the_last_of_them_in_any_order(store: SqlStore) -> None:
    """A Celery group's tasks: each completion says the run has three; the
    run completes with the third, whichever batch or order it comes in."""
    store.runs.write_events([ev("started", "g", 100.0), ev("step_started", "g", 101.0, "count[2]")])
    store.runs.write_events(
        [ev("step_started", "g", 101.0, "count[0]"), ev("step_completed", "g", 102.0, "count[0]", ends_run_after=3)]
    )
    store.runs.write_events(
        [ev("step_started", "g", 102.0, "count[1]"), ev("step_completed", "g", 104.0, "count[1]", ends_run_after=3)]
    )
    run = store.runs.get_run("g")
    assert run is not None and run.state is S.RUNNING  # two of three, one still open

    result = store.runs.write_events([ev("step_completed", "g", 105.0, "count[2]", ends_run_after=3)])

    run = store.runs.get_run("g")
    assert run is not None
    assert (run.state, run.end_time, run.completed_steps) == (S.COMPLETED, 105.0, 3)
    [tr] = result.transitions
    assert (tr.old_state, tr.new_state, tr.reason, tr.applied) == (
        S.RUNNING,
        S.COMPLETED,
        "all 3 steps completed",
        True,
    )


def test_a_runs_own_start_after_its_first_steps_takes_its_time_and_attributes_refusing_nothing(
    store: SqlStore,
) -> None:
    """An OpenTelemetry exporter sends a run's span after its steps' (each span as it ends): the step
    starts the run, and the run's own Started, come later, is its start, not a refused transition."""
    store.runs.write_events([ev("step_started", "r", 101.0, "extract"), ev("step_completed", "r", 102.0, "extract")])
    result = store.runs.write_events([ev("started", "r", 100.0, source="otel", total_steps=1)])
    assert result.refused_transitions == []
    run = store.runs.get_run("r")
    assert run is not None
    assert (run.state, run.start_time, run.total_steps, run.attrs) == (
        S.RUNNING,
        100.0,
        1,
        {"source": "otel", "total_steps": 1},
    )
    assert [t.reason for t in store.runs.run_transitions("r")] == ["implicit: first step event"]
    again = store.runs.write_events([ev("started", "r", 100.5)])  # a second Started: refused, as ever
    assert [(t.old_state, t.new_state) for t in again.refused_transitions] == [(S.RUNNING, S.RUNNING)]


def test_run_steps_lists_every_attempt_and_the_step_still_running(store: SqlStore) -> None:
    store.runs.write_events(
        [
            ev("started", "r1", 100.0, total_steps=3),
            ev("step_started", "r1", 101.0, "extract"),
            ev("step_completed", "r1", 103.0, "extract"),
            ev("step_started", "r1", 104.0, "transform"),
            ev("step_failed", "r1", 105.0, "transform", error="bad row 7", error_type="ValueError"),
        ]
    )
    store.runs.write_events(
        [
            ev("step_started", "r1", 106.0, "transform"),
            ev("step_completed", "r1", 109.0, "transform"),
            ev("step_started", "r1", 110.0, "load"),
        ]
    )

    steps = store.runs.run_steps("r1")

    assert [(s.step, s.attempt, s.status, s.started_at, s.ended_at, s.error) for s in steps] == [
        ("extract", 1, "completed", 101.0, 103.0, None),
        ("transform", 1, "failed", 104.0, 105.0, "ValueError: bad row 7"),
        ("transform", 2, "completed", 106.0, 109.0, None),
        ("load", 1, "running", 110.0, None, None),
    ]
    assert [s.duration for s in steps] == [2.0, 1.0, 3.0, None]
    run = store.runs.get_run("r1")
    assert run is not None
    assert run.state is S.RUNNING
    assert run.current_step == "load"
    assert (run.total_steps, run.completed_steps, run.failed_steps, run.retries) == (3, 2, 1, 1)
    assert run.step_attempts == {"extract": 1, "transform": 2, "load": 1}
    assert (run.start_time, run.end_time, run.last_activity) == (100.0, None, 110.0)
    assert run.error == "ValueError: bad row 7"


def test_a_failed_run_keeps_its_error_and_end_time(store: SqlStore) -> None:
    store.runs.write_events(
        [
            ev("started", "r1", 100.0),
            ev("step_started", "r1", 101.0, "load"),
            ev("step_failed", "r1", 102.0, "load", error="'id'", error_type="KeyError"),
            ev("failed", "r1", 103.0, error="'id'", error_type="KeyError"),
        ]
    )

    run = store.runs.get_run("r1")

    assert run is not None
    assert (run.state, run.start_time, run.end_time, run.current_step) == (S.FAILED, 100.0, 103.0, None)
    assert run.error == "KeyError: 'id'"
    assert [(s.step, s.status) for s in store.runs.run_steps("r1")] == [("load", "failed")]


def test_an_unknown_run_has_no_metrics_and_no_steps(store: SqlStore) -> None:
    assert store.runs.get_run("nope") is None
    assert store.runs.run_steps("nope") == []
    assert store.runs.run_events("nope") == []


@pytest.mark.parametrize(
    ("kinds", "expected", "final"),
    [
        pytest.param(
            ["started", "completed"],
            [(S.PENDING, S.RUNNING, True), (S.RUNNING, S.COMPLETED, True)],
            S.COMPLETED,
            id="started-completed",
        ),
        pytest.param(
            ["started", "suspended", "resumed", "completed"],
            [
                (S.PENDING, S.RUNNING, True),
                (S.RUNNING, S.SUSPENDED, True),
                (S.SUSPENDED, S.RUNNING, True),
                (S.RUNNING, S.COMPLETED, True),
            ],
            S.COMPLETED,
            id="suspend-and-resume",
        ),
        pytest.param(
            ["started", "completed", "failed"],
            [(S.PENDING, S.RUNNING, True), (S.RUNNING, S.COMPLETED, True), (S.COMPLETED, S.FAILED, False)],
            S.COMPLETED,
            id="terminal-state-is-final",
        ),
        pytest.param(
            ["started", "started"],
            [(S.PENDING, S.RUNNING, True), (S.RUNNING, S.RUNNING, False)],
            S.RUNNING,
            id="started-twice-refused",
        ),
        pytest.param(
            ["completed"],
            [(S.PENDING, S.COMPLETED, False)],
            S.PENDING,
            id="completed-without-start-refused",
        ),
        pytest.param(
            ["started", "suspended", "failed"],
            [(S.PENDING, S.RUNNING, True), (S.RUNNING, S.SUSPENDED, True), (S.SUSPENDED, S.FAILED, True)],
            S.FAILED,
            id="suspended-run-may-fail",
        ),
    ],
)
def test_state_events_make_transitions_and_refused_ones_change_nothing(
    store: SqlStore, kinds: list[str], expected: list[tuple[S, S, bool]], final: S
) -> None:
    events = [ev(kind, "r1", 100.0 + i) for i, kind in enumerate(kinds)]

    result = store.runs.write_events(events)

    assert [(t.old_state, t.new_state, t.applied) for t in result.transitions] == expected
    assert [t.event_id for t in result.transitions] == ids(events)
    assert [t.new_state for t in result.refused_transitions] == [new for _, new, ok in expected if not ok]
    run = store.runs.get_run("r1")
    assert run is not None
    assert run.state is final


def test_a_step_event_before_started_starts_the_run_implicitly(store: SqlStore) -> None:
    result = store.runs.write_events([ev("step_completed", "r1", 105.0, "extract")])

    assert [(t.old_state, t.new_state, t.applied) for t in result.transitions] == [(S.PENDING, S.RUNNING, True)]
    run = store.runs.get_run("r1")
    assert run is not None
    assert (run.state, run.start_time, run.completed_steps) == (S.RUNNING, 105.0, 1)


def test_transitions_split_across_batches_continue_from_the_stored_state(store: SqlStore) -> None:
    store.runs.write_events([ev("started", "r1", 100.0)])
    store.runs.write_events([ev("suspended", "r1", 101.0, reason="waiting for approval")])
    result = store.runs.write_events([ev("resumed", "r1", 102.0)])

    assert [(t.old_state, t.new_state, t.applied) for t in result.transitions] == [(S.SUSPENDED, S.RUNNING, True)]
    run = store.runs.get_run("r1")
    assert run is not None
    assert run.state is S.RUNNING


@pytest.mark.parametrize(
    ("new_state", "end_time", "current_step"),
    [
        pytest.param(S.SUSPENDED, None, "load", id="to-suspended"),
        pytest.param(S.CANCELLED, 150.0, None, id="to-cancelled-ends-the-run"),
        pytest.param(S.FAILED, 150.0, None, id="to-failed-ends-the-run"),
    ],
)
def test_record_transition_moves_the_state(
    store: SqlStore, new_state: S, end_time: float | None, current_step: str | None
) -> None:
    store.runs.write_events([ev("started", "r1", 100.0), ev("step_started", "r1", 101.0, "load")])
    asked = StateTransition("r1", 150.0, S.RUNNING, new_state, "operator", "monitor")

    kept = store.runs.record_transition(asked)

    assert kept == asked
    run = store.runs.get_run("r1")
    assert run is not None
    assert (run.state, run.end_time, run.last_activity, run.current_step) == (new_state, end_time, 150.0, current_step)


def test_a_refused_recorded_transition_does_not_move_the_state(store: SqlStore) -> None:
    store.runs.write_events([ev("started", "r1", 100.0), ev("completed", "r1", 101.0)])

    kept = store.runs.record_transition(StateTransition("r1", 150.0, S.COMPLETED, S.RUNNING, applied=False))

    assert kept.applied is False
    run = store.runs.get_run("r1")
    assert run is not None
    assert (run.state, run.end_time, run.last_activity) == (S.COMPLETED, 101.0, 101.0)


def test_events_after_a_recorded_transition_continue_from_the_new_state(store: SqlStore) -> None:
    # the store has this run cached as Running; the recorded transition must not be lost to that cache
    store.runs.write_events([ev("started", "r1", 100.0)])
    store.runs.record_transition(StateTransition("r1", 101.0, S.RUNNING, S.SUSPENDED, "operator", "monitor"))

    result = store.runs.write_events([ev("resumed", "r1", 102.0), ev("step_completed", "r1", 103.0, "load")])

    assert [(t.old_state, t.new_state, t.applied) for t in result.transitions] == [(S.SUSPENDED, S.RUNNING, True)]
    run = store.runs.get_run("r1")
    assert run is not None
    assert (run.state, run.completed_steps, run.last_activity) == (S.RUNNING, 1, 103.0)


def test_record_transition_does_not_move_a_run_that_has_left_the_old_state(store: SqlStore) -> None:
    # A monitor decided Running -> Failed (stalled) while the run's Completed event was being stored.
    store.runs.write_events([ev("started", "r1", 100.0), ev("completed", "r1", 101.0)])

    kept = store.runs.record_transition(StateTransition("r1", 150.0, S.RUNNING, S.FAILED, "stalled", "monitor"))

    assert (kept.old_state, kept.new_state, kept.applied) == (S.COMPLETED, S.FAILED, False)
    run = store.runs.get_run("r1")
    assert run is not None
    assert (run.state, run.end_time) == (S.COMPLETED, 101.0)


def test_record_transition_for_a_run_never_seen_creates_it(store: SqlStore) -> None:
    kept = store.runs.record_transition(
        StateTransition("r9", 150.0, S.PENDING, S.RUNNING, "operator", "api"), workflow="etl"
    )

    assert kept.applied is True
    run = store.runs.get_run("r9")
    assert run is not None
    assert (run.workflow, run.state, run.start_time, run.last_activity) == ("etl", S.RUNNING, 150.0, 150.0)
    result = store.runs.write_events([ev("step_completed", "r9", 151.0, "load"), ev("completed", "r9", 152.0)])
    assert [(t.old_state, t.new_state, t.applied) for t in result.transitions] == [(S.RUNNING, S.COMPLETED, True)]


# ---- two store objects on one database -------------------------------------


def test_two_stores_writing_one_run_alternately_keep_its_counts_right(store: SqlStore, store_url: str) -> None:
    other = open_store(store_url)
    try:
        writers = [store, other]
        store.runs.write_events([ev("started", "r1", 100.0, total_steps=8)])
        for i in range(8):
            kind = "step_failed" if i % 4 == 3 else "step_completed"
            writers[i % 2].runs.write_events([ev(kind, "r1", 101.0 + i, f"s{i}", error="x")])
        # a retry of the first failed step, through the store that did not see it fail
        store.runs.write_events([ev("step_completed", "r1", 110.0, "s3")])
        other.runs.write_events([ev("completed", "r1", 111.0)])

        for s in writers:
            run = s.runs.get_run("r1")
            assert run is not None
            assert (run.state, run.completed_steps, run.failed_steps, run.retries) == (S.COMPLETED, 7, 2, 0)
            assert run.step_attempts["s3"] == 2
            assert (run.start_time, run.end_time, run.last_activity) == (100.0, 111.0, 111.0)
        assert store.runs.count_events() == 11
    finally:
        other.close()


def test_a_transition_recorded_through_another_store_is_seen_by_the_next_write(store: SqlStore, store_url: str) -> None:
    other = open_store(store_url)
    try:
        store.runs.write_events([ev("started", "r1", 100.0)])
        other.runs.record_transition(StateTransition("r1", 101.0, S.RUNNING, S.SUSPENDED, "operator", "monitor"))

        result = store.runs.write_events([ev("resumed", "r1", 102.0)])

        assert [(t.old_state, t.new_state, t.applied) for t in result.transitions] == [(S.SUSPENDED, S.RUNNING, True)]
    finally:
        other.close()


# ---- listing and paging ---------------------------------------------------

# 25 runs; created_at repeats in groups of three, so the cursor must order by run_id as well
RUNS = [(f"run-{i:02d}", "etl" if i % 2 == 0 else "train", 1000.0 + (i // 3) * 10.0) for i in range(25)]


@pytest.fixture
def many_runs(store: SqlStore) -> SqlStore:
    batch: list[Event] = []
    for i, (rid, wf, created) in enumerate(RUNS):
        batch.append(ev("started", rid, created, workflow=wf))
        if i % 5 == 0:
            batch.append(ev("failed", rid, created + 1.0, workflow=wf, error="boom"))
        elif i % 5 == 1:
            batch.append(ev("completed", rid, created + 1.0, workflow=wf))
    store.runs.write_events(batch)
    return store


def newest_first(runs: list[tuple[str, str, float]]) -> list[str]:
    return [rid for rid, _, _ in sorted(runs, key=lambda r: (r[2], r[0]), reverse=True)]


def state_of(i: int) -> S:
    return {0: S.FAILED, 1: S.COMPLETED}.get(i % 5, S.RUNNING)


@pytest.mark.parametrize("limit", [1, 3, 4, 7, 24, 25, 26])
def test_paging_through_runs_returns_each_run_once_newest_first(many_runs: SqlStore, limit: int) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = many_runs.runs.list_runs(limit=limit, cursor=cursor)
        pages += 1
        assert len(page.runs) <= limit
        seen.extend(r.run_id for r in page.runs)
        cursor = page.cursor
        if cursor is None:
            break
        assert pages <= 26, "paging does not end"

    assert seen == newest_first(RUNS)
    assert pages == -(-len(RUNS) // limit)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, RUNS, id="no-filter"),
        pytest.param({"workflow": "etl"}, [r for r in RUNS if r[1] == "etl"], id="workflow"),
        pytest.param({"workflow": "nope"}, [], id="unknown-workflow"),
        pytest.param(
            {"states": ["failed"]}, [r for i, r in enumerate(RUNS) if state_of(i) is S.FAILED], id="one-state"
        ),
        pytest.param(
            {"states": [S.COMPLETED, "failed"]},
            [r for i, r in enumerate(RUNS) if state_of(i) in (S.COMPLETED, S.FAILED)],
            id="two-states",
        ),
        pytest.param({"since": 1030.0}, [r for r in RUNS if r[2] >= 1030.0], id="since-is-inclusive"),
        pytest.param({"until": 1030.0}, [r for r in RUNS if r[2] < 1030.0], id="until-is-exclusive"),
        pytest.param(
            {"since": 1010.0, "until": 1040.0, "workflow": "train", "states": ["running"]},
            [r for i, r in enumerate(RUNS) if 1010.0 <= r[2] < 1040.0 and r[1] == "train" and state_of(i) is S.RUNNING],
            id="all-at-once",
        ),
    ],
)
def test_list_runs_returns_only_the_runs_matching_every_filter(
    many_runs: SqlStore, filters: dict[str, Any], expected: list[tuple[str, str, float]]
) -> None:
    page = many_runs.runs.list_runs(limit=100, **filters)

    assert [r.run_id for r in page.runs] == newest_first(expected)
    assert page.cursor is None


def test_paging_a_filtered_list_keeps_the_filter_on_every_page(many_runs: SqlStore) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = many_runs.runs.list_runs(workflow="train", since=1010.0, limit=2, cursor=cursor)
        assert all(r.workflow == "train" for r in page.runs)
        seen.extend(r.run_id for r in page.runs)
        if (cursor := page.cursor) is None:
            break

    assert seen == newest_first([r for r in RUNS if r[1] == "train" and r[2] >= 1010.0])


def test_a_run_created_between_pages_does_not_disturb_the_next_page(many_runs: SqlStore) -> None:
    first = many_runs.runs.list_runs(limit=10)
    many_runs.runs.write_events([ev("started", "run-new", 5000.0)])

    rest = many_runs.runs.list_runs(limit=100, cursor=first.cursor)

    assert [r.run_id for r in first.runs + rest.runs] == newest_first(RUNS)


def _b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("garbage!", id="not-base64"),
        pytest.param("abc", id="bad-padding"),
        pytest.param(_b64(b"not-a-cursor"), id="no-separator"),
        pytest.param(_b64(b"yesterday|run-01"), id="time-not-a-number"),
        pytest.param(_b64(b"\xff\xfe|\x80"), id="not-utf8"),
    ],
)
def test_a_garbage_cursor_raises_store_error(many_runs: SqlStore, cursor: str) -> None:
    with pytest.raises(StoreError, match="cursor"):
        many_runs.runs.list_runs(cursor=cursor)


# ---- events, history, retention --------------------------------------------


def test_run_events_come_back_in_the_order_they_were_stored(store: SqlStore) -> None:
    a1 = [ev("started", "a", 100.0, owner="ana", tags=["x", "y"]), ev("step_started", "a", 101.0, "extract")]
    b1 = [ev("started", "b", 100.5)]
    a2 = [ev("step_completed", "a", 102.0, "extract"), ev("progress", "a", 102.5, done=3, total=4.5)]
    store.runs.write_events(a1 + b1)
    store.runs.write_events(a2)

    events = store.runs.run_events("a")

    assert events == a1 + a2
    assert events[0].attrs == {"owner": "ana", "tags": ["x", "y"]}
    assert store.runs.run_events("a", limit=2) == a1
    assert store.runs.run_events("b") == b1


def test_history_learns_step_durations_and_order_from_completed_runs_only(store: SqlStore) -> None:
    # step names not in alphabetical order: the order is when they ran
    store.runs.write_events(a_completed_run("old", 100.0, {"zeta": 2.0, "alpha": 10.0, "mid": 1.0}))
    store.runs.write_events(a_completed_run("new", 200.0, {"zeta": 4.0, "alpha": 12.0, "mid": 3.0}))
    store.runs.write_events(
        [
            ev("started", "broken", 300.0),
            ev("step_started", "broken", 300.0, "zeta"),
            ev("step_completed", "broken", 399.0, "zeta"),
            ev("failed", "broken", 400.0),
            ev("started", "live", 500.0),
            ev("step_completed", "live", 599.0, "zeta"),
        ]
    )
    store.runs.write_events(a_completed_run("elsewhere", 100.0, {"other": 50.0}, workflow="train"))

    h = store.stats.history("etl")

    assert h.workflow == "etl"
    assert h.runs == 2
    assert h.step_order == ("zeta", "alpha", "mid")
    assert {k: sorted(v) for k, v in h.step_durations.items()} == {
        "zeta": [2.0, 4.0],
        "alpha": [10.0, 12.0],
        "mid": [1.0, 3.0],
    }
    assert h.run_durations == (20.0, 14.0)  # newest end first
    assert h.step_median("alpha") == 11.0


def test_history_keeps_only_the_latest_runs(store: SqlStore) -> None:
    for i in range(5):
        store.runs.write_events(a_completed_run(f"r{i}", 100.0 * (i + 1), {"load": float(i + 1)}))

    h = store.stats.history("etl", runs=2)

    assert h.runs == 2
    assert sorted(h.step_durations["load"]) == [4.0, 5.0]
    assert h.run_durations == (6.0, 5.0)


def test_history_follows_a_newly_completed_run_and_a_late_step_event(store: SqlStore) -> None:
    store.runs.write_events(a_completed_run("r1", 100.0, {"load": 5.0}))
    assert store.stats.history("etl").step_durations == {"load": (5.0,)}
    assert store.stats.history("etl") is store.stats.history("etl")  # nothing written: the same answer, kept

    store.runs.write_events(a_completed_run("r2", 200.0, {"load": 7.0}))
    assert sorted(store.stats.history("etl").step_durations["load"]) == [5.0, 7.0]

    # a step event of a completed run that arrives late changes what it teaches
    store.runs.write_events([ev("step_started", "r1", 106.5, "check"), ev("step_completed", "r1", 107.0, "check")])
    assert store.stats.history("etl").step_durations["check"] == (0.5,)


def test_history_written_by_another_connection_is_seen(store_url: str) -> None:
    with open_store(store_url) as reader, open_store(store_url) as writer:
        writer.runs.write_events(a_completed_run("r1", 100.0, {"load": 5.0}))
        assert reader.stats.history("etl").step_durations == {"load": (5.0,)}
        writer.runs.write_events([ev("step_started", "r1", 106.5, "check"), ev("step_completed", "r1", 107.0, "check")])
        assert reader.stats.history("etl").step_durations == {"load": (5.0,), "check": (0.5,)}


def test_history_forgets_what_prune_deleted(store: SqlStore) -> None:
    store.runs.write_events(
        [
            ev("started", "r1", 100.0),
            ev("step_started", "r1", 100.0, "a"),
            ev("step_completed", "r1", 101.0, "a"),
            ev("step_started", "r1", 900.0, "b"),
            ev("step_completed", "r1", 902.0, "b"),
            ev("completed", "r1", 903.0),
        ]
    )
    assert set(store.stats.history("etl").step_durations) == {"a", "b"}

    store.runs.prune(older_than=500.0)  # the run ended after the cutoff: it stays, its early events go

    assert set(store.stats.history("etl").step_durations) == {"b"}


def test_histories_follow_a_completed_run_and_a_late_step_event_as_history_does(store_url: str) -> None:
    with open_store(store_url) as reader, open_store(store_url) as writer:
        writer.runs.write_events(a_completed_run("r1", 100.0, {"load": 5.0}) + [ev("started", "live", 150.0)])
        first = reader.stats.histories(["etl", "nobody"])
        assert first["etl"].step_durations == {"load": (5.0,)}
        assert first["nobody"] == reader.stats.history("nobody")
        assert reader.stats.histories(["etl"])["etl"] is first["etl"]  # nothing changed: kept

        writer.runs.write_events([ev("step_completed", "live", 151.0, "load")])  # a live run: not what a history reads
        assert reader.stats.histories(["etl"])["etl"] is first["etl"]

        writer.runs.write_events([ev("step_started", "r1", 106.5, "check"), ev("step_completed", "r1", 107.0, "check")])
        assert reader.stats.histories(["etl"])["etl"].step_durations == {"load": (5.0,), "check": (0.5,)}

        writer.runs.write_events(a_completed_run("r2", 200.0, {"load": 7.0}))
        assert sorted(reader.stats.histories(["etl"])["etl"].step_durations["load"]) == [5.0, 7.0]
        for wf in ("etl", "nobody"):
            assert reader.stats.histories([wf])[wf] == reader.stats.history(wf)


def test_workflow_figures_and_trends_follow_every_change_of_the_runs_they_read(store_url: str) -> None:
    with open_store(store_url) as reader, open_store(store_url) as writer:
        writer.runs.write_events(a_completed_run("r1", 100.0, {"load": 5.0}))
        [st] = reader.stats.workflow_stats()
        assert (st["duration_p50_seconds"], st["last_run_at"]) == (6.0, 100.0)
        assert reader.stats.latest_ended(["etl"], 5) == {"etl": [("r1", "completed", 100.0, 106.0)]}

        writer.runs.write_events([ev("started", "r2", 300.0)])  # a new run: the last run's time moves
        assert reader.stats.workflow_stats()[0]["last_run_at"] == 300.0
        assert reader.stats.latest_ended(["etl"], 5) == {"etl": [("r1", "completed", 100.0, 106.0)]}

        writer.runs.write_events([ev("completed", "r2", 310.0)])
        [st] = reader.stats.workflow_stats()
        assert (st["duration_p50_seconds"], st["by_state"]) == (8.0, {"completed": 2})
        assert [r[0] for r in reader.stats.latest_ended(["etl"], 5)["etl"]] == ["r2", "r1"]

        # a transition to the state a run is in, from outside an event: its end time moves
        writer.runs.record_transition(StateTransition("r2", 320.0, S.COMPLETED, S.COMPLETED, "again", "test"))
        expected = writer.db.read("SELECT end_time - start_time FROM runs WHERE run_id = 'r2'")[0][0]
        assert expected == 20.0
        assert reader.stats.workflow_stats()[0]["duration_p95_seconds"] == round(6.0 + 14.0 * 0.95, 3)
        assert reader.stats.latest_ended(["etl"], 1)["etl"][0][3] == writer.runs.get_run("r2").end_time  # type: ignore[union-attr]

        writer.runs.prune(older_than=200.0)
        [st] = reader.stats.workflow_stats()
        assert st["by_state"] == {"completed": 1} and st["last_run_at"] == 300.0
        assert [r[0] for r in reader.stats.latest_ended(["etl"], 5)["etl"]] == ["r2"]


def _searched(store: SqlStore, text: str) -> list[str]:
    return [m.workflow_id for m in store.runs.list_runs(text=text, limit=1000).runs]


@pytest.mark.parametrize(
    "text",
    [
        "run",
        "RUN-00",
        "un-0001",
        "etl",
        "ETL-NIGHT",
        "load",
        "LOAD",
        "disk full",
        "Disk Full",
        "k fu",
        "100%",
        "50_",
        "a\\b",
        'say "hi"',
        "ünï",
        "ÜNÏ",
        "nobody has this",
        "ab",
        "x",
        "é",
    ],
)
def test_a_search_through_the_trigram_index_finds_exactly_what_the_scan_finds(store: SqlStore, text: str) -> None:
    batch: list[Event] = []
    for i, (workflow, step, error) in enumerate(
        [
            ("etl-nightly", "load", None),
            ("ETL-Nightly", "LOAD-all", "Disk full"),
            ("report", None, "disk FULL"),
            ("p-100%", "50_percent", "a\\b"),
            ("quotes", 'say "hi" now', None),
            ("ünïcode", "ÜNÏ", "é É"),
            ("tiny", "ab", "x"),
        ]
    ):
        rid = f"run-{i:04d}"
        batch.append(ev("started", rid, 100.0 + i, workflow=workflow))
        if step:
            batch.append(ev("step_started", rid, 101.0 + i, step, workflow=workflow))
        if error:
            batch.append(ev("failed", rid, 102.0 + i, workflow=workflow, error=error))
    store.runs.write_events(batch)

    found = _searched(store, text)
    store.db.dialect.text_index = False  # the exact scan every store has
    assert found == _searched(store, text)


def test_the_search_index_follows_a_runs_step_and_error_and_forgets_pruned_runs(store: SqlStore) -> None:
    store.runs.write_events([ev("started", "r1", 100.0), ev("step_started", "r1", 101.0, "extract")])
    assert _searched(store, "extract") == ["r1"]

    store.runs.write_events([ev("step_completed", "r1", 102.0, "extract"), ev("step_started", "r1", 103.0, "publish")])
    assert (_searched(store, "extract"), _searched(store, "publish")) == ([], ["r1"])

    store.runs.write_events([ev("failed", "r1", 104.0, error="quota exceeded")])
    assert (_searched(store, "publish"), _searched(store, "quota")) == ([], ["r1"])

    store.runs.prune(older_than=1000.0)
    assert _searched(store, "quota") == [] and _searched(store, "r1") == []


def test_a_common_search_text_walks_the_runs_newest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flowsight.store.sqlite as sqlite_store

    with open_store(str(tmp_path / "s.db")) as store:
        store.runs.write_events(
            [ev("started", f"r{i}", 100.0 + i, workflow="common" if i % 2 else "rare") for i in range(20)]
        )
        monkeypatch.setattr(sqlite_store, "_DRIVE", 3)  # more candidates than this: the walk, not the read
        page = store.runs.list_runs(text="common", limit=4)
        assert [m.workflow_id for m in page.runs] == ["r19", "r17", "r15", "r13"]
        rest = store.runs.list_runs(text="common", limit=100, cursor=page.cursor)
        assert [m.workflow_id for m in rest.runs] == ["r11", "r9", "r7", "r5", "r3", "r1"]


def _counted(store: SqlStore) -> dict[tuple[str, str], int]:
    return {(wf["workflow"], state): n for wf in store.stats.workflow_stats() for state, n in wf["by_state"].items()}


def _actual(store: SqlStore) -> dict[tuple[str, str], int]:
    rows = store.db.read("SELECT workflow, state, COUNT(*) FROM runs GROUP BY workflow, state")
    return {(wf, state): int(n) for wf, state, n in rows}


def test_runs_per_workflow_and_state_stay_counted_through_every_write(store_url: str) -> None:
    with open_store(store_url) as store, open_store(store_url) as other:
        store.runs.write_events(a_completed_run("done", 100.0, {"load": 5.0}))
        store.runs.write_events(
            [
                ev("started", "live", 110.0),
                ev("started", "t1", 111.0, workflow="train"),
                ev("step_started", "t1", 112.0, "fit", workflow="train"),
            ]
        )
        assert (
            _counted(store)
            == _actual(store)
            == {("etl", "completed"): 1, ("etl", "running"): 1, ("train", "running"): 1}
        )
        # one batch moving a run twice, a refused transition, another writer, a transition made outside events
        store.runs.write_events(
            [
                ev("suspended", "live", 120.0),
                ev("resumed", "live", 121.0),
                ev("failed", "live", 122.0),
                ev("started", "done", 123.0),
            ]
        )
        other.runs.write_events([ev("completed", "t1", 130.0, workflow="train")])
        store.runs.record_transition(
            StateTransition("nobody", 140.0, S.PENDING, S.RUNNING, "operator", "monitor"), workflow="etl"
        )
        store.runs.record_transition(StateTransition("nobody", 141.0, S.RUNNING, S.CANCELLED, "operator", "monitor"))
        assert (
            _counted(store)
            == _actual(store)
            == {("etl", "completed"): 1, ("etl", "failed"): 1, ("etl", "cancelled"): 1, ("train", "completed"): 1}
        )
        store.runs.prune(older_than=125.0)  # "done" (ended 107) and "live" (ended 122) go
        assert _counted(store) == _actual(store) == {("etl", "cancelled"): 1, ("train", "completed"): 1}


def test_a_run_another_connection_moved_is_never_written_back_from_the_cache(store_url: str) -> None:
    """The other writer's commit is seen once (SQLite: data_version); every
    cached run must be read again then, not only the runs of that batch."""
    with open_store(store_url) as store, open_store(store_url) as other:
        store.runs.write_events([ev("started", "r1", 100.0), ev("started", "r2", 101.0)])
        other.runs.write_events([ev("failed", "r1", 110.0, error="boom")])
        store.runs.write_events([ev("heartbeat", "r2", 120.0)])  # sees that someone wrote; r1 is not in this batch
        store.runs.write_events([ev("heartbeat", "r1", 121.0)])  # a late heartbeat of the failed run
        r1 = store.runs.get_run("r1")
        assert r1 is not None and r1.state is S.FAILED and r1.error == "boom"
        assert _counted(store) == _actual(store) == {("etl", "failed"): 1, ("etl", "running"): 1}


def test_recount_heals_counts_no_writer_kept(store: SqlStore) -> None:
    store.runs.write_events(a_completed_run("done", 100.0, {"load": 5.0}))
    store.runs.write_events([ev("started", "live", 110.0), ev("started", "t1", 111.0, workflow="train")])
    assert store.runs.recount_runs() == 0  # nothing off
    with store.db.write_txn() as cur:  # as an older version writing to this store would leave them
        cur.execute("UPDATE run_counts SET runs = runs + 3 WHERE workflow = 'etl' AND state = 'running'")
        cur.execute("DELETE FROM run_counts WHERE workflow = 'train'")
        cur.execute("INSERT INTO run_counts (workflow, state, runs, changes) VALUES ('gone', 'failed', 2, 1)")
    before = dict(((wf, st), ch) for wf, st, ch in store.db.read("SELECT workflow, state, changes FROM run_counts"))

    assert store.runs.recount_runs() == 3
    assert (
        _counted(store) == _actual(store) == {("etl", "completed"): 1, ("etl", "running"): 1, ("train", "running"): 1}
    )
    after = dict(((wf, st), ch) for wf, st, ch in store.db.read("SELECT workflow, state, changes FROM run_counts"))
    assert after[("etl", "running")] > before[("etl", "running")]  # what the overview keeps is made again
    assert after[("etl", "completed")] == before[("etl", "completed")]


def test_paging_runs_of_several_states_merges_them_newest_first(many_runs: SqlStore) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = many_runs.runs.list_runs(states=["failed", S.COMPLETED, "failed"], limit=2, cursor=cursor)
        seen.extend(r.run_id for r in page.runs)
        if (cursor := page.cursor) is None:
            break

    assert seen == newest_first([r for i, r in enumerate(RUNS) if state_of(i) in (S.COMPLETED, S.FAILED)])


def test_history_of_a_workflow_without_completed_runs_is_empty(store: SqlStore) -> None:
    store.runs.write_events([ev("started", "r1", 100.0), ev("step_completed", "r1", 101.0, "load")])

    h = store.stats.history("etl")

    assert (h.runs, h.run_durations, h.step_order, h.step_durations) == (0, (), (), {})
    assert h.step_p95("load") is None


def test_prune_removes_old_events_and_old_ended_runs_but_keeps_recent_ones(store: SqlStore) -> None:
    # written in the order they happened
    store.runs.write_events(a_completed_run("old", 100.0, {"load": 5.0}))  # events 100..106, ended 106
    store.runs.write_events([ev("started", "long", 107.0)])  # started long ago, still running
    store.runs.write_events(a_completed_run("recent", 900.0, {"load": 5.0}))  # ended 906
    store.runs.write_events([ev("step_started", "long", 950.0, "load")])
    old_events = 4 + 1  # every event of "old", and the Started of "long"

    deleted = store.runs.prune(older_than=500.0)

    assert deleted == old_events
    assert store.runs.get_run("old") is None
    assert store.runs.run_events("old") == []
    assert {r.run_id for r in store.runs.list_runs().runs} == {"recent", "long"}
    assert len(store.runs.run_events("recent")) == 4
    assert [e.kind for e in store.runs.run_events("long")] == [EventKind.STEP_STARTED]
    long = store.runs.get_run("long")
    assert long is not None
    assert (long.state, long.current_step) == (S.RUNNING, "load")
    assert store.stats.history("etl").runs == 1
    assert store.runs.count_events() == 5


def test_prune_with_nothing_old_deletes_nothing(store: SqlStore) -> None:
    store.runs.write_events(a_completed_run("r1", 1000.0, {"load": 1.0}))

    assert store.runs.prune(older_than=500.0) == 0
    assert store.runs.count_events() == 4
    assert store.runs.get_run("r1") is not None


# ---- opening and migrating --------------------------------------------------


def test_opening_the_same_store_twice_migrates_once_and_sees_the_same_data(store: SqlStore, store_url: str) -> None:
    store.runs.write_events([ev("started", "r1", 100.0)])

    with open_store(store_url) as again:
        assert again.schema_version() == LATEST
        assert again.runs.count_events() == 1
        assert again.runs.get_run("r1") is not None
    assert store.schema_version() == LATEST
    with open_store(store_url) as third:
        assert third.schema_version() == LATEST


def test_sqlite_urls_name_the_same_file_as_a_plain_path(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with open_store(str(path)) as s:
        s.runs.write_events([ev("started", "r1", 100.0)])

    with open_store(f"sqlite:///{path}") as s:
        assert s.runs.count_events() == 1


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("mysql://root@localhost/flows", "mysql"),
        ("http://127.0.0.1:8080/db", "http"),
        ("redis://localhost:6379/0", "redis"),
    ],
)
def test_open_store_with_an_unknown_scheme_raises_config_error(url: str, scheme: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown scheme '{scheme}'"):
        open_store(url)


def test_the_run_counts_are_made_from_the_runs_stored_before_them(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    with open_store(path) as store:
        store.runs.write_events(a_completed_run("a", 100.0, {"load": 1.0}) + [ev("started", "b", 100.0, workflow="x")])
        store.db.write("DROP TABLE run_counts")  # as a store from before migration 10
        store.db.write("DELETE FROM schema_migrations WHERE version >= 10")

    with open_store(path) as store:
        assert _counted(store) == _actual(store) == {("etl", "completed"): 1, ("x", "running"): 1}


def test_a_store_with_the_trigram_index_opened_by_a_sqlite_without_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowsight.store.sqlite as sqlite_store

    path = str(tmp_path / "s.db")
    with open_store(path) as store:
        store.runs.write_events([ev("started", "r1", 100.0)])
        if not store.db.dialect.text_index:
            pytest.skip("this SQLite has no FTS5 trigram tokenizer: the index was never made")
    monkeypatch.setattr(sqlite_store, "sqlite_has_trigram", lambda cur: False)  # as an older SQLite would find
    with pytest.raises(StoreError, match=r"made by a SQLite with FTS5's trigram tokenizer \(3.34 or newer\)"):
        open_store(path)
