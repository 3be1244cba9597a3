"""OpenTelemetry log records as flowsight log entries (``POST /v1/logs``).

Each record becomes one entry:

* **time**: ``time_unix_nano``, else ``observed_time_unix_nano``, else when
  it came;
* **level**: from ``severity_number`` (1-4 trace, 5-8 debug, 9-12 info,
  13-16 warn, 17-20 error, 21-24 fatal), else the ``severity_text`` word,
  else info;
* **message**: the body (a string as it is; a map or a list as its JSON),
  else the record's ``event_name``;
* **source** ``otlp``; **fields**: the record's attributes, ``service.name``
  (its resource's), ``otel.scope`` (the instrumentation scope: a Python
  logger's name), ``otel.trace_id`` and ``otel.span_id`` (hex);
* **run and step**: those of its span, as ``/v1/traces`` mapped it
  (:mod:`flowsight.store.spans`), whichever came first.

Its id is made of the record itself (its bytes, its service, and how many
identical records came before it in the request), so a batch sent again is
stored once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OtelLogRecord

from flowsight.errors import LogEntryError
from flowsight.integrations.otlp import NOT_HEX, SpanError, UNKNOWN_SERVICE, attrs_of, id_problem, value_of
from flowsight.logs.records import LogRecord, WireLog, finish_wire_log
from flowsight.model.runs.ids import fact_id_at

SOURCE = "otlp"
# severity_number's ranges (OpenTelemetry's log data model), four numbers a level
_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")


@dataclass(slots=True)
class OtelLog:
    """A record as an entry, with the trace and span it was written in (hex; None: none)."""

    record: LogRecord
    trace_id: str | None
    span_id: str | None


@dataclass(slots=True)
class MappedLogs:
    """What one request's records made, and the records refused."""

    logs: list[OtelLog] = field(default_factory=list)
    refused: list[SpanError] = field(default_factory=list)
    records: int = 0


def level_word(rec: OtelLogRecord) -> str | None:
    """The flowsight level of a record (a word :func:`~flowsight.logs.entries.level_from_word` reads)."""
    n = rec.severity_number
    if 1 <= n <= 24:
        return _LEVELS[(n - 1) // 4]
    return rec.severity_text or None


def _message(rec: OtelLogRecord) -> str:
    if rec.HasField("body"):
        value = value_of(rec.body)
        if isinstance(value, str):
            return value
        if value is not None:
            return json.dumps(value, separators=(",", ":"), default=str)
    return rec.event_name


def _ids(rec: OtelLogRecord) -> tuple[str | None, str | None]:
    trace, span = rec.trace_id, rec.span_id
    for name, value, size in (("trace_id", trace, 16), ("span_id", span, 8)):
        if value and (value == NOT_HEX or len(value) != size):  # all zero: no trace (as the SDK sends none)
            raise LogEntryError(str(id_problem(name, value, size, empty=True)))
    if span and not trace:
        raise LogEntryError("span_id is set without a trace_id")
    trace_hex = trace.hex() if trace and any(trace) else None
    return trace_hex, span.hex() if trace_hex and span and any(span) else None


def map_logs(req: ExportLogsServiceRequest, now: float) -> MappedLogs:
    """Each record of ``req`` as an entry (or refused, with where and why)."""
    out = MappedLogs()
    seen: dict[bytes, int] = {}
    for ri, rl in enumerate(req.resource_logs):
        resource = attrs_of(rl.resource.attributes)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        for si, sl in enumerate(rl.scope_logs):
            scope = sl.scope.name
            for li, rec in enumerate(sl.log_records):
                out.records += 1
                try:
                    out.logs.append(_entry(rec, service, scope, now, seen))
                except LogEntryError as exc:
                    where = f"resource_logs[{ri}].scope_logs[{si}].log_records[{li}]"
                    out.refused.append(SpanError(where, str(exc)))
    return out


def _entry(rec: OtelLogRecord, service: str, scope: str, now: float, seen: dict[bytes, int]) -> OtelLog:
    trace, span = _ids(rec)
    ts_ns = rec.time_unix_nano or rec.observed_time_unix_nano
    fields: dict[str, Any] = attrs_of(rec.attributes)
    fields["service.name"] = service
    if scope:
        fields["otel.scope"] = scope
    if trace:
        fields["otel.trace_id"] = trace
    if span:
        fields["otel.span_id"] = span
    raw = rec.SerializeToString(deterministic=True)
    digest = hashlib.blake2b(raw, digest_size=16).digest()
    nth = seen[digest] = seen.get(digest, -1) + 1  # identical records in one request are told apart by their order
    event_id = fact_id_at(ts_ns, SOURCE, service, digest.hex(), nth)
    wire = WireLog(
        id=event_id,
        ts=ts_ns / 1e9 if ts_ns else None,
        level=level_word(rec),
        message=_message(rec),
        source=SOURCE,
        fields=fields,
    )
    try:
        record = finish_wire_log(wire, now)
    except LogEntryError as exc:
        if exc.field == "level":  # a severity text that is no level word: info, the text kept
            wire.level, wire.fields = None, {**fields, "otel.severity_text": rec.severity_text}
            record = finish_wire_log(wire, now)
        else:
            raise
    return OtelLog(record, trace, span)
