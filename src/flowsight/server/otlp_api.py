"""OTLP/HTTP ingest: ``POST /v1/traces`` and ``POST /v1/logs`` (the paths
OpenTelemetry's SDKs and collectors send to by default), per the OTLP
specification.

A body is an ``ExportTraceServiceRequest`` (``ExportLogsServiceRequest``), binary protobuf
(``application/x-protobuf``) or OTLP/JSON (``application/json``: protobuf's
JSON mapping, but trace and span ids in hex), optionally gzip-compressed. The
answer is in the request's encoding:

* ``200`` with an ``ExportTraceServiceResponse`` (``ExportLogsServiceResponse``);
  a span or log record that cannot be mapped (:mod:`flowsight.integrations.otlp`,
  :mod:`flowsight.integrations.otlp_logs`) is counted in its
  ``partial_success`` (``rejected_spans``, ``rejected_log_records``, with
  where and why in ``error_message``), and the rest of the batch is kept;
* ``400`` (a body that does not decode), ``413`` (too big) and ``415`` (a
  content type or encoding other than these) with a ``google.rpc.Status``;
* ``429`` while too many events wait for the store, ``503`` while the store
  is unavailable, both with ``Retry-After``: an exporter retries, nothing is
  lost.

The ingest token is the one ``POST /api/v1/events`` takes
(``Authorization: Bearer``).

Each span mapped is linked to its run and step, and each log record put on
its span's (:mod:`flowsight.store.spans`: whichever of the two comes first).
"""

from __future__ import annotations

import asyncio
import binascii
import json as stdjson
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]  # googleapis-common-protos ships no stubs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight.errors import HttpError, StoreError
from flowsight.integrations.otlp import NOT_HEX, Mapped, SpanError, map_request
from flowsight.integrations.otlp_logs import MappedLogs, OtelLog, map_logs
from flowsight.logs.records import LogRecord
from flowsight.model.runs.events import Event, EventKind
from flowsight.server.http import route
from flowsight.server.ingest import check_count, decode_off_loop, inflated, read_body
from flowsight.server.logs_api import store_logs
from flowsight.store.spans import Link, Place

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext

