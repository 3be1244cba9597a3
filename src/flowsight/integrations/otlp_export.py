"""Ended runs as OpenTelemetry traces and their log entries as OTLP log
records, sent to an OTLP/HTTP endpoint (``[export.otlp]``): made into the
SDK's own spans and log records, encoded by OpenTelemetry's own encoder
(``opentelemetry-exporter-otlp-proto-common``, what its HTTP exporter
encodes with), and posted by flowsight's HTTP receivers' one POST
(:func:`flowsight.alerting.notifiers.http.post_body`), which tells a refusal
for good (a 4xx) from one for now (the endpoint down, a 429 or 5xx): the
HTTP exporter says only that it failed.

A run is one trace: the run's span (named after the workflow) with a child
span per step attempt, both with the CI/CD semantic conventions' attributes
(``cicd.pipeline.name``, ``cicd.pipeline.run.id``, ``cicd.pipeline.result``;
``cicd.pipeline.task.name``, ``cicd.pipeline.task.run.id``,
``cicd.pipeline.task.run.result``); a failed run or step has the status
``ERROR`` and an ``exception`` event with its error and traceback. The
resource's ``service.name`` is the workflow. Trace and span ids are made of
the run id (and the step and attempt), so a run sent again is the same
trace. Its log entries (the first :data:`MAX_LOGS`) are log records in that
trace, each on the span of its step's attempt.

:class:`OtlpExporter` is what the outbox's delivery calls for the items
:meth:`flowsight.store.exports.Exports.hand_over` wrote: an endpoint that is
down or refuses for now leaves the item to be tried again, with backoff;
nothing is lost. One refused for good (a 4xx: a body too big, say) fails
its item alone; the next ones are sent.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry._logs import LogRecord as ApiLogRecord
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from google.protobuf.message import DecodeError
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from flowsight.alerting.notifiers import EXPORT_PREFIX
from flowsight.alerting.notifiers.http import post_body
from flowsight.errors import DeliveryError
from flowsight.logs.entries import LogLevel
from flowsight.model.runs.execution import ExecutionMetrics, StepRecord
from flowsight.model.runs.state import WorkflowState
from flowsight.store.exports import decode_runs
from flowsight.store.interface import Store
from flowsight.store.logs import StoredLog

#: the exporter's name in the outbox (its receiver)
EXPORTER = f"{EXPORT_PREFIX}otlp"
#: log entries sent with a run at most (the first ones)
MAX_LOGS = 10_000
#: spans or log records in one request at most
CHUNK = 2_000
log = logging.getLogger("flowsight.server")
_SCOPE = InstrumentationScope("flowsight")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_RESULT = {
    WorkflowState.COMPLETED: "success",
    WorkflowState.FAILED: "failure",
    WorkflowState.CANCELLED: "cancellation",
}
_STEP_RESULT = {"completed": "success", "failed": "failure"}
_SEVERITY = {
    LogLevel.TRACE: SeverityNumber.TRACE,
    LogLevel.DEBUG: SeverityNumber.DEBUG,
    LogLevel.INFO: SeverityNumber.INFO,
    LogLevel.WARN: SeverityNumber.WARN,
    LogLevel.ERROR: SeverityNumber.ERROR,
    LogLevel.FATAL: SeverityNumber.FATAL,
}


def _id(size: int, *parts: str) -> int:
    digest = hashlib.sha256("\x00".join(("flowsight", *parts)).encode()).digest()
    return int.from_bytes(digest[:size], "big") or 1


def trace_id_of(run_id: str) -> int:
    """The trace id a run is exported with."""
    return _id(16, run_id)


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def _span(
    name: str,
    ctx: SpanContext,
    parent: SpanContext | None,
    resource: Resource,
    attrs: dict[str, Any],
    times: tuple[float, float],
    failure: tuple[str | None, str | None] | None,
    ok: bool,
) -> ReadableSpan:
    """One ended span; ``failure``: (error, traceback) of a failed one; ``ok``: its status
    is OK (it succeeded), else UNSET (cancelled, or open when its run ended)."""
    start, end = times
    events, status = [], Status(StatusCode.OK if ok else StatusCode.UNSET)
    if failure is not None:
        error, traceback = failure
        status = Status(StatusCode.ERROR, error or "failed")
        if error:
            exc = {"exception.message": error, **({"exception.stacktrace": traceback} if traceback else {})}
            events.append(SpanEvent("exception", exc, _ns(end)))
    return ReadableSpan(
        name,
        context=ctx,
        parent=parent,
        resource=resource,
        attributes=attrs,
        events=events,
        status=status,
        start_time=_ns(start),
        end_time=_ns(max(start, end)),
        instrumentation_scope=_SCOPE,
    )


@dataclass
class RunTelemetry:
    """One run as spans and log records."""

    spans: list[ReadableSpan] = field(default_factory=list)
    logs: list[ReadableLogRecord] = field(default_factory=list)


def run_telemetry(m: ExecutionMetrics, steps: Sequence[StepRecord], logs: Sequence[StoredLog]) -> RunTelemetry:
    """The trace of an ended run ``m``, with its steps' spans and its log entries as records."""
    trace = trace_id_of(m.workflow_id)
    resource = Resource.create({"service.name": m.workflow})
    end = m.end_time if m.end_time is not None else m.last_activity
    start = m.start_time if m.start_time is not None else min([end, *(s.started_at or end for s in steps)])
    run_ctx = SpanContext(trace, _id(8, m.workflow_id, ""), False, _SAMPLED)
    failed = m.state is WorkflowState.FAILED
    run_attrs: dict[str, Any] = {
        "cicd.pipeline.name": m.workflow,
        "cicd.pipeline.run.id": m.workflow_id,
        "cicd.pipeline.result": _RESULT.get(m.state, m.state.value),
        "flowsight.state": m.state.value,
        "flowsight.retries": m.retries,
    }
    out = RunTelemetry()
    out.spans.append(
        _span(
            m.workflow,
            run_ctx,
            None,
            resource,
            run_attrs,
            (start, end),
            (m.error, None) if failed else None,
            m.state is WorkflowState.COMPLETED,
        )
    )
    step_ctx: dict[tuple[str, int], SpanContext] = {}
    for s in steps:
        ctx = SpanContext(trace, _id(8, m.workflow_id, s.step, str(s.attempt)), False, _SAMPLED)
        step_ctx[(s.step, s.attempt)] = ctx
        s_start = s.started_at if s.started_at is not None else (s.ended_at or start)
        s_end = s.ended_at if s.ended_at is not None else end
        step_attrs: dict[str, Any] = {
            "cicd.pipeline.name": m.workflow,
            "cicd.pipeline.run.id": m.workflow_id,
            "cicd.pipeline.task.name": s.step,
            "cicd.pipeline.task.run.id": f"{m.workflow_id}/{s.step}#{s.attempt}",
            **({"cicd.pipeline.task.run.result": _STEP_RESULT[s.status]} if s.status in _STEP_RESULT else {}),
            "flowsight.attempt": s.attempt,
        }
        failure = (s.error, s.traceback) if s.status == "failed" else None
        ok = s.status == "completed"
        out.spans.append(_span(s.step, ctx, run_ctx, resource, step_attrs, (s_start, s_end), failure, ok))
    for log in logs:
        e = log.entry
        ctx = _span_at(steps, step_ctx, e.step, e.timestamp) or run_ctx
        fields: dict[str, Any] = {k: v for k, v in e.fields.items() if v is not None}
        fields["flowsight.source"] = e.source
        record = ApiLogRecord(
            timestamp=_ns(e.timestamp),
            observed_timestamp=_ns(e.timestamp),
            trace_id=trace,
            span_id=ctx.span_id,
            trace_flags=_SAMPLED,
            severity_text=e.level.value.upper(),
            severity_number=_SEVERITY[e.level],
            body=e.message,
            attributes=fields,
        )
        out.logs.append(ReadableLogRecord(record, resource=resource, instrumentation_scope=_SCOPE))
    return out


