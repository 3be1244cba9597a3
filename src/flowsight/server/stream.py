"""``GET /api/v1/stream``: Server-Sent Events, resumable.

Every event is sent with ``id: <seq>`` (its place in the store). A client that
reconnects with ``Last-Event-ID`` first gets what it missed, read back from the
store, then the live feed; nothing is sent twice (the live feed is subscribed
to before the backlog is read, anything at or below the backlog's last seq is
skipped, and each live seq goes once). Live events may come out of seq order:
those other processes commit to the store reach the stream a moment after
this server's own (:mod:`flowsight.server.follow`). A subscriber too slow
for the live feed is told with an ``overflow`` event and resumes from the
store. A server shutting down ends its streams (:class:`Streams`); clients
reconnect with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from flowsight.hub import Hub
from flowsight.model.events import Event
from flowsight.monitors.channel import EventFilter, Subscription

_enc = msgspec.json.Encoder()
KEEPALIVE_SECONDS = 15.0
#: live seqs a stream remembers having sent (an event published twice goes once)
LIVE_SEEN = 10_000


def sse(seq: int, ev: Event) -> bytes:
    body = _enc.encode({"seq": seq, "id": ev.id, "ts": ev.ts, "kind": ev.kind.value, "workflow": ev.workflow,
                        "run_id": ev.run_id, "step": ev.step, "attrs": ev.attrs})
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, ev.kind.value.encode(), body)


class Streams:
    """The open streams of one server. They never end on their own, so a
    shutdown ends them (:meth:`close_all`); otherwise it would wait for every
    connected client to leave."""

    def __init__(self) -> None:
        self.closing = False
        self._subs: set[Subscription[tuple[int, Event]]] = set()

    def add(self, sub: Subscription[tuple[int, Event]]) -> None:
        self._subs.add(sub)

    def discard(self, sub: Subscription[tuple[int, Event]]) -> bool:
        """Forget ``sub``; whether it was still open (not closed by :meth:`close_all`)."""
        if sub in self._subs:
            self._subs.discard(sub)
            return True
        return False

    def close_all(self) -> None:
        """End every stream after what it has queued. Call on the event loop's thread."""
        self.closing = True
        subs, self._subs = self._subs, set()
        for sub in subs:
            sub.close()


async def event_stream(hub: Hub, flt: EventFilter, last_seq: int | None, *,
                       keepalive: float = KEEPALIVE_SECONDS, queue_size: int = 10_000,
                       streams: Streams | None = None) -> AsyncIterator[bytes]:
    streams = streams or Streams()
    sub = hub.stream.subscribe(flt, queue_size=queue_size)
    streams.add(sub)
    try:
        # Where a new client starts is settled before it hears anything: an
        # event it posts once connected has a higher seq and is not skipped.
        sent = last_seq if last_seq is not None else await asyncio.to_thread(hub.store.last_seq)
        yield b"retry: 2000\n\n"
        while not streams.closing:
            # Taken before the backlog is read: an event dropped from the live
            # queue while the store is read (perhaps after the last page was)
            # sends the stream back to the store instead of being lost.
            dropped = sub.dropped
            # the backlog, from the store, in pages
            while True:
                page = await asyncio.to_thread(hub.store.events_after, sent, workflow=flt.workflow,
                                               run_id=flt.run_id, limit=1000)
                for seq, ev in page:
                    if flt(ev):
                        yield sse(seq, ev)
                    sent = seq
                if len(page) < 1000:
                    break
            # then live, until the subscriber falls behind. What the backlog
            # sent is skipped; above it, each seq once, in the order it comes:
            # events other processes wrote (flowsight.server.follow) come a
            # moment after this server's own, with lower seqs.
            floor, live = sent, set()
            while sub.dropped == dropped:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), keepalive)
                except asyncio.TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is None:
                    return
                seq, ev = item
                if seq > floor and seq not in live:
                    yield sse(seq, ev)
                    live.add(seq)
                    if len(live) > LIVE_SEEN:  # bounded: the oldest half becomes the floor
                        kept = sorted(live)[LIVE_SEEN // 2:]
                        floor, live = kept[0] - 1, set(kept)
                sent = max(sent, seq)
            yield b"event: overflow\ndata: {}\n\n"
            while not sub.queue.empty():
                sub.queue.get_nowait()
    finally:
        if streams.discard(sub):
            sub.close()
