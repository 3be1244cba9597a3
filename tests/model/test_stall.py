"""stall_verdict: a Running run idle for longer than its bound is stalled; the
bound comes from history, the run's own stall_timeout, or the default. Time is
injected as ``now``."""

from __future__ import annotations

from typing import Any

import pytest

from flowsight.model.runs.events import Event, EventKind, make_event
from flowsight.model.runs.execution import ExecutionMetrics, apply_event, new_metrics
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.runs.stall import DEFAULT_TIMEOUT, MIN_BOUND, stall_verdict
from flowsight.store import SqlStore

K = EventKind
T0 = 1_700_000_000.0


def ev(kind: K, step: str | None = None, attrs: dict[str, Any] | None = None, *, t: float) -> Event:
    return make_event(kind, "etl", "run-1", step, attrs, ts=T0 + t)


def run_of(*events: Event) -> ExecutionMetrics:
    m = new_metrics(events[0])
    for e in events:
        apply_event(m, e)
    return m


def in_transform(attrs: dict[str, Any] | None = None, *extra: Event) -> ExecutionMetrics:
    """Running; transform started at T0 + 10 and nothing has happened since (unless ``extra``)."""
    return run_of(
        ev(K.STARTED, attrs=attrs, t=0),
        ev(K.STEP_STARTED, "extract", t=0),
        ev(K.STEP_COMPLETED, "extract", t=10),
        ev(K.STEP_STARTED, "transform", t=10),
        *extra,
    )


# transform's p95 over (10, 10, 10, 10, 20) is 18: the bound is 3 x 18 = 54 s
HISTORY = WorkflowHistory(
    "etl",
    5,
    (60.0,) * 5,
    ("extract", "transform"),
    {"extract": (10.0,) * 5, "transform": (10.0, 10.0, 10.0, 10.0, 20.0)},
)


@pytest.mark.parametrize(
    ("idle", "stalled"),
    [(0.0, False), (30.0, False), (53.9, False), (54.0, False), (54.1, True), (3600.0, True)],
)
def test_a_run_is_stalled_only_once_idle_beyond_three_times_the_steps_p95(idle: float, stalled: bool) -> None:
    v = stall_verdict(in_transform(), HISTORY, T0 + 10 + idle)
    assert v is not None
    assert v.basis == "history"
    assert v.bound == pytest.approx(54.0)
    assert v.idle_for == pytest.approx(idle)
    assert v.stalled is stalled


@pytest.mark.parametrize(
    "activity",
    [
        pytest.param(ev(K.HEARTBEAT, t=50), id="heartbeat"),
        pytest.param(ev(K.PROGRESS, "transform", {"done": 1, "total": 5}, t=50), id="progress"),
    ],
)
def test_a_heartbeat_or_progress_resets_the_idle_time(activity: Event) -> None:
    v = stall_verdict(in_transform(None, activity), HISTORY, T0 + 100)
    assert v is not None
    assert v.idle_for == pytest.approx(50)
    assert not v.stalled


@pytest.mark.parametrize(
    ("p95", "min_bound", "bound"),
    [
        (1.0, MIN_BOUND, MIN_BOUND),  # 3 s is under the default floor of 5 s
        (1.0, 60.0, 60.0),
        (30.0, 60.0, 90.0),  # 3 x 30 is above the floor
        (0.0, MIN_BOUND, MIN_BOUND),
    ],
)
def test_the_history_bound_is_never_under_min_bound(p95: float, min_bound: float, bound: float) -> None:
    h = WorkflowHistory("etl", 1, (p95,), ("transform",), {"transform": (p95,)})
    m = in_transform()
    v = stall_verdict(m, h, T0 + 10 + bound - 0.5, min_bound=min_bound)
    assert v is not None
    assert v.bound == pytest.approx(bound)
    assert (v.basis, v.stalled) == ("history", False)
    v = stall_verdict(m, h, T0 + 10 + bound + 0.5, min_bound=min_bound)
    assert v is not None and v.stalled


