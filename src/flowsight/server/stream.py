"""``GET /api/v1/stream``: Server-Sent Events, resumable.

Every event is sent with ``id: <seq>`` (its place in the store). A client that
reconnects with ``Last-Event-ID`` first gets what it missed, read back from the
store, then the live feed; nothing is sent twice (the live feed is subscribed
to before the backlog is read, anything at or below the backlog's last seq is
skipped, and each live seq goes once). Live events may come out of seq order:
those other processes commit to the store reach the stream a moment after
this server's own (:mod:`flowsight.server.follow`).

Each client's live queue is bounded: 10,000 events and ``MAX_QUEUED_BYTES``
of their JSON. A stream that falls behind while busy on its own (reading
the store) is told with an ``overflow`` event and resumes from the store. A
client that does not take what it is sent -- the stream waits on it while
its queue fills -- is a slow consumer: it is dropped (the channel's reason
``slow``), its queue freed at once, and ``flowsight serve`` closes its
connection (:attr:`Streams.abort`); it reconnects with ``Last-Event-ID``.
A client that goes away is unsubscribed at once, wherever its stream was
(:class:`EventStreamResponse`). A server shutting down ends its streams
(:class:`Streams`); clients reconnect with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import msgspec
from starlette.responses import StreamingResponse
from starlette.types import Send

from flowsight.hub import Hub
from flowsight.model.runs.events import Event
from flowsight.monitors.channel import SLOW, EventFilter, Subscription

_enc = msgspec.json.Encoder()
KEEPALIVE_SECONDS = 15.0
#: live seqs a stream remembers having sent (an event published twice goes once)
LIVE_SEEN = 10_000
#: bytes of events (their JSON) a client's live queue holds at most
MAX_QUEUED_BYTES = 1 << 20
#: the backlog is read in pages of at most PAGE_ROWS events and, about, PAGE_BYTES of frames: a page's
#: rows follow the mean frame of the page before (the first is FIRST_PAGE_ROWS), so a stream waiting on
#: its client holds little of the store
PAGE_ROWS, PAGE_BYTES, FIRST_PAGE_ROWS = 1000, 256 << 10, 100
#: why streams end, as counted in ``Hub.stream.closed`` (``flowsight_stream_disconnects_total``)
CLIENT_LEFT, SHUTDOWN = "client", "shutdown"
STREAM_END_REASONS = (CLIENT_LEFT, SLOW, SHUTDOWN)

Sub = Subscription[tuple[int, Event]]


def sse(seq: int, ev: Event) -> bytes:
    body = _enc.encode(
        {
            "seq": seq,
            "id": ev.id,
            "ts": ev.ts,
            "kind": ev.kind.value,
            "workflow": ev.workflow,
            "run_id": ev.run_id,
            "step": ev.step,
            "attrs": ev.attrs,
        }
    )
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, ev.kind.value.encode(), body)


def page_rows(frames: int, size: int) -> int:
    """The rows of the next backlog page after one of ``frames`` frames of ``size`` bytes in all."""
    if not frames:
        return PAGE_ROWS
    return max(1, min(PAGE_ROWS, PAGE_BYTES * frames // max(size, 1)))


class Streams:
    """The open streams of one server. They never end on their own, so a
    shutdown ends them (:meth:`close_all`); otherwise it would wait for every
    connected client to leave. ``abort``: closes the connection of a client
    (by its address, the ASGI scope's ``client``) at once, dropping what is
    buffered for it -- set by the server that owns the connections
    (``flowsight serve``); without it, a dropped client's stream ends when
    the client next reads or leaves."""

    def __init__(self) -> None:
        self.closing = False
        self.abort: Callable[[Any], object] | None = None
        self._subs: dict[Sub, Any] = {}  # -> the client's address

    def add(self, sub: Sub, client: Any = None) -> None:
        self._subs[sub] = client
        sub.on_drop = self._dropped

    def discard(self, sub: Sub) -> bool:
        """Forget ``sub``; whether it was still open (not closed by :meth:`close_all`)."""
        return self._subs.pop(sub, self) is not self

    def _dropped(self, sub: Sub) -> None:
        client = self._subs.get(sub)
        if self.abort is not None and client is not None:
            self.abort(client)

    def close_all(self) -> None:
        """End every stream after what it has queued. Call on the event loop's thread."""
        self.closing = True
        subs, self._subs = self._subs, {}
        for sub in subs:
            sub.close(SHUTDOWN)


class EventStreamResponse(StreamingResponse):
    """A ``StreamingResponse`` that closes its frames' generator as soon as
    the response ends, however it ends. Starlette cancels the response when
    the client leaves; a generator paused at a ``yield`` (its frame being
    written) would otherwise stay subscribed until the garbage collector
    finds it."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            if isinstance(self.body_iterator, AsyncGenerator):
                await self.body_iterator.aclose()


async def event_stream(
    hub: Hub,
    flt: EventFilter,
    last_seq: int | None,
    *,
    keepalive: float = KEEPALIVE_SECONDS,
    queue_size: int = 10_000,
    max_bytes: int = MAX_QUEUED_BYTES,
    streams: Streams | None = None,
    client: Any = None,
) -> AsyncIterator[bytes]:
    """The frames of one client's stream (``client``: its address, for
    :attr:`Streams.abort`). While a frame waits for the client to take it,
    the subscription is ``stalled``: a queue that fills meanwhile is the
    client's doing."""
    streams = streams or Streams()
    sub = hub.stream.subscribe(flt, queue_size=queue_size, max_bytes=max_bytes)
    streams.add(sub, client)
    try:
        async with contextlib.aclosing(_frames(hub, flt, last_seq, sub, streams, keepalive)) as frames:
            async for frame in frames:
                sub.stalled = True
                yield frame
                sub.stalled = False
    finally:
        streams.discard(sub)
        sub.close(CLIENT_LEFT)  # unless it ended before (slow, shutdown)


