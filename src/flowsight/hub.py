"""The hub: validate, dedupe by id, persist, publish.

Producers hand events to :meth:`Hub.publish`; the hub stores them (an id seen
before is a duplicate, stored once), then feeds each new event to the
execution monitor (and so to its subscribers) and each transition it caused
to the state monitor's handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import msgspec

from flowsight.model.runs.events import Event, EventKind
from flowsight.monitors.channel import EventChannel
from flowsight.monitors.execution import ExecutionMonitor
from flowsight.monitors.state import StateMonitor
from flowsight.store.base import WriteResult
from flowsight.store.interface import Store

_json = msgspec.json.Encoder()


def event_size(item: tuple[int, Event]) -> int:
    """The bytes of a ``(seq, event)`` on the stream: its event's JSON."""
    return len(_json.encode(item[1]))


class Hub:
    """``track=False`` (the server) leaves run metrics to the store and only
    publishes on the execution monitor's channel; ``stream`` carries each new
    event with its store seq, for resumable streams."""

    def __init__(
        self,
        store: Store,
        *,
        execution: ExecutionMonitor | None = None,
        state: StateMonitor | None = None,
        track: bool = True,
        inline_max: int = 64,
    ) -> None:
        self.store = store
        self.execution = execution or ExecutionMonitor()
        self.state = state or StateMonitor(store)
        self.track = track
        # SQLite is written on the loop's own thread: its writes are CPU work
        # under the GIL, so a worker thread buys no parallelism and the hop
        # and GIL hand-backs cost more (bench/ingest_http.py; figures:
        # docs/benchmarks.md). A store that waits on the network
        # (PostgreSQL) gets a worker thread for anything but a small batch.
        # Reads use their own connections, so a write never waits behind a query.
        self.inline_max = inline_max
        self.stream: EventChannel[tuple[int, Event]] = EventChannel(1000, weigh=event_size)
        # told of every committed batch with its new ids' seqs (the alert rules)
        self.hooks: list[Callable[[Sequence[Event], Mapping[str, int]], None]] = []
        # told of what the store made of every committed batch (step and run
        # durations: the performance monitor)
        self.result_hooks: list[Callable[[WriteResult], None]] = []

    async def observe_followed(self, page: Sequence[tuple[int, Event]]) -> None:
        """Events another process committed to the store (read back by
        :class:`~flowsight.server.follow.StoreFollower`): told to the hooks
        and the result hooks (durations read back from the store) as this
        hub's own commits are, and published to the stream."""
        events = [ev for _, ev in page]
        seqs = {ev.id: seq for seq, ev in page}
        for hook in self.hooks:
            hook(events, seqs)
        if self.result_hooks:
            result = await asyncio.to_thread(durations_of, self.store, events)
            if result.step_durations or result.run_durations:
                for result_hook in self.result_hooks:
                    result_hook(result)
        for item in page if self.stream.subscribers else ():
            self.stream.publish(item)

    async def publish(self, events: Sequence[Event]) -> WriteResult:
        """Store ``events`` (acknowledged once committed), then publish the new ones."""
        if self.store.writes_inline or len(events) <= self.inline_max:
            result = self.store.runs.write_events(events)
        else:
            result = await asyncio.to_thread(self.store.runs.write_events, events)
        for hook in self.hooks if result.seqs else ():
            hook(events, result.seqs)
        if result.step_durations or result.run_durations:
            for result_hook in self.result_hooks:
                result_hook(result)
        listeners = self.track or self.execution.event_sender.subscribers or self.stream.subscribers
        pending = dict(result.seqs) if listeners else {}  # each new id once, even if the batch repeats it
        for ev in events if pending else ():
            seq = pending.pop(ev.id, None)
            if seq is None:
                continue
            if self.track:
                await self.execution.track_execution(ev.run_id, ev)
            else:
                self.execution.event_sender.publish(ev)
            self.stream.publish((seq, ev))
        for tr in result.transitions:
            self.state.observe(tr)
            if tr.applied:
                await self.state.notify(tr)
        return result


_STEP_END = EventKind.STEP_COMPLETED
_RUN_END = frozenset({EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED})


def durations_of(store: Store, events: Sequence[Event]) -> WriteResult:
    """The step and run durations ``events`` completed, read back from the
    store (as :meth:`Runs.write_events` reports them for its own
    writes): a completed step attempt that ended at its event's time, a
    run that ended in a terminal state."""
    result = WriteResult()
    wanted = {ev.run_id for ev in events if ev.kind is _STEP_END or ev.kind in _RUN_END}
    for run_id in wanted:
        run = store.runs.get_run(run_id)
        if run is None:
            continue
        mine = [ev for ev in events if ev.run_id == run_id]
        ended = {(ev.step, ev.ts) for ev in mine if ev.kind is _STEP_END}
        if ended:
            for rec in store.runs.run_steps(run_id):
                if rec.status == "completed" and (rec.step, rec.ended_at) in ended and rec.duration is not None:
                    result.step_durations.append((run.workflow, rec.step, rec.duration))
        if (
            any(ev.kind in _RUN_END for ev in mine)
            and run.state.terminal
            and run.start_time is not None
            and run.end_time is not None
        ):
            result.run_durations.append((run.workflow, run.state.value, run.end_time - run.start_time))
    return result
