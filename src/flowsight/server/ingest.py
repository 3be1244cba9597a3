"""``POST /api/v1/events``: read, check, group-commit, answer per event.

A body is one event or a JSON array of them (optionally gzip-compressed). The
whole array is decoded in one pass when it is all valid; otherwise item by
item, so a bad event costs only itself. Every write route takes its body
through the same :func:`read_json_body` and :func:`decode_items` (``POST
/api/v1/logs``, ``/api/v1/alerts``, ``/api/v1/silences``), so all answer bad
bodies alike: the content type, the size and count limits, gzip, malformed
or too deeply nested JSON. A big body is decoded in a worker thread
(:func:`decode_off_loop`), so it never holds up the event loop. Valid events
from concurrent requests are committed together (group commit); a request is
answered only after its events are committed, with each event's fate:
accepted, duplicate (its id was stored before: a retry), or rejected with the
reason and the field.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET
from starlette.requests import ClientDisconnect, Request

from flowsight.errors import EventError, HttpError
from flowsight.hub import Hub
from flowsight.model.runs.events import MAX_DEPTH, Event, finish_wire, WireEvent, parse_events
from flowsight.server import schemas as S
from flowsight.store.base import WriteResult


@dataclass(frozen=True, slots=True)
class Limits:
    max_events: int = 10_000
    max_body_bytes: int = 10 * 1024 * 1024


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing one that inflates past ``limit`` (a zip bomb)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HttpError(400, f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise HttpError(413, f"body inflates past the limit of {limit} bytes; send smaller batches")
    return out


async def read_body(request: Request, limit: int, declared: bytes | None = None) -> bytes:
    """The raw body, refused (413) as soon as it passes ``limit`` bytes.
    ``declared``: the Content-Length header, when the caller has it at hand."""
    if declared is None:
        declared = request.headers.get("content-length", "").encode()
    if declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"body of {declared.decode()} bytes is over the limit of {limit}; send smaller batches")
    # straight from the ASGI messages (Starlette's stream() adds an async
    # generator per request on the ingest path)
    receive = request.receive
    chunks, size = [], 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise HttpError(413, f"body is over the limit of {limit} bytes; send smaller batches")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json_body(request: Request, limits: Limits) -> bytes:
    """The body of an ingest POST, inflated.

    Raises:
        HttpError: 415 (not ``application/json``, or an encoding other than
            gzip), 413 (over ``limits.max_body_bytes``, before or after
            inflating), 400 (not valid gzip).
    """
    ctype = length = encoding = b""
    for name, value in request.scope["headers"]:  # one pass, not a scan per header
        if name == b"content-type":
            ctype = value
        elif name == b"content-length":
            length = value
        elif name == b"content-encoding":
            encoding = value
    if ctype != b"application/json":
        ctype_text = ctype.decode("latin-1").split(";")[0].strip().lower()
        if ctype_text != "application/json":
            raise HttpError(415, f"content type {ctype_text or '(none)'!r} is not accepted: send application/json")
    body = await read_body(request, limits.max_body_bytes, length)
    return inflated(body, encoding.decode("latin-1"), limits.max_body_bytes) if encoding else body


def inflated(body: bytes, encoding: str, limit: int) -> bytes:
    """A body as sent with ``Content-Encoding: encoding``, inflated (gzip) or as it is (none, identity).

    Raises:
        HttpError: 415 for another encoding, 413 past ``limit`` inflated, 400 for gzip that is not.
    """
    enc = encoding.strip().lower()
    if enc == "gzip":
        return gunzip(body, limit)
    if enc not in ("identity", ""):
        raise HttpError(415, f"content encoding {enc!r} is not accepted: send gzip or none")
    return body


W = TypeVar("W")
T = TypeVar("T")

#: a body up to this size is decoded on the event loop (a few milliseconds at
#: most); a bigger one in a worker thread, so other requests go on meanwhile
INLINE_BODY = 256 * 1024


async def decode_off_loop(body: bytes, decode: Callable[[bytes], T]) -> T:
    """``decode(body)``, in a worker thread when the body is big enough to hold up the event loop."""
    if len(body) <= INLINE_BODY:
        return decode(body)
    return await asyncio.to_thread(decode, body)


_fast = msgspec.json.Decoder(list[WireEvent] | WireEvent)
_any = msgspec.json.Decoder()


def decode_batch(body: bytes, limits: Limits) -> list[Event | EventError]:
    """Events (or the error of each bad one) in the order they were sent.

    Raises:
        HttpError: not JSON (400, with the position), not an object or an
            array of them (400), or too many events (413).
    """
    return decode_items(body, limits, fast=_fast, finish=finish_wire, parse=parse_events, noun="event", plural="events")


def decode_items(
    body: bytes,
    limits: Limits,
    *,
    fast: msgspec.json.Decoder[Any],
    finish: Callable[[W], T],
    parse: Callable[[list[Any]], Sequence[T | EventError]],
    noun: str,
    plural: str,
) -> list[T | EventError]:
    """Items (or the error of each bad one) in the order they were sent.

    ``fast`` decodes a list of wire items or one item in one pass, ``finish``
    turns one into an item (raising :class:`EventError`), ``parse`` is the
    slow path, item by item, for a batch with a bad item in it.

    Raises:
        HttpError: not JSON (400, with the position), not an object or an
            array of them (400), or too many items (413).
    """
    try:
        wire = fast.decode(body)
    except (msgspec.ValidationError, RecursionError):
        pass  # some item is bad (or nested too deep to tell): go item by item below
    except msgspec.DecodeError as exc:
        if not _ESCAPED_SURROGATE.search(body):
            raise _malformed(exc, body) from None
    else:
        items = wire if isinstance(wire, list) else [wire]
        check_count(len(items), limits, plural)
        out: list[T | EventError] = []
        for i, w in enumerate(items):
            try:
                out.append(finish(w))
            except EventError as exc:
                out.append(exc.in_batch(noun, i))
        return out
    # the typed pass stops at the first bad item, before it sees the rest of
    # the text: the body may still be malformed further on
    data = decode_any(body)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        article = "an" if noun[0] in "aeiou" else "a"
        raise HttpError(400, f"body must be {article} {noun} object or an array of them, got {type(data).__name__}")
    check_count(len(data), limits, plural)
    return list(parse(data))


def decode_any(body: bytes) -> Any:
    """The body as plain JSON values.

    msgspec refuses a lone UTF-16 surrogate escape (``"\\ud800"`` unpaired)
    as malformed, and a number no float holds (``1e999``) as out of range;
    the standard library's decoder keeps both (the number as infinity), so
    the item that holds one is refused by itself and the rest of the batch is
    kept.

    Raises:
        HttpError: 400: malformed, or nested so deep that no item can be told
            apart (the byte where it passed :data:`MAX_DEPTH` levels).
    """
    try:
        return _any.decode(body)
    except RecursionError:
        raise _too_deep(body) from None
    except msgspec.ValidationError as exc:  # the only one a schema-less decode raises: a number out of range
        return _decode_std(body, exc)
    except msgspec.DecodeError as exc:
        if not _ESCAPED_SURROGATE.search(body):
            raise _malformed(exc, body) from None
        return _decode_std(body, exc)


def _decode_std(body: bytes, exc: msgspec.DecodeError) -> Any:
    """The standard library's reading of what msgspec refused with ``exc`` (JSON only: no NaN)."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except RecursionError:
        raise _too_deep(body) from None
    except ValueError:  # UnicodeDecodeError too
        raise _malformed(exc, body) from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_ESCAPED_SURROGATE = re.compile(rb"\\[uU][dD][89abcdefABCDEF]")
