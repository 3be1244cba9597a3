"""A broadcast channel: every subscriber gets every item it asked for.

Each subscriber has a bounded queue; a subscriber that does not keep up loses
events (counted in ``dropped``, per subscriber and in total), and the
publisher never waits. Publish from the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from flowsight.model.events import Event, EventKind


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants; None means any. Takes an event, or a
    ``(seq, event)`` pair from the server's stream."""

    workflow: str | None = None
    run_id: str | None = None
    kinds: frozenset[EventKind] | None = None

    def __call__(self, item: Event | tuple[int, Event]) -> bool:
        ev = item[1] if isinstance(item, tuple) else item
        return (
            (self.workflow is None or ev.workflow == self.workflow)
            and (self.run_id is None or ev.run_id == self.run_id)
            and (self.kinds is None or ev.kind in self.kinds)
        )


T = TypeVar("T")


class Subscription(Generic[T]):
    """An async iterator over the items a filter lets through."""

    def __init__(self, channel: EventChannel[T], accept: Callable[[T], bool], size: int) -> None:
        self._channel = channel
        self.accept = accept
        self.queue: asyncio.Queue[T | None] = asyncio.Queue(size)
        self.dropped = 0

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
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

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventChannel(Generic[T]):
    """The specification's ``event_sender``: publish once, deliver to all."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subs: set[Subscription[T]] = set()
        self.published = 0
        self.dropped = 0

    def subscribe(self, accept: Callable[[T], bool] | None = None, *, queue_size: int | None = None) -> Subscription[T]:
        sub = Subscription(self, accept or (lambda item: True), queue_size or self.queue_size)
        self._subs.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, item: T) -> None:
        self.published += 1
        for sub in self._subs:
            if sub.accept(item):
                try:
                    sub.queue.put_nowait(item)
                except asyncio.QueueFull:
                    sub.dropped += 1
                    self.dropped += 1
