"""OpenTelemetry spans as flowsight runs and steps (``POST /v1/traces``).

A span ends before its parent does, so an exporter sends a run's steps
before the run itself, often in an earlier batch: each span is mapped on its
own, from what it carries, and the store joins them by run id (a step's
events start their run when the run's own span has not come yet).

Which spans are runs and which are steps, first rule that applies:

1. **CI/CD semantic conventions**: a span with ``cicd.pipeline.task.name``
   (or ``cicd.pipeline.task.run.id``) is a step named after the task, of the
   run ``cicd.pipeline.run.id`` (else its trace's id); a span with
   ``cicd.pipeline.run.id`` or ``cicd.pipeline.name`` and no task is the run.
   The workflow is ``cicd.pipeline.name``; the outcome
   ``cicd.pipeline.result`` / ``cicd.pipeline.task.run.result`` where set.
2. **Any other trace**: its root span (no parent) is the run, every other
   span of the trace a step named after the span; the run id is the trace id
   (hex), the workflow the service's name (``service.name``).

In both, the span status ``ERROR`` fails the run or step, and a span event
named ``exception`` gives the error (``exception.type: exception.message``)
and its traceback (``exception.stacktrace``). Attributes are looked up on
the span, then on its resource. Each event's id is made of the trace id,
the span id and what happened, so a batch sent again is stored once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from flowsight.errors import EventError
from flowsight.model.runs.events import Event, EventKind, make_event
from flowsight.model.runs.ids import fact_id

K = EventKind
SOURCE = "otlp"
#: the workflow of a trace whose resource names no service
UNKNOWN_SERVICE = "unknown_service"
# cicd.pipeline.result / cicd.pipeline.task.run.result values (semantic conventions)
FAILED_RESULTS = frozenset({"failure", "error", "timeout"})
CANCELLED_RESULTS = frozenset({"cancellation"})
SKIPPED_RESULTS = frozenset({"skip"})
_NANO = 1e-9


def value_of(v: AnyValue) -> Any:
    """An attribute's value as JSON."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attrs_of(v.kvlist_value.values)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attrs_of(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        assert isinstance(kv, KeyValue)
        out[kv.key] = value_of(kv.value)
    return out


@dataclass(frozen=True, slots=True)
class SpanError:
    """A span that was refused: where it was in the request, and why."""

    where: str  # "resource_spans[0].scope_spans[1].spans[3]"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(slots=True)
class Mapped:
    """What one request's spans made: their events, and the spans refused."""

    events: list[Event] = field(default_factory=list)
    refused: list[SpanError] = field(default_factory=list)
    spans: int = 0


def map_request(req: ExportTraceServiceRequest) -> Mapped:
    """Each span of ``req`` as events (or refused, with the reason)."""
    out = Mapped()
    for ri, rs in enumerate(req.resource_spans):
        resource = attrs_of(rs.resource.attributes)
        for si, ss in enumerate(rs.scope_spans):
            for pi, span in enumerate(ss.spans):
                out.spans += 1
                where = f"resource_spans[{ri}].scope_spans[{si}].spans[{pi}]"
                try:
                    out.events.extend(span_events(span, resource))
                except EventError as exc:
                    out.refused.append(SpanError(where, str(exc)))
    return out


def _check(span: Span) -> None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise EventError(f"trace_id must be 16 bytes, not all zero (got {len(span.trace_id)} bytes)")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise EventError(f"span_id must be 8 bytes, not all zero (got {len(span.span_id)} bytes)")
    if span.parent_span_id and len(span.parent_span_id) != 8:
        raise EventError(f"parent_span_id must be 8 bytes or empty (got {len(span.parent_span_id)} bytes)")
    if not span.start_time_unix_nano:
        raise EventError("start_time_unix_nano is missing")
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        raise EventError("end_time_unix_nano is before start_time_unix_nano")
    if not span.name:
        raise EventError("name is empty")


@dataclass(frozen=True, slots=True)
class Role:
    """What a span is to flowsight: the run (``step`` None) or a step of it."""

    workflow: str
    run_id: str
    step: str | None
    result: str | None  # the CI/CD result attribute's value, where set


def role_of(span: Span, attrs: Mapping[str, Any], resource: Mapping[str, Any]) -> Role:
    """Which run the span belongs to, and whether it is that run or a step of it."""

    def get(key: str) -> Any:
        return attrs.get(key, resource.get(key))

    trace = span.trace_id.hex()
    service = str(get("service.name") or UNKNOWN_SERVICE)
    task = get("cicd.pipeline.task.name")
    run = get("cicd.pipeline.run.id")
    pipeline = get("cicd.pipeline.name")
    if task is not None or get("cicd.pipeline.task.run.id") is not None:
        result = get("cicd.pipeline.task.run.result")
        return Role(str(pipeline or service), str(run or trace), str(task or span.name), _text(result))
    if run is not None or pipeline is not None:
        return Role(str(pipeline or service), str(run or trace), None, _text(get("cicd.pipeline.result")))
    return Role(service, trace, None if not span.parent_span_id else span.name, None)


def _text(v: Any) -> str | None:
    return None if v is None else str(v).lower()


def _error(span: Span) -> tuple[str | None, str | None]:
    """The span's error (from its ``exception`` event, else its status message) and traceback."""
    for ev in span.events:
        if ev.name == "exception":
            a = attrs_of(ev.attributes)
            kind, message = a.get("exception.type"), a.get("exception.message")
            text = f"{kind}: {message}" if kind and message else str(message or kind or "exception")
            tb = a.get("exception.stacktrace")
            return text, str(tb) if tb else None
    return (span.status.message or None), None


def span_events(span: Span, resource: Mapping[str, Any]) -> Iterator[Event]:
    """The events of one span: its start and, where it has ended, its end.

    Raises:
        EventError: the span is malformed, or makes an event that is.
    """
    _check(span)
    attrs = attrs_of(span.attributes)
    role = role_of(span, attrs, resource)
    trace, sid = span.trace_id.hex(), span.span_id.hex()
    start, end = span.start_time_unix_nano * _NANO, span.end_time_unix_nano * _NANO
    failed = span.status.code == Status.STATUS_CODE_ERROR or role.result in FAILED_RESULTS
    error, tb = _error(span) if failed else (None, None)
    kept = {"otel.trace_id": trace, "otel.span_id": sid}

    def event(kind: EventKind, ts: float, extra: dict[str, Any]) -> Event:
        return make_event(
            kind,
            role.workflow,
            role.run_id,
            role.step,
            {**kept, **extra},
            ts=ts,
            event_id=fact_id(SOURCE, trace, sid, kind.value),
        )

    if role.step is None:
        yield event(K.STARTED, start, {"otel.span": span.name})
        if end:
            if role.result in CANCELLED_RESULTS:
                yield event(K.CANCELLED, end, {"reason": "cancelled"})
            elif failed:
                yield event(K.FAILED, end, {"error": error or "failed"})
            else:
                yield event(K.COMPLETED, end, {})
        return
    yield event(K.STEP_STARTED, start, {})
    if end:
        if failed or role.result in CANCELLED_RESULTS:
            extra: dict[str, Any] = {"error": error or role.result or "failed"}
            if tb:
                extra["traceback"] = tb
            yield event(K.STEP_FAILED, end, extra)
        else:
            skipped = {"skipped": True, "reason": "skipped"} if role.result in SKIPPED_RESULTS else {}
            yield event(K.STEP_COMPLETED, end, skipped)
