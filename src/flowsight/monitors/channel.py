"""A broadcast channel: every subscriber gets every event it asked for.

Each subscriber has a bounded queue; a subscriber that does not keep up loses
events (counted in ``dropped``, per subscriber and in total), and the
publisher never waits. Publish from the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from flowsight.model.events import Event, EventKind


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants; None means any."""

    workflow: str | None = None
    run_id: str | None = None
    kinds: frozenset[EventKind] | None = None

    def __call__(self, ev: Event) -> bool:
        return (
            (self.workflow is None or ev.workflow == self.workflow)
            and (self.run_id is None or ev.run_id == self.run_id)
            and (self.kinds is None or ev.kind in self.kinds)
        )


class Subscription:
    """An async iterator over the events a filter lets through."""

    def __init__(self, channel: EventChannel, accept: Callable[[Event], bool], size: int) -> None:
        self._channel = channel
        self.accept = accept
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(size)
        self.dropped = 0

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        ev = await self.queue.get()
        if ev is None:
            raise StopAsyncIteration
        return ev

    def close(self) -> None:
        self._channel._subs.discard(self)
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            # make room for the end marker: the oldest undelivered event is lost, and counted
            self.queue.get_nowait()
            self.queue.put_nowait(None)
            self.dropped += 1
            self._channel.dropped += 1

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventChannel:
    """The specification's ``event_sender``: publish once, deliver to all."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        self.published = 0
        self.dropped = 0

    def subscribe(self, accept: Callable[[Event], bool] | None = None, *, queue_size: int | None = None) -> Subscription:
        sub = Subscription(self, accept or (lambda ev: True), queue_size or self.queue_size)
        self._subs.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, ev: Event) -> None:
        self.published += 1
        for sub in self._subs:
            if sub.accept(ev):
                try:
                    sub.queue.put_nowait(ev)
                except asyncio.QueueFull:
                    sub.dropped += 1
                    self.dropped += 1
