"""StateMonitor.monitor_state_change against a real store: transitions kept
(refused ones too), state persisted, handlers awaited and cut off when they
raise or hang."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

import pytest

from flowsight.errors import TransitionError
from flowsight.model.runs.events import EventKind, make_event
from flowsight.model.runs.state import StateTransition, WorkflowState, replay
from flowsight.monitors.state import StateMonitor
from flowsight.store import SqlStore
from tests.helpers import run

S = WorkflowState
T0 = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def started_run(store: SqlStore, ts: float = T0) -> str:
    """A run made Running by its 'started' event, written through the store."""
    run_id = f"run-{uuid.uuid4().hex[:10]}"
    result = store.runs.write_events([make_event(EventKind.STARTED, "etl", run_id, ts=ts)])
    assert [(t.new_state, t.applied) for t in result.transitions] == [(S.RUNNING, True)]
    return run_id


def test_state_changes_are_kept_in_history_and_persisted_to_the_store(store: SqlStore) -> None:
    run_id = started_run(store)
    clock = Clock(T0 + 10)
    mon = StateMonitor(store, clock=clock)
    assert mon.current_state(run_id) is S.RUNNING

    async def go() -> list[StateTransition]:
        out = [await mon.monitor_state_change(run_id, S.SUSPENDED, reason="maintenance", source="operator")]
        clock.t += 5
        out.append(await mon.monitor_state_change(run_id, S.RUNNING, reason="resumed"))
        clock.t += 5
        out.append(await mon.monitor_state_change(run_id, "completed"))  # type: ignore[arg-type]
        return out

    made = run(go)
    assert [(t.old_state, t.new_state, t.applied) for t in made] == [
        (S.RUNNING, S.SUSPENDED, True),
        (S.SUSPENDED, S.RUNNING, True),
        (S.RUNNING, S.COMPLETED, True),
    ]
    assert mon.state_history[run_id] == made
    assert [t.timestamp for t in made] == [T0 + 10, T0 + 15, T0 + 20]

    stored = store.runs.run_transitions(run_id)
    assert [(t.old_state, t.new_state, t.applied, t.source, t.reason) for t in stored] == [
        (S.PENDING, S.RUNNING, True, "event", None),
        (S.RUNNING, S.SUSPENDED, True, "operator", "maintenance"),
        (S.SUSPENDED, S.RUNNING, True, None, "resumed"),
        (S.RUNNING, S.COMPLETED, True, None, None),
    ]
    row = store.runs.get_run(run_id)
    assert row is not None
    assert row.state is S.COMPLETED
    assert row.end_time == T0 + 20
    assert row.last_activity == T0 + 20
    assert replay(S.PENDING, stored) is row.state


def test_a_fresh_monitor_reads_the_current_state_from_the_store(store: SqlStore) -> None:
    run_id = started_run(store)
    first = StateMonitor(store, clock=Clock(T0 + 1))
    run(lambda: first.monitor_state_change(run_id, S.SUSPENDED))
    second = StateMonitor(store, clock=Clock(T0 + 2))
    assert second.current_state(run_id) is S.SUSPENDED
    tr = run(lambda: second.monitor_state_change(run_id, S.CANCELLED))
    assert (tr.old_state, tr.new_state) == (S.SUSPENDED, S.CANCELLED)
    assert second.current_state("never-seen") is S.PENDING


def test_an_illegal_transition_raises_is_recorded_refused_and_not_applied(store: SqlStore) -> None:
    run_id = started_run(store)
    mon = StateMonitor(store, clock=Clock(T0 + 10))
    called: list[StateTransition] = []
    mon.on_state(S.RUNNING, called.append)
    run(lambda: mon.monitor_state_change(run_id, S.COMPLETED))

    with pytest.raises(TransitionError) as info:
        run(lambda: mon.monitor_state_change(run_id, S.RUNNING, reason="retry"))
    assert "completed -> running" in str(info.value)
    assert "allowed from completed: nothing (terminal state)" in str(info.value)
    assert run_id in str(info.value)
    assert (info.value.old_state, info.value.new_state) == ("completed", "running")

    refused = mon.state_history[run_id][-1]
    assert (refused.old_state, refused.new_state, refused.applied) == (S.COMPLETED, S.RUNNING, False)
    stored = store.runs.run_transitions(run_id)[-1]
    assert (stored.old_state, stored.new_state, stored.applied, stored.reason) == (
        S.COMPLETED,
        S.RUNNING,
        False,
        "retry",
    )
    row = store.runs.get_run(run_id)
    assert row is not None and row.state is S.COMPLETED
    assert mon.current_state(run_id) is S.COMPLETED
    assert called == []  # no handler for a state never entered


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([S.SUSPENDED], S.COMPLETED),
        ([S.SUSPENDED], S.SUSPENDED),
        ([S.CANCELLED], S.RUNNING),
        ([S.FAILED], S.CANCELLED),
        ([], S.PENDING),
    ],
    ids=lambda x: x.value if isinstance(x, S) else "-".join(s.value for s in x) or "running",
)
def test_each_illegal_transition_is_refused_by_the_monitor(store: SqlStore, path: list[S], bad: S) -> None:
    run_id = started_run(store)
    mon = StateMonitor(store, clock=Clock(T0 + 1))

    async def go() -> None:
        for s in path:
            await mon.monitor_state_change(run_id, s)
        await mon.monitor_state_change(run_id, bad)

    with pytest.raises(TransitionError):
        run(go)
    expected = path[-1] if path else S.RUNNING
    row = store.runs.get_run(run_id)
    assert row is not None and row.state is expected
    assert store.runs.run_transitions(run_id)[-1].applied is False


def test_a_monitor_without_a_store_keeps_state_in_memory() -> None:
    mon = StateMonitor(clock=Clock(T0))

    async def go() -> None:
        await mon.monitor_state_change("r", S.RUNNING)
        await mon.monitor_state_change("r", S.FAILED)

    run(go)
    assert mon.current_state("r") is S.FAILED
    assert [t.new_state for t in mon.state_history["r"]] == [S.RUNNING, S.FAILED]


def test_a_transition_decided_from_a_stale_state_does_not_reopen_a_completed_run(store: SqlStore) -> None:
    run_id = started_run(store)
    mon = StateMonitor(store, clock=Clock(T0 + 10))
    run(lambda: mon.monitor_state_change(run_id, S.SUSPENDED))
    # another writer (a second replica, the SDK) resumes and completes the run
    store.runs.write_events(
        [
            make_event(EventKind.RESUMED, "etl", run_id, ts=T0 + 11),
            make_event(EventKind.COMPLETED, "etl", run_id, ts=T0 + 12),
        ]
    )
    with pytest.raises(TransitionError):
        run(lambda: mon.monitor_state_change(run_id, S.RUNNING))
    row = store.runs.get_run(run_id)
    assert row is not None and row.state is S.COMPLETED


# ---- handlers -------------------------------------------------------------


def test_sync_and_async_handlers_for_the_entered_state_are_awaited(store: SqlStore) -> None:
    run_id = started_run(store)
    mon = StateMonitor(store, clock=Clock(T0 + 1))
    seen: list[tuple[str, S, S]] = []

    def sync_handler(tr: StateTransition) -> None:
        seen.append(("sync", tr.old_state, tr.new_state))

    async def async_handler(tr: StateTransition) -> None:
        for _ in range(3):
            await asyncio.sleep(0)  # yields; still finished before monitor_state_change returns
        seen.append(("async", tr.old_state, tr.new_state))

    def other_state(tr: StateTransition) -> None:
        seen.append(("other", tr.old_state, tr.new_state))

    mon.on_state(S.SUSPENDED, sync_handler)
    mon.on_state(S.SUSPENDED, async_handler)
    mon.on_state("cancelled", other_state)  # type: ignore[arg-type]
    assert mon.state_notifications[S.SUSPENDED] == [sync_handler, async_handler]

    tr = run(lambda: mon.monitor_state_change(run_id, S.SUSPENDED))
    assert sorted(seen) == [("async", S.RUNNING, S.SUSPENDED), ("sync", S.RUNNING, S.SUSPENDED)]
    assert tr.applied and mon.handler_failures == []

    run(lambda: mon.monitor_state_change(run_id, S.CANCELLED))
    assert seen[-1] == ("other", S.SUSPENDED, S.CANCELLED)
    assert len(seen) == 3


def test_handlers_that_raise_or_hang_are_cut_off_and_the_others_still_run(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = started_run(store)
    mon = StateMonitor(store, handler_timeout=0.2, clock=Clock(T0 + 1))
    release = threading.Event()
    ran: list[str] = []
    async_cancelled = []

    def raises_sync(tr: StateTransition) -> None:
        raise RuntimeError("sync boom")

    async def raises_async(tr: StateTransition) -> None:
        raise ValueError("async boom")

    async def hangs_async(tr: StateTransition) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # cut off, not waited for
            async_cancelled.append(True)
            raise

    def hangs_sync(tr: StateTransition) -> None:
        # hangs until the test lets it go (a thread cannot be killed, only abandoned)
        while not release.is_set():
            time.sleep(0.01)

    def fine_sync(tr: StateTransition) -> None:
        ran.append("sync")

    async def fine_async(tr: StateTransition) -> None:
        ran.append("async")

    for h in (raises_sync, raises_async, hangs_async, hangs_sync, fine_sync, fine_async):
        mon.on_state(S.SUSPENDED, h)

    async def go() -> StateTransition:
        try:  # returns while hangs_sync still hangs: it ends only once released, after
            return await mon.monitor_state_change(run_id, S.SUSPENDED)
        finally:
            release.set()

    with caplog.at_level(logging.ERROR, logger="flowsight.state"):
        tr = run(go)

    assert sorted(ran) == ["async", "sync"]
    assert async_cancelled == [True]
    failures = {f.handler.rsplit(".", 1)[-1]: f for f in mon.handler_failures}
    assert set(failures) == {"raises_sync", "raises_async", "hangs_async", "hangs_sync"}
    assert failures["raises_sync"].error == "RuntimeError: sync boom"
    assert failures["raises_async"].error == "ValueError: async boom"
    assert failures["hangs_async"].error == "timed out after 0.2s"
    assert failures["hangs_sync"].error == "timed out after 0.2s"
    assert all(f.transition is tr for f in failures.values())
    assert any("hangs_sync" in r.getMessage() and run_id in r.getMessage() for r in caplog.records)

    # the transition stands
    assert tr.applied
    assert mon.current_state(run_id) is S.SUSPENDED
    row = store.runs.get_run(run_id)
    assert row is not None and row.state is S.SUSPENDED
    assert store.runs.run_transitions(run_id)[-1].new_state is S.SUSPENDED