def _span_at(
    steps: Sequence[StepRecord], ctx: Mapping[tuple[str, int], SpanContext], step: str | None, ts: float
) -> SpanContext | None:
    """The span of ``step``'s attempt that was running at ``ts`` (else its last)."""
    if step is None:
        return None
    found = None
    for s in steps:
        if s.step == step:
            found = ctx[(s.step, s.attempt)]
            if s.started_at is not None and s.started_at <= ts and (s.ended_at is None or ts <= s.ended_at):
                return found
    return found


class OtlpExporter:
    """Sends the outbox's export items: run after run, its spans, then its
    log records, in requests of :data:`CHUNK` at most, each to be taken
    before the next is sent (a failure sends the item again from its first
    run: at least once, with the same ids)."""

    def __init__(
        self,
        store: Store,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        logs: bool = True,
    ) -> None:
        self.store = store
        self.base = endpoint.rstrip("/")
        self.headers = {"Content-Encoding": "gzip", **(headers or {})}
        self.timeout = timeout
        self.logs = logs

    def telemetry(self, runs: Sequence[str]) -> RunTelemetry:
        """What the item's runs send (a run no longer stored is left out)."""
        out = RunTelemetry()
        for run_id in runs:
            m = self.store.runs.get_run(run_id)
            if m is None:
                continue
            steps = self.store.runs.run_steps(run_id)
            logs = self.store.logs.query_logs(run_id=run_id, limit=MAX_LOGS) if self.logs else []
            one = run_telemetry(m, steps, logs)
            out.spans += one.spans
            out.logs += one.logs
        return out

    async def send_body(self, body: bytes) -> None:
        """Send one outbox item: its runs read a run at a time, their spans
        and log records sent in requests of :data:`CHUNK` (at most a chunk
        and one run's are held in memory).

        Raises:
            DeliveryError: not all sent: temporary (the endpoint down, a 429
                or 5xx: the item is sent again later, whole) or permanent (a
                4xx, a body that is no export item).
        """
        try:
            runs = decode_runs(body)
        except ValueError as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        key = hashlib.sha256(body).hexdigest()[:32]
        held: dict[str, list[Any]] = {"/v1/traces": [], "/v1/logs": []}
        sent = 0
        for i, run_id in enumerate(runs):
            t = await asyncio.to_thread(self.telemetry, [run_id])
            held["/v1/traces"] += t.spans
            held["/v1/logs"] += t.logs
            last = i == len(runs) - 1
            for path, items in held.items():
                while len(items) >= CHUNK or (last and items):
                    chunk, items[:] = items[:CHUNK], items[CHUNK:]
                    await self._post(path, chunk, f"{key}-{sent}")
                    sent += 1

    async def _post(self, path: str, items: list[Any], idempotency_key: str) -> None:
        data = await asyncio.to_thread(_encoded, path, items)
        resp = await post_body(
            f"{self.base}{path}",
            data,
            idempotency_key=idempotency_key,
            kind="OTLP endpoint",
            timeout=self.timeout,
            headers=self.headers,
            content_type="application/x-protobuf",
        )
        _partial_success(resp.content, path)


def _encoded(path: str, items: list[Any]) -> bytes:
    """A request's body: the spans or log records, OTLP protobuf by OpenTelemetry's encoder, gzip."""
    message = encode_spans(items) if path == "/v1/traces" else encode_logs(items)
    return gzip.compress(message.SerializeToString(), compresslevel=6)


def _partial_success(answer: bytes, path: str) -> None:
    """Say what the endpoint refused of a request it took (sending it again would not help)."""
    cls = ExportTraceServiceResponse if path == "/v1/traces" else ExportLogsServiceResponse
    try:
        partial = cls.FromString(answer).partial_success
    except DecodeError:
        return  # an endpoint that answers no message: nothing was said refused
    rejected = getattr(partial, "rejected_spans", 0) or getattr(partial, "rejected_log_records", 0)
    if rejected or partial.error_message:
        log.warning(
            "OTLP export: the endpoint refused %d of a request to %s: %s", rejected, path, partial.error_message
        )
