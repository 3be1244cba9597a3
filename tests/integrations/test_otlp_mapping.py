"""Spans as runs and steps (flowsight.integrations.otlp), made by OpenTelemetry's
own SDK with the names and attributes Airflow 3, Airflow 2 and Prefect give
their spans, encoded as the OTLP exporter encodes them, mapped, and written
to a real store (both backends)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, Status, StatusCode

from flowsight.config.schema import parse_config
from flowsight.integrations.otlp import map_request
from flowsight.store import SqlStore

Tracer = Callable[[str], Any]


@pytest.fixture
def spans() -> Iterator[tuple[Callable[[str, str], Any], Callable[..., list[Any]]]]:
    """``tracer(service, scope)``, and ``mapped(store, services)``: what they made, mapped and stored."""
    exporter = InMemorySpanExporter()
    providers: dict[str, TracerProvider] = {}

    def tracer(service: str, scope: str = "app", **resource: str) -> Any:
        if service not in providers:
            providers[service] = TracerProvider(resource=Resource.create({"service.name": service, **resource}))
            providers[service].add_span_processor(SimpleSpanProcessor(exporter))
        return providers[service].get_tracer(scope)

    def mapped(store: SqlStore, services: dict[str, str] | None = None) -> list[Any]:
        out = map_request(encode_spans(exporter.get_finished_spans()), services)
        assert out.refused == []
        store.runs.write_events(sorted(out.events, key=lambda ev: ev.ts))
        return store.runs.list_runs().runs

    yield tracer, mapped
    for p in providers.values():
        p.shutdown()


def steps(store: SqlStore, run_id: str) -> list[tuple[str, int, str]]:
    return [(s.step, s.attempt, s.status) for s in store.runs.run_steps(run_id)]


def task(t: Any, name: str, attrs: dict[str, Any], status: StatusCode = StatusCode.UNSET) -> None:
    with t.start_as_current_span(name, attributes=attrs) as span:
        if status is not StatusCode.UNSET:
            span.set_status(Status(status))


def test_airflow_3s_dag_run_and_task_run_spans_are_its_run_and_steps(spans: Any, store: SqlStore) -> None:
    tracer, mapped = spans
    t = tracer("airflow")
    run = {"airflow.dag_id": "nightly", "airflow.dag_run.run_id": "scheduled__2026-12-07T00:00:00+00:00"}

    def ti(task_id: str, state: str, *, index: int = -1, tries: int = 1, status: StatusCode = StatusCode.OK) -> None:
        attrs = {**run, "airflow.task_id": task_id, "airflow.task_instance.map_index": index}
        attrs |= {"airflow.task_instance.state": state, "airflow.task_instance.try_number": tries}
        name = f"task_run.{task_id}" + (f"[{index}]" if index >= 0 else "")
        with t.start_as_current_span(name, attributes=attrs) as span:
            span.set_status(Status(status))
            with t.start_as_current_span(f"worker.{task_id}", attributes={**run, "airflow.task_id": task_id}):
                pass  # the worker's span: passed over

    with t.start_as_current_span("dag_run.nightly", attributes=run) as dag_run:
        ti("extract", "success")
        ti("transform", "up_for_retry", status=StatusCode.ERROR)
        ti("transform", "success", tries=2)
        ti("load", "success", index=0)
        ti("load", "skipped", index=1, status=StatusCode.ERROR)  # Airflow 3: ERROR for anything but success
        dag_run.set_status(Status(StatusCode.OK))
    [got] = mapped(store)
    rid = "nightly:scheduled__2026-12-07T00:00:00+00:00"  # the listener plugin's run id too
    assert (got.workflow_id, got.workflow, got.state.value) == (rid, "nightly", "completed")
    assert steps(store, rid) == [
        ("extract", 1, "completed"),
        ("transform", 1, "failed"),
        ("transform", 2, "completed"),
        ("load[0]", 1, "completed"),
        ("load[1]", 1, "completed"),
    ]


def test_airflow_2s_spans_under_the_airflow_mapping_its_scheduler_loop_passed_over(spans: Any, store: SqlStore) -> None:
    tracer, mapped = spans
    with tracer("Airflow", "SchedulerJobRunner").start_as_current_span("scheduler_job_loop"):
        pass  # a trace of its own, every loop of the scheduler
    run = {"category": "DAG runs", "dag_id": "nightly", "run_id": "manual__1", "state": "failed"}
    with tracer("Airflow", "dagrun").start_as_current_span("nightly", attributes=run) as root:
        trace = format(root.get_span_context().trace_id, "032x")
        ti = tracer("Airflow", "taskinstance")
        common = {"category": "scheduler", "dag_id": "nightly", "try_number": 1}
        task(ti, "extract", {**common, "task_id": "extract", "state": "success"})
        task(ti, "load", {**common, "task_id": "load", "state": "failed", "error": True})
    services = parse_config('[otlp.services.Airflow]\nmapping = "airflow"\n').otlp_services
    [got] = mapped(store, services)
    assert (got.workflow_id, got.workflow, got.state.value) == (trace, "nightly", "failed")
    assert steps(store, trace) == [("extract", 1, "completed"), ("load", 1, "failed")]


def test_without_a_mapping_a_plain_trace_of_airflow_2s_loop_is_a_run_of_its_own(spans: Any, store: SqlStore) -> None:
    tracer, mapped = spans
    with tracer("Airflow", "SchedulerJobRunner").start_as_current_span("scheduler_job_loop"):
        pass
    [got] = mapped(store)
    assert got.workflow == "Airflow"
    assert mapped(store, {"Airflow": "ignore"}) == [got]  # the same spans, ignored: nothing new


def test_prefects_flow_and_task_run_spans_their_outcome_the_last_state_they_name(spans: Any, store: SqlStore) -> None:
    tracer, mapped = spans
    t = tracer("nightly-flows", "prefect")

    def states(span: Span, *types: str) -> None:
        for kind in types:
            span.add_event(kind.title(), {"prefect.state.type": kind, "prefect.state.name": kind.title()})

    with t.start_as_current_span("olive-cobra", attributes={"prefect.run.type": "flow"}) as flow:
        trace = format(flow.get_span_context().trace_id, "032x")
        states(flow, "PENDING", "RUNNING")
        with t.start_as_current_span("extract-1a2", attributes={"prefect.run.type": "task"}) as s:
            states(s, "RUNNING", "COMPLETED")
        with t.start_as_current_span("transform-3b4", attributes={"prefect.run.type": "task"}) as s:
            states(s, "RUNNING", "SCHEDULED", "RUNNING")
            try:
                raise ValueError("bad row 3")
            except ValueError as exc:
                s.record_exception(exc)
            states(s, "FAILED")
            s.set_status(Status(StatusCode.ERROR, "bad row 3"))
        states(flow, "FAILED")  # the flow returned a failed state: its span's status stays OK
    [got] = mapped(store)
    assert (got.workflow_id, got.workflow, got.state.value) == (trace, "nightly-flows", "failed")
    [ok, failed] = store.runs.run_steps(trace)
    assert (ok.step, ok.status, failed.step, failed.status) == ("extract-1a2", "completed", "transform-3b4", "failed")
    assert failed.error == "ValueError: bad row 3"


def test_a_service_held_to_the_cicd_rule_passes_over_its_other_spans(spans: Any, store: SqlStore) -> None:
    tracer, mapped = spans
    # the pipeline and its run on the resource, as the conventions have them; the result on the run's span
    t = tracer("ci", **{"cicd.pipeline.name": "deploy", "cicd.pipeline.run.id": "77"})
    with t.start_as_current_span("RUN deploy", attributes={"cicd.pipeline.result": "cancellation"}):
        task(t, "tests", {"cicd.pipeline.task.name": "tests", "cicd.pipeline.task.run.result": "skip"})
        with t.start_as_current_span("GET /artifacts"):  # an HTTP client's span: passed over
            pass
    [got] = mapped(store, {"ci": "cicd"})
    assert (got.workflow_id, got.workflow, got.state.value) == ("77", "deploy", "cancelled")
    assert steps(store, "77") == [("tests", 1, "completed")]


def test_a_pipeline_span_whose_parent_is_in_another_process_is_the_run(spans: Any, store: SqlStore) -> None:
    """A CI job started with a TRACEPARENT: its pipeline span has a remote parent and the pipeline's
    attributes only on its resource."""
    from opentelemetry import trace as api
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    tracer, mapped = spans
    t = tracer("ci", **{"cicd.pipeline.name": "release", "cicd.pipeline.run.id": "9"})
    remote = SpanContext(0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174, True, TraceFlags(1))
    with t.start_as_current_span("RUN release", context=api.set_span_in_context(NonRecordingSpan(remote))):
        task(t, "build", {"cicd.pipeline.task.name": "build"})
    [got] = mapped(store)
    assert (got.workflow_id, got.workflow, got.state.value) == ("9", "release", "completed")


def test_airflow_3_attributes_given_as_text_are_read_as_numbers(spans: Any, store: SqlStore) -> None:
    tracer, mapped = spans
    t = tracer("airflow")
    run = {"airflow.dag_id": "d", "airflow.dag_run.run_id": "r"}
    ti = {**run, "airflow.task_id": "load", "airflow.task_instance.state": "success"}
    with t.start_as_current_span("dag_run.d", attributes=run):
        task(
            t,
            "task_run.load[0]",
            {**ti, "airflow.task_instance.map_index": "0", "airflow.task_instance.try_number": "1"},
        )
        task(
            t,
            "task_run.load[1]",
            {**ti, "airflow.task_instance.map_index": "1", "airflow.task_instance.try_number": "1"},
        )
    mapped(store)
    assert steps(store, "d:r") == [("load[0]", 1, "completed"), ("load[1]", 1, "completed")]