@pytest.mark.parametrize(
    "history",
    [
        pytest.param(None, id="no history"),
        pytest.param(
            WorkflowHistory("etl", 2, (9.0, 9.0), ("extract",), {"extract": (1.0, 1.0)}),
            id="history without the current step",
        ),
    ],
)
def test_without_history_for_the_step_the_runs_stall_timeout_is_the_bound(history: WorkflowHistory | None) -> None:
    m = in_transform({"stall_timeout": 120})
    v = stall_verdict(m, history, T0 + 10 + 119)
    assert v is not None
    assert (v.bound, v.basis, v.stalled) == (120.0, "run timeout", False)
    v = stall_verdict(m, history, T0 + 10 + 121)
    assert v is not None and v.stalled


def test_history_for_the_step_wins_over_the_runs_stall_timeout() -> None:
    v = stall_verdict(in_transform({"stall_timeout": 120}), HISTORY, T0 + 10 + 60)
    assert v is not None
    assert (v.basis, v.stalled) == ("history", True)


@pytest.mark.parametrize(
    ("kwargs", "bound"),
    [({}, DEFAULT_TIMEOUT), ({"timeout": 300.0}, 300.0)],
    ids=["default", "configured"],
)
def test_with_nothing_else_the_configured_timeout_is_the_bound(kwargs: dict[str, float], bound: float) -> None:
    m = in_transform()
    v = stall_verdict(m, None, T0 + 10 + bound, **kwargs)
    assert v is not None
    assert (v.bound, v.basis, v.stalled) == (bound, "default timeout", False)
    v = stall_verdict(m, None, T0 + 10 + bound + 1, **kwargs)
    assert v is not None and v.stalled


def test_a_run_between_steps_uses_the_timeout_not_history() -> None:
    m = run_of(ev(K.STARTED, t=0), ev(K.STEP_STARTED, "extract", t=0), ev(K.STEP_COMPLETED, "extract", t=10))
    assert m.current_step is None
    v = stall_verdict(m, HISTORY, T0 + 100)
    assert v is not None
    assert (v.basis, v.stalled) == ("default timeout", False)


def test_a_now_before_the_last_activity_counts_as_not_idle() -> None:
    v = stall_verdict(in_transform(), HISTORY, T0)
    assert v is not None
    assert v.idle_for == 0.0 and not v.stalled


@pytest.mark.parametrize(
    "kinds",
    [
        pytest.param([], id="pending"),
        pytest.param([K.STARTED, K.SUSPENDED], id="suspended"),
        pytest.param([K.STARTED, K.COMPLETED], id="completed"),
        pytest.param([K.STARTED, K.FAILED], id="failed"),
        pytest.param([K.STARTED, K.CANCELLED], id="cancelled"),
    ],
)
def test_a_run_that_is_not_running_gets_no_verdict(kinds: list[K]) -> None:
    m = ExecutionMetrics("run-1", "etl", last_activity=T0)
    for i, k in enumerate(kinds):
        apply_event(m, ev(k, t=i))
    assert stall_verdict(m, HISTORY, T0 + 1e6, timeout=1.0) is None


def test_a_stall_is_judged_from_a_history_and_a_run_read_from_a_store(store: SqlStore) -> None:
    for i, took in enumerate([10.0, 10.0, 10.0, 10.0, 20.0]):
        start = T0 + 1000 * i
        store.runs.write_events(
            [
                make_event(K.STARTED, "etl", f"done-{i}", ts=start),
                make_event(K.STEP_STARTED, "etl", f"done-{i}", "transform", ts=start),
                make_event(K.STEP_COMPLETED, "etl", f"done-{i}", "transform", ts=start + took),
                make_event(K.COMPLETED, "etl", f"done-{i}", ts=start + took),
            ]
        )
    live_start = T0 + 10_000
    store.runs.write_events(
        [
            make_event(K.STARTED, "etl", "live", ts=live_start),
            make_event(K.STEP_STARTED, "etl", "live", "transform", ts=live_start + 1),
        ]
    )
    h = store.stats.history("etl")
    live = store.runs.get_run("live")
    assert live is not None
    calm = stall_verdict(live, h, live_start + 1 + 53)
    stuck = stall_verdict(live, h, live_start + 1 + 55)
    assert calm is not None and stuck is not None
    assert calm.bound == pytest.approx(54.0)
    assert calm.basis == "history"
    assert not calm.stalled and stuck.stalled
