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

from flowsight.model.events import Event
from flowsight.monitors.channel import EventChannel
from flowsight.monitors.execution import ExecutionMonitor
from flowsight.monitors.state import StateMonitor
from flowsight.store.base import WriteResult
from flowsight.store.sql import SqlStore

_json = msgspec.json.Encoder()


def event_size(item: tuple[int, Event]) -> int:
    """The bytes of a ``(seq, event)`` on the stream: its event's JSON."""
    return len(_json.encode(item[1]))


class Hub:
    """``track=False`` (the server) leaves run metrics to the store and only
    publishes on the execution monitor's channel; ``stream`` carries each new
    event with its store seq, for resumable streams."""

    def __init__(self, store: SqlStore, *, execution: ExecutionMonitor | None = None,
                 state: StateMonitor | None = None, track: bool = True, inline_max: int = 64) -> None:
        self.store = store
        self.execution = execution or ExecutionMonitor()
        self.state = state or StateMonitor(store)
        self.track = track
        # SQLite is written on the loop's own thread: its writes are CPU work
        # under the GIL, so a worker thread buys no parallelism and the hop
        # and GIL hand-backs cost more (bench/ingest_http.py: 140k vs 104k
        # events/s in batches of 500). A store that waits on the network
        # (PostgreSQL) gets a worker thread for anything but a small batch.
        # Reads use their own connections, so a write never waits behind a query.
        self.inline_max = inline_max
        self.stream: EventChannel[tuple[int, Event]] = EventChannel(1000, weigh=event_size)
        # told of every committed batch with its new ids' seqs (the alert rules)
        self.hooks: list[Callable[[Sequence[Event], Mapping[str, int]], None]] = []
        # told of what the store made of every committed batch (step and run
        # durations: the performance monitor)
        self.result_hooks: list[Callable[[WriteResult], None]] = []

    async def publish(self, events: Sequence[Event]) -> WriteResult:
        """Store ``events`` (acknowledged once committed), then publish the new ones."""
        if self.store.writes_inline or len(events) <= self.inline_max:
            result = self.store.write_events(events)
        else:
            result = await asyncio.to_thread(self.store.write_events, events)
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
