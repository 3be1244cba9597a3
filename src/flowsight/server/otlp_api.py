"""OTLP/HTTP ingest: ``POST /v1/traces`` (the path OpenTelemetry's SDKs and
collectors send to by default), per the OTLP specification.

A body is an ``ExportTraceServiceRequest``, binary protobuf
(``application/x-protobuf``) or OTLP/JSON (``application/json``: protobuf's
JSON mapping, but trace and span ids in hex), optionally gzip-compressed. The
answer is in the request's encoding:

* ``200`` with an ``ExportTraceServiceResponse``; a span that cannot be
  mapped (:mod:`flowsight.integrations.otlp`) is counted in its
  ``partial_success`` (``rejected_spans``, with where and why in
  ``error_message``), and the rest of the batch is kept;
* ``400`` (a body that does not decode), ``413`` (too big) and ``415`` (a
  content type or encoding other than these) with a ``google.rpc.Status``;
* ``429`` while too many events wait for the store, ``503`` while the store
  is unavailable, both with ``Retry-After``: an exporter retries, nothing is
  lost.

The ingest token is the one ``POST /api/v1/events`` takes
(``Authorization: Bearer``).
"""

from __future__ import annotations

import binascii
import json as stdjson
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]  # googleapis-common-protos ships no stubs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight.errors import HttpError, StoreError
from flowsight.integrations.otlp import Mapped, map_request
from flowsight.server.http import route
from flowsight.server.ingest import inflated, read_body

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext

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
    that is not hex becomes empty: its span is refused on its own, the batch kept."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    obj[key] = binascii.b2a_base64(bytes.fromhex(value), newline=False).decode()
                except ValueError:
                    obj[key] = ""
            else:
                _hex_ids_to_base64(value)
    elif isinstance(obj, list):
        for item in obj:
            _hex_ids_to_base64(item)
    return obj


def decode_traces(body: bytes, encoding: str) -> ExportTraceServiceRequest:
    """The request in ``body``.

    Raises:
        HttpError: 400, naming what does not decode.
    """
    req = ExportTraceServiceRequest()
    if encoding == PROTOBUF:
        try:
            req.ParseFromString(body)
        except DecodeError as exc:
            raise HttpError(400, f"body is not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
        return req
    try:
        data = stdjson.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HttpError(400, f"body must be an OTLP/JSON ExportTraceServiceRequest object, got {type(data).__name__}")
    try:
        json_format.ParseDict(_hex_ids_to_base64(data), req, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        raise HttpError(400, f"body is not an OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    return req


def _partial(mapped: Mapped) -> ExportTraceServiceResponse:
    if not mapped.refused:
        return ExportTraceServiceResponse()
    named = "; ".join(str(r) for r in mapped.refused[:NAMED])
    more = f"; and {len(mapped.refused) - NAMED} more" if len(mapped.refused) > NAMED else ""
    message = f"{len(mapped.refused)} of {mapped.spans} spans refused: {named}{more}"
    partial = ExportTracePartialSuccess(rejected_spans=len(mapped.refused), error_message=message)
    return ExportTraceServiceResponse(partial_success=partial)


async def post_traces(request: Request, st: ServerContext) -> Response:
    encoding = JSON
    try:
        encoding = _encoding(request)
        if st.committer.pending > MAX_PENDING:
            return _status(_RESOURCE_EXHAUSTED, "too many events wait for the store: retry", encoding, 429, 1)
        body = await read_body(request, st.limits.max_body_bytes)
        body = inflated(body, request.headers.get("content-encoding", ""), st.limits.max_body_bytes)
        if encoding == JSON and body[:1] == b"\x0a" and body.lstrip()[:1] not in (b"{", b""):
            # protobuf labelled JSON (Airflow 2's exporter does so): a request's first protobuf
            # field starts with byte 0x0a; JSON may too (a newline), but then an object follows
            encoding = PROTOBUF
        mapped = map_request(decode_traces(body, encoding), st.otlp_services)
        # a run's span ends (and is sent) after its steps': in time order, its start comes first
        mapped.events.sort(key=lambda ev: ev.ts)
        await st.committer.submit(mapped.events)
    except HttpError as exc:
        return _status(_INVALID_ARGUMENT, exc.message, encoding, exc.status)
    except StoreError as exc:
        return _status(_UNAVAILABLE, f"store unavailable: {exc}", encoding, 503, 5)
    return _answer(_partial(mapped), encoding)


def routes() -> list[Route]:
    return [route("/v1/traces", POST=("ingest", post_traces))]
