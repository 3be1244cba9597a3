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
2. **Airflow's own spans**: Airflow 3's ``dag_run.DAG`` span is the run
   ``DAG:RUN_ID`` (the listener plugin's run id), its ``task_run.TASK`` spans
   steps (``task[index]`` when mapped; ``airflow.task_instance.state`` the
   outcome, ``up_for_retry`` a failed attempt that does not fail the run);
   its other spans (``worker.*``, ``trigger.*``, detail spans) are passed
   over. Airflow 2's DAG-run span (scope ``dagrun``) is the run, its
   task-instance spans (scope ``taskinstance``) steps, the run id the trace
   id (Airflow 2 puts no run id on a task's span); its ``state`` attribute
   the outcome.
3. **Prefect's own spans** (``prefect.run.type``): a flow run's span is the
   run (a subflow's, a step), a task run's a step; the outcome is the last
   state the span's events name (``prefect.state.type``: a flow that
   returns a failed state leaves its span's status OK).
4. **Any other trace**: its root span (no parent) is the run, every other
   span of the trace a step named after the span; the run id is the trace id
   (hex), the workflow the service's name (``service.name``).

Per service (``[otlp.services.NAME] mapping`` in ``flowsight.toml``) one
rule can be chosen over this order: ``cicd``, ``airflow``, ``prefect`` or
``generic`` (a span that rule does not map is passed over: Airflow 2's
scheduler-loop and executor spans, say), or ``ignore``.

Under every rule, where the span's attributes say no outcome, the span
status ``ERROR`` fails the run or step; a span event named ``exception``
gives the error (``exception.type: exception.message``)
and its traceback (``exception.stacktrace``). Attributes are looked up on
the span, then on its resource. Each event's id is made of the trace id,
the span id and what happened, so a batch sent again is stored once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from msgspec.structs import replace

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from flowsight.config.otlp import MAPPINGS
from flowsight.errors import EventError
from flowsight.model.runs.events import Event, EventKind, WireEvent, check_attrs, finish_wire
from flowsight.model.runs.ids import fact_id_at

K = EventKind
SOURCE = "otlp"
#: the workflow of a trace whose resource names no service
UNKNOWN_SERVICE = "unknown_service"
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


def attrs_of(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in kvs}


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


def map_request(req: ExportTraceServiceRequest, services: Mapping[str, str] | None = None) -> Mapped:
    """Each span of ``req`` as events (or refused, with the reason);
    ``services``: a service's rule (one of :data:`MAPPINGS`) where it is not ``auto``."""
    out = Mapped()
    events = out.events
    for ri, rs in enumerate(req.resource_spans):
        resource = attrs_of(rs.resource.attributes)
        mapping = (services or {}).get(str(resource.get("service.name") or UNKNOWN_SERVICE), "auto")
        for si, ss in enumerate(rs.scope_spans):
            scope = ss.scope.name
            for pi, span in enumerate(ss.spans):
                out.spans += 1
                try:
                    span_events(span, resource, scope, mapping, events)
                except EventError as exc:
                    out.refused.append(SpanError(f"resource_spans[{ri}].scope_spans[{si}].spans[{pi}]", str(exc)))
    return out


#: what an OTLP/JSON id that is not hex is read as (a length no id has): refused by name, not taken as empty
NOT_HEX = b"\x00not hex\x00"


def id_problem(name: str, value: bytes, size: int, *, empty: bool) -> str | None:
    """What is wrong with the id ``name`` (``size`` bytes; ``empty``: it may be absent), or None."""
    if value == NOT_HEX:
        return f"{name} is not hex (OTLP/JSON writes ids as hex digits, not base64)"
    if (empty and not value) or (len(value) == size and any(value)):
        return None
    hint = f" ({2 * size} hex digits in OTLP/JSON)"
    if empty:
        return f"{name} must be {size} bytes or empty{hint}, got {len(value)} bytes"
    return f"{name} must be {size} bytes, not all zero{hint}, got {len(value)} bytes"


def _check(span: Span) -> None:
    trace, sid, parent = span.trace_id, span.span_id, span.parent_span_id
    ids_fine = (
        len(trace) == 16
        and len(sid) == 8
        and any(trace)
        and any(sid)
        and (not parent or len(parent) == 8 and any(parent))
    )
    for name, value, size, empty in (
        (
            ("trace_id", span.trace_id, 16, False),
            ("span_id", span.span_id, 8, False),
            ("parent_span_id", span.parent_span_id, 8, True),
        )
        if not ids_fine
        else ()
    ):
        problem = id_problem(name, value, size, empty=empty)
        if problem is not None:
            raise EventError(problem)
    if not span.start_time_unix_nano:
        raise EventError("start_time_unix_nano is missing")
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        raise EventError("end_time_unix_nano is before start_time_unix_nano")
    if not span.name:
        raise EventError("name is empty")


# outcomes a rule can read from a span's attributes (None: the span's status says)
COMPLETED, FAILED, CANCELLED, SKIPPED, RETRYING = "completed", "failed", "cancelled", "skipped", "retrying"
_CICD_OUTCOME = {
    "success": COMPLETED,
    "failure": FAILED,
    "error": FAILED,
    "timeout": FAILED,
    "cancellation": CANCELLED,
    "skip": SKIPPED,
}
_AIRFLOW_OUTCOME = {
    "success": COMPLETED,
    "failed": FAILED,
    "upstream_failed": FAILED,
    "up_for_retry": RETRYING,
    "up_for_reschedule": RETRYING,
    "skipped": SKIPPED,
    "removed": CANCELLED,
}
_PREFECT_OUTCOME = {"COMPLETED": COMPLETED, "FAILED": FAILED, "CRASHED": FAILED, "CANCELLED": CANCELLED}


class Role(NamedTuple):
    """What a span is to flowsight: the run (``step`` None) or a step of it."""

    workflow: str
    run_id: str
    step: str | None
    outcome: str | None = None  # read from the span's attributes or events; None: its status decides
    attempt: int = 0  # told apart in the events' ids where an engine reuses a span id for each try


class Spans:
    """What the rules read of one span: its attributes (the span's, then its resource's), its scope."""

    __slots__ = ("span", "attrs", "resource", "scope", "trace", "service")

    def __init__(
        self, span: Span, attrs: Mapping[str, Any], resource: Mapping[str, Any], scope: str, trace: str
    ) -> None:
        self.span = span
        self.attrs = attrs
        self.resource = resource
        self.scope = scope
        self.trace = trace
        service = resource.get("service.name")  # a resource's: what [otlp.services.NAME] is looked up by too
        self.service = str(service) if service else UNKNOWN_SERVICE

    def get(self, key: str) -> Any:
        return self.attrs.get(key, self.resource.get(key))


#: a span its rule recognises as neither a run nor a step (passed over)
PASS = Role("", "", None)


def _cicd(s: Spans) -> Role | None:
    task, run, pipeline = s.get("cicd.pipeline.task.name"), s.get("cicd.pipeline.run.id"), s.get("cicd.pipeline.name")
    if task is not None or s.get("cicd.pipeline.task.run.id") is not None:
        outcome = _CICD_OUTCOME.get(str(s.get("cicd.pipeline.task.run.result")).lower())
        return Role(str(pipeline or s.service), str(run or s.trace), str(task or s.span.name), outcome)
    if run is None and pipeline is None:
        return None
    own = s.attrs.keys() & {"cicd.pipeline.result", "cicd.pipeline.run.id", "cicd.pipeline.name"}
    if s.span.parent_span_id and not own and not _remote_parent(s.span):
        return PASS  # a span below the pipeline's that is no task of it (an HTTP call, say)
    outcome = _CICD_OUTCOME.get(str(s.get("cicd.pipeline.result")).lower())
    return Role(str(pipeline or s.service), str(run or s.trace), None, outcome)


def _airflow(s: Spans) -> Role | None:
    a, name = s.attrs, s.span.name
    dag = a.get("airflow.dag_id")
    if dag is not None:  # Airflow 3
        airflow_run = a.get("airflow.dag_run.run_id")
        run_id = f"{dag}:{airflow_run}" if airflow_run else s.trace
        task = a.get("airflow.task_id")
        if task is None and name.startswith("dag_run."):
            return Role(str(dag), run_id, None, _AIRFLOW_OUTCOME.get(str(a.get("airflow.dag_run.state"))))
        if task is not None and name.startswith("task_run."):
            index = _int(a.get("airflow.task_instance.map_index"), -1)
            step = f"{task}[{index}]" if index >= 0 else str(task)
            outcome = _AIRFLOW_OUTCOME.get(str(a.get("airflow.task_instance.state")))
            return Role(str(dag), run_id, step, outcome, _int(a.get("airflow.task_instance.try_number")))
        return PASS
    if s.scope == "dagrun" and "dag_id" in a and "run_id" in a:  # Airflow 2
        return Role(str(a["dag_id"]), s.trace, None, _AIRFLOW_OUTCOME.get(str(a.get("state"))))
    if s.scope == "taskinstance" and "dag_id" in a and "task_id" in a:
        outcome = _AIRFLOW_OUTCOME.get(str(a.get("state")))
        if outcome is None and str(a.get("error")).lower() == "true":
            outcome = FAILED
        return Role(str(a["dag_id"]), s.trace, str(a["task_id"]), outcome, _int(a.get("try_number")))
    return None


def _prefect(s: Spans) -> Role | None:
    kind = s.attrs.get("prefect.run.type")
    if kind not in ("flow", "task"):
        return None
    outcome = None
    for ev in s.span.events:  # each state the run entered; the last one says how it ended
        state = attrs_of(ev.attributes).get("prefect.state.type")
        if state is not None:
            outcome = _PREFECT_OUTCOME.get(str(state), outcome if state != "RUNNING" else None)
    step = None if kind == "flow" and not s.span.parent_span_id else s.span.name
    return Role(s.service, s.trace, step, outcome)


def _generic(s: Spans) -> Role:
    return Role(s.service, s.trace, s.span.name if s.span.parent_span_id else None)


def _int(v: Any, default: int = 0) -> int:
    """A whole number as OpenTelemetry attributes carry one (an int, or its digits as text); else ``default``."""
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return default


_REMOTE = 0x100 | 0x200  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE | SPAN_FLAGS_CONTEXT_IS_REMOTE


def _remote_parent(span: Span) -> bool:
    """Whether the span's parent is in another process (a context propagated to it: TRACEPARENT)."""
    return span.flags & _REMOTE == _REMOTE


assert set(MAPPINGS) == {"auto", "ignore", "cicd", "airflow", "prefect", "generic"}
_RULES = {"cicd": _cicd, "airflow": _airflow, "prefect": _prefect, "generic": _generic}


def role_of(s: Spans, mapping: str = "auto") -> Role | None:
    """Which run the span belongs to, and whether it is that run or a step of
    it; None: the span is passed over (the service's rule does not map it)."""
    if mapping == "auto":
        for rule in (_cicd, _airflow, _prefect):
            role = rule(s)
            if role is not None:
                return None if role is PASS else role
        return _generic(s)
    if mapping == "ignore":
        return None
    role = _RULES[mapping](s)
    return None if role is PASS else role


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


def span_events(span: Span, resource: Mapping[str, Any], scope: str, mapping: str, into: list[Event]) -> None:
    """The events of one span, added to ``into``: its start and, where it has
    ended, its end (none for a span its service's rule passes over).

    Raises:
        EventError: the span is malformed, or makes an event that is (nothing added).
    """
    _check(span)
    trace = span.trace_id.hex()
    role = role_of(Spans(span, attrs_of(span.attributes), resource, scope, trace), mapping)
    if role is None:
        return
    sid = span.span_id.hex()
    start, end = span.start_time_unix_nano * _NANO, span.end_time_unix_nano * _NANO
    outcome = role.outcome
    if outcome is None:
        outcome = FAILED if span.status.code == Status.STATUS_CODE_ERROR else COMPLETED
    failed = outcome == FAILED or outcome == RETRYING
    error, tb = _error(span) if failed or outcome == CANCELLED else (None, None)
    key = (trace, sid, role.attempt) if role.attempt else (trace, sid)
    base = fact_id_at(span.start_time_unix_nano, SOURCE, *key)
    workflow, run_id, step = role.workflow, role.run_id, role.step
    ids = {"otel.trace_id": trace, "otel.span_id": sid}
    # the first event checked by finish_wire, as an event sent to /api/v1/events is; its attributes
    # are the span's ids (hex made here) and, on a run's, the span's name: that one checked here
    first = K.STARTED if step is None else K.STEP_STARTED
    wire = WireEvent(id=f"{base}-{first._value_}", ts=start, kind=first, workflow=workflow, run_id=run_id)
    wire.step = step
    opened = finish_wire(wire)
    if step is None:
        first_attrs = {**ids, "otel.span": span.name}
        check_attrs(first_attrs)
    else:
        first_attrs = ids
    opened = replace(opened, attrs=first_attrs)
    if not end:
        into.append(opened)
        return
    extra: dict[str, Any]
    if step is None:
        if outcome == CANCELLED:
            kind, extra = K.CANCELLED, {"reason": error or "cancelled"}
        elif failed:
            kind, extra = K.FAILED, {"error": error or "failed"}
        else:
            kind, extra = K.COMPLETED, {}
    elif failed or outcome == CANCELLED:
        kind, extra = K.STEP_FAILED, {"error": error or outcome}
        if tb:
            extra["traceback"] = tb
        if outcome == RETRYING:
            extra["retrying"] = True
    else:
        kind, extra = K.STEP_COMPLETED, {"skipped": True, "reason": "skipped"} if outcome == SKIPPED else {}
    if extra:  # its names were checked with the first; its own texts (an error, a traceback) here
        check_attrs(extra)
    into.append(opened)
    into.append(Event(id=f"{base}-{kind._value_}", ts=end, kind=kind, workflow=workflow, run_id=run_id, step=step,
                      attrs={**ids, **extra}))  # fmt: skip
