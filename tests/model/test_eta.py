"""estimate_eta: from the workflow's history when there is one, else from the
current run, else nothing; all at an injected ``now``."""

from __future__ import annotations

import statistics
import uuid
from typing import Any

import pytest

from flowsight.model.runs.eta import estimate_eta
from flowsight.model.runs.events import Event, EventKind, make_event
from flowsight.model.runs.execution import ExecutionMetrics, apply_event, new_metrics
from flowsight.model.runs.history import WorkflowHistory
from flowsight.store import SqlStore

K = EventKind
T0 = 1_700_000_000.0


def ev(
    kind: K,
    step: str | None = None,
    attrs: dict[str, Any] | None = None,
    *,
    t: float,
    run: str = "run-1",
    workflow: str = "etl",
) -> Event:
    return make_event(kind, workflow, run, step, attrs, ts=T0 + t)


def run_of(*events: Event) -> ExecutionMetrics:
    m = new_metrics(events[0])
    for e in events:
        apply_event(m, e)
    return m


# extract median 10, transform median 40, load median 6
HISTORY = WorkflowHistory(
    workflow="etl",
    runs=3,
    run_durations=(60.0, 60.0, 60.0),
    step_order=("extract", "transform", "load"),
    step_durations={"extract": (8.0, 10.0, 12.0), "transform": (30.0, 40.0, 50.0), "load": (5.0, 6.0, 100.0)},
)


def in_transform(total_steps: int = 3, *extra: Event) -> ExecutionMetrics:
    """Started at T0; extract ran 0-10; transform running since 10."""
    return run_of(
        ev(K.STARTED, attrs={"total_steps": total_steps}, t=0),
        ev(K.STEP_STARTED, "extract", t=0),
        ev(K.STEP_COMPLETED, "extract", t=10),
        ev(K.STEP_STARTED, "transform", t=10),
        *extra,
    )


# ---- with history ---------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "remaining"),
    [
        (0, 6 + 40),  # load's median + transform's whole median
        (15, 6 + 25),  # transform's median less the 15 s it has run
        (36, 6 + 4),  # 40 - 36 = 4, exactly the floor
        (39, 6 + 4),  # 40 - 39 = 1, under the floor of 10% of 40
        (1000, 6 + 4),  # long overdue: still the floor, never negative
    ],
)
def test_remaining_steps_take_their_medians_and_the_running_step_its_median_less_elapsed(
    elapsed: float, remaining: float
) -> None:
    now = T0 + 10 + elapsed
    eta = estimate_eta(in_transform(), HISTORY, now)
    assert eta is not None
    assert eta.basis == "history"
    assert eta.seconds == pytest.approx(remaining)
    assert eta.finish_at == pytest.approx(now + remaining)


def test_progress_reported_in_the_running_step_sets_its_rate() -> None:
    # 25 of 100 done in the 10 s since transform started: 0.4 s each, 75 to go
    m = in_transform(3, ev(K.PROGRESS, "transform", {"done": 25, "total": 100}, t=15))
    eta = estimate_eta(m, HISTORY, T0 + 20)
    assert eta is not None
    assert eta.seconds == pytest.approx(6 + 30)


def test_steps_the_run_declares_beyond_the_history_take_the_mean_step() -> None:
    mean_step = statistics.fmean([8, 10, 12, 30, 40, 50, 5, 6, 100])
    eta = estimate_eta(in_transform(5), HISTORY, T0 + 25)
    assert eta is not None
    # load, transform's rest, and two steps history has never seen
    assert eta.seconds == pytest.approx(6 + 25 + 2 * mean_step)


def test_a_running_step_history_has_not_seen_takes_the_mean_step() -> None:
    mean_step = statistics.fmean([8, 10, 12, 30, 40, 50, 5, 6, 100])
    m = run_of(
        ev(K.STARTED, t=0),
        ev(K.STEP_STARTED, "extract", t=0),
        ev(K.STEP_COMPLETED, "extract", t=10),
        ev(K.STEP_STARTED, "mystery", t=10),
    )
    eta = estimate_eta(m, HISTORY, T0 + 15)
    assert eta is not None
    assert eta.seconds == pytest.approx(40 + 6 + (mean_step - 5))