async def _frames(
    hub: Hub, flt: EventFilter, last_seq: int | None, sub: Sub, streams: Streams, keepalive: float
) -> AsyncGenerator[bytes, None]:
    # Where a new client starts is settled before it hears anything: an
    # event it posts once connected has a higher seq and is not skipped.
    sent = last_seq if last_seq is not None else await asyncio.to_thread(hub.store.runs.last_seq)
    yield b"retry: 2000\n\n"
    while not streams.closing and sub.closed_for is None:
        # Taken before the backlog is read: an event dropped from the live
        # queue while the store is read (perhaps after the last page was)
        # sends the stream back to the store instead of being lost.
        dropped = sub.dropped
        # the backlog, from the store, in pages
        rows = FIRST_PAGE_ROWS
        while sub.closed_for is None:
            page = await asyncio.to_thread(
                hub.store.runs.events_after, sent, workflow=flt.workflow, run_id=flt.run_id, limit=rows
            )
            frames = size = 0
            for seq, ev in page:
                if flt(ev):
                    frame = sse(seq, ev)
                    frames, size = frames + 1, size + len(frame)
                    yield frame
                sent = seq
            if len(page) < rows:
                break
            rows = page_rows(frames, size)
        # then live, until the subscriber falls behind. What the backlog
        # sent is skipped; above it, each seq once, in the order it comes:
        # events other processes wrote (flowsight.server.follow) come a
        # moment after this server's own, with lower seqs.
        floor, live = sent, set()
        while sub.dropped == dropped:
            try:
                item = await asyncio.wait_for(sub.get(), keepalive)
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
                    kept = sorted(live)[LIVE_SEEN // 2 :]
                    floor, live = kept[0] - 1, set(kept)
            sent = max(sent, seq)
        if sub.closed_for is not None:
            return
        yield b"event: overflow\ndata: {}\n\n"
        sub.clear()