M = TypeVar("M", bound=Message)
T = TypeVar("T")
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
#: events waiting for the store past which a request is answered 429 (the exporter retries later)
MAX_PENDING = 200_000
#: how many refused spans' reasons the partial success names (the count is always whole)
NAMED = 10
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _UNAVAILABLE = 3, 8, 14
# the OTLP/JSON fields holding ids, which it writes in hex where protobuf's JSON mapping has base64
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _encoding(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if ctype == JSON:
        return JSON
    raise HttpError(415, f"content type {ctype or '(none)'!r} is not accepted: send {PROTOBUF} or {JSON}")


def _answer(message: Message, encoding: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if encoding == PROTOBUF:
        return Response(message.SerializeToString(), status, headers=headers, media_type=PROTOBUF)
    body = json_format.MessageToJson(message, indent=None)
    return Response(body, status, headers=headers, media_type=JSON)


def _status(code: int, message: str, encoding: str, http: int, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return _answer(Status(code=code, message=message), encoding, http, headers)


def _hex_ids_to_base64(obj: Any) -> Any:
    """OTLP/JSON's hex ids as protobuf's JSON mapping reads bytes (base64), in place. An id
    that is not hex becomes :data:`~flowsight.integrations.otlp.NOT_HEX`: its span or record
    is refused on its own, saying so, the batch kept."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raw = NOT_HEX
                obj[key] = binascii.b2a_base64(raw, newline=False).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(obj, list):
        for item in obj:
            _hex_ids_to_base64(item)
    return obj


def decode(body: bytes, encoding: str, request: type[M]) -> M:
    """The ``request`` message in ``body``.

    Raises:
        HttpError: 400, naming what does not decode.
    """
    req = request()
    name = request.DESCRIPTOR.name
    if encoding == PROTOBUF:
        try:
            req.ParseFromString(body)
        except DecodeError as exc:
            raise HttpError(400, f"body is not an OTLP {name} in protobuf: {exc}") from None
        return req
    try:
        data = stdjson.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HttpError(400, f"body must be an OTLP/JSON {name} object, got {type(data).__name__}")
    try:
        json_format.ParseDict(_hex_ids_to_base64(data), req, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        raise HttpError(400, f"body is not an OTLP/JSON {name}: {exc}") from None
    return req


def decode_traces(body: bytes, encoding: str) -> ExportTraceServiceRequest:
    return decode(body, encoding, ExportTraceServiceRequest)


def _partial(refused: list[SpanError], total: int, noun: str) -> dict[str, Any]:
    """A partial success's fields (none when nothing was refused): how many, and the first :data:`NAMED`."""
    if not refused:
        return {}
    named = "; ".join(str(r) for r in refused[:NAMED])
    more = f"; and {len(refused) - NAMED} more" if len(refused) > NAMED else ""
    count = "rejected_spans" if noun == "spans" else "rejected_log_records"
    return {count: len(refused), "error_message": f"{len(refused)} of {total} {noun} refused: {named}{more}"}


async def _post(request: Request, st: ServerContext, take: Callable[[bytes, str], Awaitable[Message]]) -> Response:
    """What both signals' routes do around ``take`` (the decoded body's work; its answer)."""
    encoding = JSON
    try:
        encoding = _encoding(request)
        await st.auth.require(request, "ingest")  # here, not by the route: its refusal is a Status too
        if st.committer.pending > MAX_PENDING:
            return _status(_RESOURCE_EXHAUSTED, "too many events wait for the store: retry", encoding, 429, 1)
        body = await read_body(request, st.limits.max_body_bytes)
        body = inflated(body, request.headers.get("content-encoding", ""), st.limits.max_body_bytes)
        if encoding == JSON and body[:1] == b"\x0a" and body.lstrip()[:1] not in (b"{", b""):
            # protobuf labelled JSON (Airflow 2's exporter does so): a request's first protobuf
            # field starts with byte 0x0a; JSON may too (a newline), but then an object follows
            encoding = PROTOBUF
        answer = await take(body, encoding)
    except HttpError as exc:
        return _status(_INVALID_ARGUMENT, exc.message, encoding, exc.status)
    except StoreError as exc:
        return _status(_UNAVAILABLE, f"store unavailable: {exc}", encoding, 503, 5)
    return _answer(answer, encoding)


async def _in_store(st: ServerContext, work: Callable[[], T]) -> T:
    """``work`` (store calls) inline where writes are CPU work, else in a thread."""
    return work() if st.store.writes_inline else await asyncio.to_thread(work)


async def post_traces(request: Request, st: ServerContext) -> Response:
    async def take(body: bytes, encoding: str) -> Message:
        def read(b: bytes) -> Mapped:
            req = decode_traces(b, encoding)
            check_count(sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans), st.limits, "spans")
            return map_request(req, st.otlp_services)

        mapped = await decode_off_loop(body, read)
        # a run's span ends (and is sent) after its steps': in time order, its start comes first
        mapped.events.sort(key=lambda ev: ev.ts)
        await st.committer.submit(mapped.events)
        links = span_links(mapped.events)
        spans = st.store.spans  # no log records yet: no links (asked of the store now and then)
        linking: bool = bool(links) and (spans.logs_seen() if spans.known else await _in_store(st, spans.logs_seen))
        if linking:
            await _in_store(st, lambda: st.store.spans.link_spans(links))
        partial = _partial(mapped.refused, mapped.spans, "spans")
        return ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(**partial) if partial else None)

    return await _post(request, st, take)


_OPENED = (EventKind.STARTED, EventKind.STEP_STARTED)


def span_links(events: list[Event]) -> list[Link]:
    """Each mapped span's run and step, from the first event it made."""
    return [
        Link(ev.attrs["otel.trace_id"], ev.attrs["otel.span_id"], ev.workflow, ev.run_id, ev.step, ev.ts)
        for ev in events
        if ev.kind in _OPENED and "otel.span_id" in ev.attrs
    ]


def _placed(log: OtelLog, place: Place | None) -> LogRecord:
    if place is None:
        return log.record
    e = log.record.entry
    entry = replace(e, workflow=place.workflow, run_id=place.run_id, step=place.step)
    return replace(log.record, entry=entry)


async def post_logs(request: Request, st: ServerContext) -> Response:
    async def take(body: bytes, encoding: str) -> Message:
        now = time.time()

        def read(b: bytes) -> MappedLogs:
            req = decode(b, encoding, ExportLogsServiceRequest)
            check_count(
                sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs), st.limits, "log records"
            )
            return map_logs(req, now)

        mapped = await decode_off_loop(body, read)
        traced = [(log.trace_id, log.span_id) for log in mapped.logs if log.trace_id]
        if traced and not st.store.spans.linking:  # spans are linked from now on (the first: a back-fill, in a thread)
            await asyncio.to_thread(st.store.spans.saw_logs)
        places = iter(await _in_store(st, lambda: st.store.spans.resolve(traced)) if traced else ())
        records, parked = [], []
        for log in mapped.logs:
            place = next(places) if log.trace_id else None
            records.append(_placed(log, place))
            if log.trace_id and (place is None or not place.exact and log.span_id):
                parked.append((log.record.id, log.trace_id, log.span_id, log.record.entry.timestamp))
        await store_logs(st, records)
        if parked:  # a record sent again too: its first sending may have been stored and not parked

            def settle() -> None:  # after the park committed: a span linked meanwhile is found
                st.store.spans.park(parked)
                st.store.spans.settle(sorted({p[1] for p in parked}))

            await _in_store(st, settle)
        partial = _partial(mapped.refused, mapped.records, "log records")
        return ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(**partial) if partial else None)

    return await _post(request, st, take)


def routes() -> list[Route]:
    # the token is checked by the handlers (None here), so that a 401 or 403 is a Status as well
    return [route("/v1/traces", POST=(None, post_traces)), route("/v1/logs", POST=(None, post_logs))]


#: the OTLP paths: the router's 405 on them is a Status, as their other errors
PATHS = ("/v1/traces", "/v1/logs")


def method_not_allowed(request: Request) -> Response:
    """The 405 of an OTLP path, as a ``google.rpc.Status`` (JSON unless protobuf was sent)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    encoding = PROTOBUF if ctype in (PROTOBUF, "application/protobuf") else JSON
    message = f"method {request.method} is not allowed on {request.url.path!r}: OTLP/HTTP is POST"
    response = _status(_INVALID_ARGUMENT, message, encoding, 405)
    response.headers["Allow"] = "POST"
    return response