def test_a_suspended_run_still_gets_an_eta() -> None:
    m = in_transform(3, ev(K.SUSPENDED, t=12))
    eta = estimate_eta(m, HISTORY, T0 + 25)
    assert eta is not None and eta.seconds == pytest.approx(6 + 25)


def test_confidence_grows_with_the_number_of_past_runs() -> None:
    m = in_transform()
    confidences = []
    for runs in [1, 2, 5, 20, 100]:
        h = WorkflowHistory("etl", runs, (60.0,) * runs, HISTORY.step_order, HISTORY.step_durations)
        eta = estimate_eta(m, h, T0 + 20)
        assert eta is not None
        confidences.append(eta.confidence)
    assert confidences == sorted(confidences)
    assert len(set(confidences)) == len(confidences)
    assert 0 < confidences[0] and confidences[-1] <= 1.0


def test_confidence_shrinks_with_the_spread_of_past_runs() -> None:
    m = in_transform()
    steady = WorkflowHistory("etl", 4, (60.0, 60.0, 60.0, 60.0), HISTORY.step_order, HISTORY.step_durations)
    erratic = WorkflowHistory("etl", 4, (10.0, 60.0, 120.0, 300.0), HISTORY.step_order, HISTORY.step_durations)
    a, b = estimate_eta(m, steady, T0 + 20), estimate_eta(m, erratic, T0 + 20)
    assert a is not None and b is not None
    assert a.confidence == pytest.approx(4 / 6, abs=1e-3)
    assert b.confidence < a.confidence


# ---- without history ----------------------------------------------------------


def three_of_four_in_load() -> ExecutionMetrics:
    """total 4; extract 0-10, transform 10-30 (mean 15 s a step); load running since 30."""
    return run_of(
        ev(K.STARTED, attrs={"total_steps": 4}, t=0),
        ev(K.STEP_STARTED, "extract", t=0),
        ev(K.STEP_COMPLETED, "extract", t=10),
        ev(K.STEP_STARTED, "transform", t=10),
        ev(K.STEP_COMPLETED, "transform", t=30),
        ev(K.STEP_STARTED, "load", t=30),
    )


@pytest.mark.parametrize(
    "history",
    [None, WorkflowHistory("etl"), WorkflowHistory("etl", runs=2, run_durations=(5.0, 6.0))],
    ids=["no history", "no past runs", "past runs without steps"],
)
def test_without_usable_history_the_current_runs_mean_step_time_is_used(history: WorkflowHistory | None) -> None:
    eta = estimate_eta(three_of_four_in_load(), history, T0 + 35)
    assert eta is not None
    assert eta.basis == "current run"
    # one step after load at 15 s, and load's 15 s less the 5 s it has run
    assert eta.seconds == pytest.approx(15 + 10)
    assert eta.finish_at == pytest.approx(T0 + 35 + 25)
    assert eta.confidence == pytest.approx(0.5 * 2 / 4)


def test_the_current_run_estimate_is_less_confident_than_one_from_history() -> None:
    m = three_of_four_in_load()
    guess = estimate_eta(m, None, T0 + 35)
    h = WorkflowHistory(
        "etl",
        2,
        (60.0, 60.0),
        ("extract", "transform", "load", "publish"),
        {"extract": (10.0,), "transform": (20.0,), "load": (15.0,), "publish": (15.0,)},
    )
    known = estimate_eta(m, h, T0 + 35)
    assert guess is not None and known is not None
    assert guess.confidence < known.confidence


def test_progress_in_the_first_step_gives_a_low_confidence_guess() -> None:
    m = run_of(
        ev(K.STARTED, attrs={"total_steps": 4}, t=0),
        ev(K.STEP_STARTED, "extract", t=0),
        ev(K.PROGRESS, "extract", {"done": 1, "total": 4}, t=5),
    )
    eta = estimate_eta(m, None, T0 + 10)
    assert eta is not None
    # 10 s for one quarter: 30 s left in extract; 40 s for each of the 3 others
    assert eta.seconds == pytest.approx(30 + 3 * 40)
    assert eta.confidence == pytest.approx(0.1)


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(
            [ev(K.STARTED, t=0), ev(K.STEP_STARTED, "a", t=0), ev(K.STEP_COMPLETED, "a", t=5)], id="no total_steps"
        ),
        pytest.param(
            [ev(K.STARTED, attrs={"total_steps": 3}, t=0), ev(K.STEP_STARTED, "a", t=0)],
            id="no step done and no progress",
        ),
        pytest.param([ev(K.STARTED, attrs={"total_steps": 3}, t=0)], id="nothing run yet"),
    ],
)
def test_with_nothing_to_go_on_there_is_no_eta(events: list[Event]) -> None:
    assert estimate_eta(run_of(*events), None, T0 + 20) is None