# a JSON string (escapes and all) or a bracket: what nesting is counted over
_NESTING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _too_deep(body: bytes) -> HttpError:
    """The 400 for a body nested too deep for the decoder, naming the byte
    where its nesting passed :data:`MAX_DEPTH` levels."""
    depth = 0
    for m in _NESTING.finditer(body):
        c = body[m.start()]
        if c == 0x5B or c == 0x7B:  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                return HttpError(
                    400,
                    f"JSON nested deeper than {MAX_DEPTH} levels (at byte {m.start()}); "
                    f"values nest {MAX_DEPTH} levels at most",
                )
        elif c == 0x5D or c == 0x7D:  # ] }
            depth -= 1
    return HttpError(400, f"JSON nested too deep to read; values nest {MAX_DEPTH} levels at most")


def _malformed(exc: msgspec.DecodeError, body: bytes) -> HttpError:
    text = str(exc)
    if "truncated" in text:  # msgspec names no position for this one: it is the end
        text = f"{text} (at byte {len(body)}, the end of the body)"
    return HttpError(400, f"malformed JSON: {text}")


def check_count(n: int, limits: Limits, plural: str = "events") -> None:
    """Refuse a request of more items than the server takes at once (413)."""
    if n > limits.max_events:
        raise HttpError(413, f"{n} {plural} in one request; the limit is {limits.max_events}: send smaller batches")


def is_single(body: bytes) -> bool:
    """Whether a (valid) JSON body is one object rather than an array."""
    return body.lstrip(b" \t\r\n")[:1] == b"{"


Answer = S.IngestResponse | S.AlertsAccepted
_REFUSED: dict[type[Answer], type[S.IngestRefused] | type[S.AlertRefused]] = {
    S.IngestResponse: S.IngestRefused,
    S.AlertsAccepted: S.AlertRefused,
}


