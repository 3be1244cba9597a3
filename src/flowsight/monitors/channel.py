"""A broadcast channel: every subscriber gets every item it asked for.

Each subscriber has a bounded queue -- in items, and in bytes when the
channel weighs its items and the subscriber says ``max_bytes`` -- and the
publisher never waits. When an item does not fit:

* a subscriber whose consumer is busy on its own (``stalled`` is false)
  loses it, counted in ``dropped`` (per subscriber and in total): it may
  catch up from elsewhere (a stream re-reads the store);
* a subscriber whose consumer is ``stalled`` -- waiting for its own reader to
  take what it passed on: a stream whose client does not read -- is a slow
  consumer: it is dropped at once (closed with the reason ``slow``, its
  queue emptied and counted as dropped, its ``on_drop`` called), so it holds
  nothing while it does not read.

Every subscription's end is counted by reason in ``closed``. Publish from
the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from flowsight.model.runs.events import Event, EventKind


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
#: the reason a subscription dropped as a slow consumer ends with
SLOW = "slow"


class Subscription(Generic[T]):
    """An async iterator over the items a filter lets through (see the module
    docstring for a queue that is full). ``max_bytes``: the most the items
    waiting in the queue may weigh (the channel's ``weigh``); None: no bound
    in bytes. ``on_drop``: called when the channel drops it as slow."""

    def __init__(
        self, channel: EventChannel[T], accept: Callable[[T], bool], size: int, max_bytes: int | None = None
    ) -> None:
        self._channel = channel
        self.accept = accept
        self.queue: asyncio.Queue[T | None] = asyncio.Queue(size)
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        self._sizes: deque[int] = deque()  # the weight of each queued item, in order (with max_bytes)
        self.dropped = 0
        self.stalled = False  # its consumer waits for its own reader (set by the consumer)
        self.closed_for: str | None = None  # the reason it ended, once it has
        self.on_drop: Callable[[Subscription[T]], None] | None = None

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        ev = await self.get()
        if ev is None:
            raise StopAsyncIteration
        return ev

    async def get(self) -> T | None:
        """The next item; None once the subscription has ended."""
        item = await self.queue.get()
        if item is not None and self.max_bytes is not None:
            self.queued_bytes -= self._sizes.popleft()
        return item

    def clear(self) -> int:
        """Empty the queue (an end marker stays); how many items it held."""
        items = self.queue.qsize()
        ended = False
        while not self.queue.empty():
            ended |= self.queue.get_nowait() is None
        self._sizes.clear()
        self.queued_bytes = 0
        if ended:
            self.queue.put_nowait(None)
            items -= 1
        return items

    def _offer(self, item: T, size: int) -> bool:
        """Queue ``item`` if it fits (one item alone always fits the bytes)."""
        if self.max_bytes is not None and self.queued_bytes and self.queued_bytes + size > self.max_bytes:
            return False
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        if self.max_bytes is not None:
            self._sizes.append(size)
            self.queued_bytes += size
        return True

    def _lose(self, n: int) -> None:
        self.dropped += n
        self._channel.dropped += n

    def close(self, reason: str = "closed") -> None:
        """End the subscription (once; ``reason`` is counted in the channel's
        ``closed``): its consumer gets what is queued, then the end. ``slow``
        (see the module docstring) discards what is queued first."""
        if self.closed_for is not None:
            return
        self.closed_for = reason
        channel = self._channel
        channel._subs.discard(self)
        channel.closed[reason] = channel.closed.get(reason, 0) + 1
        if reason == SLOW:
            self._lose(self.clear())
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            # make room for the end marker: the oldest undelivered event is lost, and counted
            self.queue.get_nowait()
            if self._sizes:
                self.queued_bytes -= self._sizes.popleft()
            self.queue.put_nowait(None)
            self._lose(1)
        if reason == SLOW and self.on_drop is not None:
            self.on_drop(self)

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventChannel(Generic[T]):
    """The specification's ``event_sender``: publish once, deliver to all.
    ``weigh``: an item's size in bytes, for subscribers bounded in bytes
    (taken once per item published)."""

    def __init__(self, queue_size: int = 1000, *, weigh: Callable[[T], int] | None = None) -> None:
        self.queue_size = queue_size
        self.weigh = weigh
        self._subs: set[Subscription[T]] = set()
        self.published = 0
        self.dropped = 0
        self.closed: dict[str, int] = {}  # subscriptions ended, by reason

    def subscribe(
        self, accept: Callable[[T], bool] | None = None, *, queue_size: int | None = None, max_bytes: int | None = None
    ) -> Subscription[T]:
        """A new subscription to the items ``accept`` takes (all by default).

        Raises:
            ValueError: ``max_bytes`` on a channel that does not weigh its items.
        """
        if max_bytes is not None and self.weigh is None:
            raise ValueError("max_bytes needs a channel that weighs its items (EventChannel(weigh=...))")
        sub = Subscription(self, accept or (lambda item: True), queue_size or self.queue_size, max_bytes)
        self._subs.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, item: T) -> None:
        self.published += 1
        size: int | None = None
        slow: list[Subscription[T]] = []
        for sub in self._subs:
            if sub.accept(item):
                if sub.max_bytes is not None and size is None and self.weigh is not None:
                    size = self.weigh(item)
                if not sub._offer(item, size or 0):
                    sub._lose(1)
                    if sub.stalled:
                        slow.append(sub)
        for sub in slow:
            sub.close(SLOW)