@pytest.mark.parametrize(
    "end",
    [
        pytest.param([], id="pending"),
        pytest.param([K.STARTED, K.COMPLETED], id="completed"),
        pytest.param([K.STARTED, K.FAILED], id="failed"),
        pytest.param([K.STARTED, K.CANCELLED], id="cancelled"),
    ],
)
def test_a_run_that_is_not_running_or_suspended_has_no_eta(end: list[K]) -> None:
    m = ExecutionMetrics("run-1", "etl", last_activity=T0)
    for i, k in enumerate(end):
        apply_event(m, ev(k, attrs={"total_steps": 3}, t=i))
    assert estimate_eta(m, HISTORY, T0 + 20) is None


# ---- history from a real store ------------------------------------------------

DURATIONS = {"extract": [10.0, 11.0, 12.0], "transform": [40.0, 44.0, 48.0], "load": [5.0, 5.0, 5.0]}


def write_run(
    store: SqlStore, run_id: str, start: float, steps: list[tuple[str, float]], end: K | None, workflow: str = "etl"
) -> float:
    """One run's events, written in one batch; returns when the last step ended."""
    events = [make_event(K.STARTED, workflow, run_id, attrs={"total_steps": 3}, ts=start)]
    t = start
    for name, took in steps:
        events.append(make_event(K.STEP_STARTED, workflow, run_id, name, ts=t))
        t += took
        events.append(make_event(K.STEP_COMPLETED, workflow, run_id, name, ts=t))
    if end is not None:
        events.append(make_event(end, workflow, run_id, ts=t))
    store.runs.write_events(events)
    return t


def test_history_from_a_store_gives_step_medians_and_an_eta(store: SqlStore) -> None:
    for i in range(3):
        write_run(store, f"done-{i}", T0 + 1000 * i, [(s, DURATIONS[s][i]) for s in DURATIONS], K.COMPLETED)
    # neither a failed run, a live one nor another workflow's runs teach anything
    write_run(store, "failed", T0 + 5000, [("extract", 500.0)], K.FAILED)
    write_run(store, "other-wf", T0 + 6000, [("extract", 900.0)], K.COMPLETED, workflow="billing")
    run_id = f"live-{uuid.uuid4().hex[:8]}"
    start = T0 + 10_000
    store.runs.write_events(
        [
            make_event(K.STARTED, "etl", run_id, attrs={"total_steps": 3}, ts=start),
            make_event(K.STEP_STARTED, "etl", run_id, "extract", ts=start),
            make_event(K.STEP_COMPLETED, "etl", run_id, "extract", ts=start + 11),
            make_event(K.STEP_STARTED, "etl", run_id, "transform", ts=start + 11),
        ]
    )

    h = store.stats.history("etl")
    assert h.runs == 3
    assert h.step_order == ("extract", "transform", "load")
    assert {k: sorted(v) for k, v in h.step_durations.items()} == DURATIONS
    assert sorted(h.run_durations) == [55.0, 60.0, 65.0]
    assert store.stats.history("nobody-runs-this") == WorkflowHistory("nobody-runs-this")

    live = store.runs.get_run(run_id)
    assert live is not None and live.current_step == "transform"
    now = start + 11 + 20
    eta = estimate_eta(live, h, now)
    assert eta is not None
    assert eta.basis == "history"
    # load's median 5, transform's median 44 less the 20 s it has run
    assert eta.seconds == pytest.approx(5 + 24)
    spread = statistics.pstdev([55, 60, 65]) / 60
    assert eta.confidence == pytest.approx((3 / 5) / (1 + spread), abs=1e-3)
    # only the last `runs` completed runs count
    assert store.stats.history("etl", runs=2).runs == 2
