"""``GET /api/v1/stream``: Server-Sent Events, resumable.

Every event is sent with ``id: <seq>`` (its place in the store). A client that
reconnects with ``Last-Event-ID`` first gets what it missed, read back from the
store, then the live feed; nothing is sent twice (the live feed is subscribed
to before the backlog is read, and anything at or below the last seq sent is
skipped). A subscriber too slow for the live feed is told with an ``overflow``
event and resumes from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from flowsight.hub import Hub
from flowsight.model.events import Event
from flowsight.monitors.channel import EventFilter

_enc = msgspec.json.Encoder()
KEEPALIVE_SECONDS = 15.0


def sse(seq: int, ev: Event) -> bytes:
    body = _enc.encode({"seq": seq, "id": ev.id, "ts": ev.ts, "kind": ev.kind.value, "workflow": ev.workflow,
                        "run_id": ev.run_id, "step": ev.step, "attrs": ev.attrs})
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, ev.kind.value.encode(), body)


async def event_stream(hub: Hub, flt: EventFilter, last_seq: int | None, *,
                       keepalive: float = KEEPALIVE_SECONDS) -> AsyncIterator[bytes]:
    sub = hub.stream.subscribe(flt, queue_size=10_000)
    try:
        yield b"retry: 2000\n\n"
        sent = last_seq if last_seq is not None else await asyncio.to_thread(hub.store.last_seq)
        while True:
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
            dropped = sub.dropped
            # then live, until the subscriber falls behind
            while sub.dropped == dropped:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), keepalive)
                except asyncio.TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is None:
                    return
                seq, ev = item
                if seq > sent:
                    yield sse(seq, ev)
                    sent = seq
            yield b"event: overflow\ndata: {}\n\n"
            while not sub.queue.empty():
                sub.queue.get_nowait()
    finally:
        sub.close()
