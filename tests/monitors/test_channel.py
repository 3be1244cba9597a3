"""The broadcast channel's bounds: a queue bounded in bytes, a subscriber
that falls behind on its own (it loses items, counted) and one whose
consumer is stalled on its reader (dropped as slow, its queue freed at once),
and every subscription's end counted by reason."""

from __future__ import annotations

import asyncio

import pytest

from flowsight.monitors.channel import SLOW, EventChannel, Subscription
from tests.helpers import run


def weighed() -> EventChannel[str]:
    return EventChannel(100, weigh=len)


async def taken(sub: Subscription[str]) -> list[str | None]:
    out: list[str | None] = []
    while not sub.queue.empty():
        out.append(await sub.get())
    return out


def test_a_queue_bounded_in_bytes_loses_what_does_not_fit_and_counts_it() -> None:
    async def go() -> None:
        channel = weighed()
        sub = channel.subscribe(max_bytes=10)
        free = channel.subscribe()
        for item in ("aaaa", "bbbb", "cccc", "d"):
            channel.publish(item)
        assert (sub.queued_bytes, sub.dropped, channel.dropped) == (9, 1, 1)  # "cccc" did not fit
        assert await taken(sub) == ["aaaa", "bbbb", "d"] and sub.queued_bytes == 0
        assert await taken(free) == ["aaaa", "bbbb", "cccc", "d"]
        assert channel.subscribers == 2 and channel.closed == {}

    run(go)


def test_one_item_heavier_than_the_bound_still_reaches_an_empty_queue() -> None:
    async def go() -> None:
        channel = weighed()
        sub = channel.subscribe(max_bytes=3)
        channel.publish("a" * 50)
        channel.publish("b")
        assert await taken(sub) == ["a" * 50] and sub.dropped == 1

    run(go)


def test_a_stalled_subscriber_whose_queue_fills_is_dropped_as_slow_and_holds_nothing() -> None:
    async def go() -> None:
        channel = weighed()
        dropped: list[Subscription[str]] = []
        slow = channel.subscribe(max_bytes=10)
        slow.on_drop = dropped.append
        other = channel.subscribe(max_bytes=10)
        slow.stalled = True  # its consumer waits for its reader to take what it passed on
        for item in ("aaaa", "bbbb", "cccc"):
            channel.publish(item)
        assert dropped == [slow] and slow.closed_for == SLOW and channel.closed == {SLOW: 1}
        assert (slow.queued_bytes, slow.queue.qsize()) == (0, 1)  # only the end marker
        assert slow.dropped == 3  # what it held, and what did not fit
        assert await slow.get() is None
        channel.publish("dddd")  # no longer a subscriber
        assert channel.subscribers == 1 and slow.queue.empty()
        assert await taken(other) == ["aaaa", "bbbb"] and other.dropped == 2  # not stalled: it only loses

    run(go)


def test_a_subscription_ends_once_and_its_reason_is_counted_once() -> None:
    async def go() -> None:
        channel: EventChannel[str] = EventChannel(2)
        sub = channel.subscribe()
        channel.publish("a")
        sub.close("client")
        sub.close("shutdown")
        assert channel.closed == {"client": 1} and sub.closed_for == "client"
        assert [item async for item in sub] == ["a"]

    run(go)


def test_clearing_a_queue_keeps_its_end() -> None:
    async def go() -> None:
        channel = weighed()
        sub = channel.subscribe(max_bytes=100)
        channel.publish("aa")
        sub.close()
        assert sub.clear() == 1 and sub.queued_bytes == 0
        assert await asyncio.wait_for(sub.get(), 5) is None

    run(go)


def test_a_bound_in_bytes_needs_a_channel_that_weighs() -> None:
    with pytest.raises(ValueError, match="max_bytes needs a channel that weighs its items"):
        EventChannel[str]().subscribe(max_bytes=10)
