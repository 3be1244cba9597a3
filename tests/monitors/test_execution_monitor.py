"""ExecutionMonitor.track_execution, the event channel its subscribers read,
and the Hub in front of both with a real store (dedupe, publish once,
transitions to the state handlers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowsight.errors import EventError
from flowsight.hub import Hub
from flowsight.model.runs.events import Event, EventKind, make_event
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.runs.state import StateTransition, WorkflowState
from flowsight.monitors.channel import EventFilter, Subscription
from flowsight.monitors.execution import ExecutionMonitor
from flowsight.store import SqlStore
from tests.helpers import run

K = EventKind
S = WorkflowState
T0 = 1_700_000_000.0


def ev(
    kind: K,
    step: str | None = None,
    attrs: dict[str, Any] | None = None,
    *,
    t: float,
    run_id: str = "run-1",
    workflow: str = "etl",
) -> Event:
    return make_event(kind, workflow, run_id, step, attrs, ts=T0 + t)


async def track_all(mon: ExecutionMonitor, events: list[Event]) -> None:
    for e in events:
        await mon.track_execution(e.run_id, e)


async def drain(sub: Subscription) -> list[Event]:
    return [e async for e in sub]


# ---- track_execution ------------------------------------------------------


def test_tracking_events_updates_the_runs_metrics() -> None:
    mon = ExecutionMonitor()

    async def go() -> None:
        await track_all(
            mon,
            [
                ev(K.STARTED, attrs={"total_steps": 4}, t=0),
                ev(K.STEP_STARTED, "extract", t=0),
                ev(K.STEP_COMPLETED, "extract", t=10),
                ev(K.STEP_STARTED, "transform", t=10),
                ev(K.PROGRESS, "transform", {"done": 1, "total": 2}, t=15),
            ],
        )
        m = mon.metrics["run-1"]
        assert (m.state, m.start_time, m.total_steps) == (S.RUNNING, T0, 4)
        assert (m.completed_steps, m.failed_steps, m.current_step) == (1, 0, "transform")
        assert m.percent_done == pytest.approx(100 * 1.5 / 4)
        assert m.last_activity == T0 + 15

        out = await mon.track_execution(
            "run-1", ev(K.STEP_FAILED, "transform", {"error": "no key", "error_type": "KeyError"}, t=20)
        )
        assert out.step is not None and out.step.status == "failed"
        assert (m.failed_steps, m.current_step, m.error) == (1, None, "KeyError: no key")
        assert m.percent_done == pytest.approx(25.0)

        await mon.track_execution("run-1", ev(K.STEP_STARTED, "transform", t=21))
        assert (m.retries, m.current_step) == (1, "transform")

        out = await mon.track_execution("run-1", ev(K.COMPLETED, t=30))
        assert out.transition is not None and out.transition.new_state is S.COMPLETED
        assert (m.state, m.end_time, m.percent_done) == (S.COMPLETED, T0 + 30, 100.0)

    run(go)
    assert set(mon.metrics) == {"run-1"}
    assert mon.event_sender.published == 8


def test_runs_are_tracked_apart() -> None:
    mon = ExecutionMonitor()
    run(
        lambda: track_all(
            mon,
            [
                ev(K.STARTED, t=0, run_id="a"),
                ev(K.STARTED, t=0, run_id="b"),
                ev(K.STEP_COMPLETED, "x", t=1, run_id="a"),
                ev(K.FAILED, t=2, run_id="b"),
            ],
        )
    )
    assert (mon.metrics["a"].state, mon.metrics["a"].completed_steps) == (S.RUNNING, 1)
    assert (mon.metrics["b"].state, mon.metrics["b"].completed_steps) == (S.FAILED, 0)


def test_an_event_of_another_run_is_rejected_and_changes_nothing() -> None:
    mon = ExecutionMonitor()
    e = ev(K.STARTED, t=0, run_id="run-1")
    with pytest.raises(EventError) as info:
        run(lambda: mon.track_execution("run-2", e))
    assert info.value.field == "run_id"
    assert "'run-1'" in str(info.value) and "'run-2'" in str(info.value)
    assert mon.metrics == {}
    assert mon.event_sender.published == 0


def test_eta_is_asked_of_the_tracked_run_and_none_for_an_unknown_one() -> None:
    mon = ExecutionMonitor()
    run(
        lambda: track_all(
            mon,
            [
                ev(K.STARTED, t=0),
                ev(K.STEP_STARTED, "extract", t=0),
                ev(K.STEP_COMPLETED, "extract", t=10),
                ev(K.STEP_STARTED, "load", t=10),
            ],
        )
    )
    h = WorkflowHistory("etl", 2, (40.0, 40.0), ("extract", "load"), {"extract": (10.0,), "load": (30.0,)})
    eta = mon.eta("run-1", h, T0 + 20)
    assert eta is not None and eta.seconds == pytest.approx(20.0)
    assert mon.eta("nobody", h, T0 + 20) is None


# ---- subscribers ----------------------------------------------------------

STREAM = [
    ev(K.STARTED, t=0, run_id="r1"),
    ev(K.STARTED, t=0, run_id="r2", workflow="billing"),
    ev(K.STEP_COMPLETED, "extract", t=1, run_id="r1"),
    ev(K.STEP_FAILED, "charge", t=2, run_id="r2", workflow="billing"),
    ev(K.STEP_FAILED, "load", t=3, run_id="r1"),
    ev(K.HEARTBEAT, t=4, run_id="r1"),
    ev(K.COMPLETED, t=5, run_id="r2", workflow="billing"),
]


def test_subscribers_receive_the_events_their_filter_lets_through() -> None:
    filters = {
        "all": EventFilter(),
        "etl": EventFilter(workflow="etl"),
        "r2": EventFilter(run_id="r2"),
        "failures": EventFilter(kinds=frozenset({K.STEP_FAILED})),
        "etl failures": EventFilter(workflow="etl", kinds=frozenset({K.STEP_FAILED})),
        "nothing": EventFilter(workflow="etl", run_id="r2"),
    }

    async def go() -> dict[str, list[Event]]:
        mon = ExecutionMonitor()
        subs = {name: mon.subscribe(f) for name, f in filters.items()}
        assert mon.event_sender.subscribers == len(filters)
        readers = {name: asyncio.create_task(drain(sub)) for name, sub in subs.items()}
        for e in STREAM:
            await mon.track_execution(e.run_id, e)
            await asyncio.sleep(0)  # let the readers run between events
        for sub in subs.values():
            sub.close()
        assert mon.event_sender.subscribers == 0
        return {name: await task for name, task in readers.items()}

    got = run(go)
    assert got["all"] == STREAM
    assert got["etl"] == [e for e in STREAM if e.workflow == "etl"]
    assert got["r2"] == [e for e in STREAM if e.run_id == "r2"]
    assert got["failures"] == [STREAM[3], STREAM[4]]
    assert got["etl failures"] == [STREAM[4]]
    assert got["nothing"] == []


def test_a_subscription_used_as_a_context_manager_unsubscribes_on_exit() -> None:
    async def go() -> tuple[list[Event], int]:
        mon = ExecutionMonitor()
        got: list[Event] = []
        async with mon.subscribe(EventFilter(run_id="r1")) as sub:
            await track_all(mon, STREAM[:3])
            got.append(await anext(sub))
            got.append(await anext(sub))
        await track_all(mon, STREAM[3:])
        return got, mon.event_sender.subscribers

    got, left = run(go)
    assert got == [STREAM[0], STREAM[2]]
    assert left == 0


def test_a_slow_subscriber_never_blocks_tracking_and_its_losses_are_counted() -> None:
    events = [ev(K.HEARTBEAT, t=i) for i in range(10)]
    events[0] = ev(K.STARTED, t=0)

    async def go() -> None:
        mon = ExecutionMonitor()
        slow = mon.subscribe(EventFilter(), queue_size=2)  # never read while events flow
        fast = mon.subscribe(EventFilter())
        for e in events:
            # would time out if publishing waited for the slow subscriber's queue
            await asyncio.wait_for(mon.track_execution(e.run_id, e), timeout=1.0)
        assert mon.metrics["run-1"].last_activity == T0 + 9
        assert slow.dropped == 8
        assert fast.dropped == 0
        assert mon.event_sender.dropped == 8
        assert mon.event_sender.published == 10
        # the slow one kept the oldest events that fitted; the fast one has all
        assert [await anext(slow), await anext(slow)] == events[:2]
        assert slow.queue.empty()
        fast.close()
        assert await drain(fast) == events

    run(go)


def test_closing_a_full_subscription_loses_no_event_uncounted() -> None:
    async def go() -> tuple[list[Event], int]:
        mon = ExecutionMonitor()
        sub = mon.subscribe(EventFilter(), queue_size=2)
        await track_all(mon, STREAM[:2])
        sub.close()
        return await drain(sub), sub.dropped

    got, dropped = run(go)
    assert len(got) + dropped == 2


# ---- the hub with a real store -----------------------------------------------


def life(run_id: str) -> list[Event]:
    return [
        ev(K.STARTED, attrs={"total_steps": 1}, t=0, run_id=run_id),
        ev(K.STEP_STARTED, "extract", t=1, run_id=run_id),
        ev(K.STEP_COMPLETED, "extract", t=2, run_id=run_id),
        ev(K.COMPLETED, t=3, run_id=run_id),
    ]


def test_a_batch_sent_twice_is_stored_once_and_published_once(store: SqlStore) -> None:
    events = life("run-1")
    ids = [e.id for e in events]

    async def go() -> tuple[Any, Any, Any, list[Event]]:
        hub = Hub(store)
        sub = hub.execution.subscribe()
        first = await hub.publish(events)
        retry = await hub.publish(events)
        mixed = await hub.publish([events[2], ev(K.HEARTBEAT, t=9), events[2]])
        sub.close()
        assert hub.execution.event_sender.published == 5
        m = hub.execution.metrics["run-1"]
        assert (m.completed_steps, m.state) == (1, S.COMPLETED)
        return first, retry, mixed, await drain(sub)

    first, retry, mixed, got = run(go)
    assert (first.accepted, first.duplicates) == (ids, [])
    assert (retry.accepted, retry.duplicates) == ([], ids)
    assert retry.transitions == []
    assert len(mixed.accepted) == 1 and sorted(mixed.duplicates) == sorted([events[2].id, events[2].id])
    assert [e.id for e in got] == ids + mixed.accepted
    assert store.runs.count_events() == 5
    assert [e.id for e in store.runs.run_events("run-1")] == ids + mixed.accepted
    assert len(store.runs.run_transitions("run-1")) == 2
    row = store.runs.get_run("run-1")
    assert row is not None and (row.completed_steps, row.state) == (1, S.COMPLETED)


def test_transitions_caused_by_events_reach_the_state_handlers(store: SqlStore) -> None:
    seen: list[tuple[str, S, S]] = []

    def on_running(tr: StateTransition) -> None:
        seen.append(("running", tr.old_state, tr.new_state))

    async def on_completed(tr: StateTransition) -> None:
        await asyncio.sleep(0)
        seen.append(("completed", tr.old_state, tr.new_state))

    async def go() -> Hub:
        hub = Hub(store)
        hub.state.on_state(S.RUNNING, on_running)
        hub.state.on_state(S.COMPLETED, on_completed)
        events = life("run-1")
        await hub.publish(events)
        # refused: a completed run cannot resume; kept, but no handler hears of it
        await hub.publish([ev(K.RESUMED, t=5, run_id="run-1")])
        await hub.publish(events)  # a retry: nothing new to tell
        return hub

    hub = run(go)
    assert seen == [("running", S.PENDING, S.RUNNING), ("completed", S.RUNNING, S.COMPLETED)]
    history = hub.state.state_history["run-1"]
    assert [(t.old_state, t.new_state, t.applied) for t in history] == [
        (S.PENDING, S.RUNNING, True),
        (S.RUNNING, S.COMPLETED, True),
        (S.COMPLETED, S.RUNNING, False),
    ]
    assert hub.state.current_state("run-1") is S.COMPLETED
    assert [(t.new_state, t.applied) for t in store.runs.run_transitions("run-1")] == [
        (S.RUNNING, True),
        (S.COMPLETED, True),
        (S.RUNNING, False),
    ]
    assert hub.state.handler_failures == []


def test_a_handler_failing_on_a_published_transition_does_not_stop_publishing(store: SqlStore) -> None:
    def broken(tr: StateTransition) -> None:
        raise RuntimeError("handler bug")

    async def go() -> Hub:
        hub = Hub(store)
        hub.state.on_state(S.RUNNING, broken)
        await hub.publish(life("run-1"))
        return hub

    hub = run(go)
    assert [f.error for f in hub.state.handler_failures] == ["RuntimeError: handler bug"]
    assert hub.execution.metrics["run-1"].state is S.COMPLETED
    row = store.runs.get_run("run-1")
    assert row is not None and row.state is S.COMPLETED


def test_a_runs_own_source_attribute_is_not_who_changed_its_state() -> None:
    """``workflow("etl", source="warehouse")`` showed "from warehouse" in the state history."""
    from flowsight.model.runs.execution import apply_event, new_metrics

    started = make_event(EventKind.STARTED, "etl", "r-1", attrs={"source": "warehouse"})
    m = new_metrics(started)
    tr = apply_event(m, started).transition
    assert tr is not None and tr.source == "event"
    cancelled = make_event(EventKind.CANCELLED, "etl", "r-1", attrs={"transition_source": "scheduler"})
    tr = apply_event(m, cancelled).transition
    assert tr is not None and (tr.source, tr.new_state) == ("scheduler", WorkflowState.CANCELLED)