def write_answer(
    body: bytes, items: Sequence[object], answer: Answer
) -> tuple[Answer | S.IngestRefused | S.AlertRefused, int]:
    """The body and status of a write's answer: 200 with each item's fate
    when the body was an array (a bad item costs only itself), but a body
    that was one object and was refused is a refused request: 400 when it is
    not as the OpenAPI document describes it, 422 when it is but a rule the
    document states in words refused it (:attr:`EventError.rule`); the reason
    as ``error`` (and ``field``), beside the same per-item answer."""
    refused = items[0] if len(items) == 1 else None
    if isinstance(refused, EventError) and is_single(body):
        fates = msgspec.structs.asdict(answer)
        return _REFUSED[type(answer)](error=str(refused), field=refused.field, **fates), 422 if refused.rule else 400
    return answer, 200


def rejected(index: int, err: EventError) -> S.ItemResult:
    """An item's result when it was refused: the reason and the field."""
    return S.ItemResult(index=index, status="rejected", error=str(err), field=err.field)


def tally(results: list[S.ItemResult]) -> S.IngestResponse:
    """The answer to a write of events or log entries: each item's result, and how many of each fate."""
    accepted = duplicates = 0
    for r in results:
        accepted += r.status == "accepted"
        duplicates += r.status == "duplicate"
    return S.IngestResponse(
        accepted=accepted, duplicates=duplicates, rejected=len(results) - accepted - duplicates, results=results
    )


def answer(items: list[Event | EventError], result: WriteResult) -> S.IngestResponse:
    """The per-event answer."""
    refused = {t.event_id: t for t in result.transitions if not t.applied}
    accepted = set(result.seqs)
    results: list[S.ItemResult] = []
    for i, item in enumerate(items):
        if isinstance(item, EventError):
            results.append(rejected(i, item))
        elif item.id in accepted:
            accepted.discard(item.id)
            tr = refused.get(item.id)
            warning = (
                f"stored, but the transition {tr.old_state.value} -> {tr.new_state.value} "
                "is not allowed and was not applied"
                if tr is not None
                else UNSET
            )
            results.append(S.ItemResult(index=i, status="accepted", id=item.id, warning=warning))
        else:
            results.append(S.ItemResult(index=i, status="duplicate", id=item.id))
    return tally(results)


class Committer:
    """Group commit: events from concurrent requests go to the store in one
    transaction; each request waits for the commit that holds its events."""

    def __init__(self, hub: Hub, *, max_batch: int = 20_000, max_turns: int = 4) -> None:
        self.hub = hub
        self.max_batch = max_batch
        self.max_turns = max_turns
        self._queue: asyncio.Queue[tuple[list[Event], asyncio.Future[WriteResult]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.on_commit: Callable[[WriteResult, float], None] | None = None
        #: events submitted and not yet committed (a route may refuse more past a bound: back-pressure)
        self.pending = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="flowsight-committer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None

    async def submit(self, events: list[Event]) -> WriteResult:
        if not events:
            return WriteResult()
        if self._task is None:  # not started (tests, embedded use): commit inline
            started = time.perf_counter()
            result = await self.hub.publish(events)
            if self.on_commit is not None:
                self.on_commit(result, time.perf_counter() - started)
            return result
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self.pending += len(events)
        try:
            await self._queue.put((events, fut))
            return await fut
        finally:
            self.pending -= len(events)

    async def _run(self) -> None:
        stop = False
        while not stop:
            item = await self._queue.get()
            if item is not None:
                # turns of the loop let requests already on the sockets be
                # parsed and queued, so they share this commit; keep turning
                # while more arrive (a request takes a few turns from its
                # bytes to the queue), a few turns at most
                seen = -1
                for _ in range(self.max_turns):
                    if self._queue.qsize() == seen:
                        break
                    seen = self._queue.qsize()
                    await asyncio.sleep(0)
            group: list[tuple[list[Event], asyncio.Future[WriteResult]]] = []
            size = 0
            while item is not None:
                group.append(item)
                size += len(item[0])
                if size >= self.max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if item is None:
                stop = True
            if not group:
                continue
            events = [ev for evs, _ in group for ev in evs]
            started = time.perf_counter()
            try:
                result = await self.hub.publish(events)
            except Exception as exc:  # the store failed: every waiting request hears it
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if self.on_commit is not None:
                self.on_commit(result, time.perf_counter() - started)
            for evs, fut in _split(group, result):
                if not fut.done():
                    fut.set_result(evs)


def _split(
    group: list[tuple[list[Event], asyncio.Future[WriteResult]]], result: WriteResult
) -> list[tuple[WriteResult, asyncio.Future[WriteResult]]]:
    """Each request's share of a group commit; an id two requests both sent
    is accepted for the first and a duplicate for the second."""
    if len(group) == 1:
        return [(result, group[0][1])]
    claimed: set[str] = set()
    out = []
    for events, fut in group:
        ids = {ev.id for ev in events}
        mine = WriteResult(transitions=[t for t in result.transitions if t.event_id in ids])
        for ev in events:
            seq = result.seqs.get(ev.id)
            if seq is not None and ev.id not in claimed:
                claimed.add(ev.id)
                mine.seqs[ev.id] = seq
                mine.accepted.append(ev.id)
            else:
                mine.duplicates.append(ev.id)
        out.append((mine, fut))
    return out
