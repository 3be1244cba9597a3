"""OTLP/HTTP ingest at ``/v1/traces`` of a real ``flowsight serve`` (both
stores), fed by OpenTelemetry's own Python SDK and exporters (protobuf and
JSON, gzip): a pipeline's span tree with the CI/CD attributes is one run with
its steps, states and errors; a plain trace is a run of its service; a batch
with a malformed span keeps the rest and says so in ``partial_success``; a
body of garbage is a 400, an unknown content type a 415; the ingest token is
required where the server asks for one."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.common.http import Compression as JsonCompression
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from tests.helpers import wait_for
from tests.server.conftest import Serve, Server, create_token

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def exporters(url: str, headers: dict[str, str] | None = None) -> dict[str, SpanExporter]:
    """OpenTelemetry's exporters, as an application would configure them (each sends gzip)."""
    return {
        "protobuf": OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers, compression=Compression.Gzip),
        "json": JsonSpanExporter(endpoint=f"{url}/v1/traces", headers=headers, compression=JsonCompression.GZIP),
    }


@pytest.fixture(params=["protobuf", "json"])
def tracer(request: pytest.FixtureRequest, server: Server) -> Iterator[Callable[[str], Any]]:
    """``tracer(service)``: a tracer of that service exporting each ended span at once to ``server``."""
    providers: list[TracerProvider] = []

    def make(service: str) -> Any:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exporters(server.url)[request.param]))
        providers.append(provider)
        return provider.get_tracer("etl")

    yield make
    for p in providers:
        p.shutdown()


def run_of(server: Server, run_id: str, token: str | None = None) -> dict[str, Any] | None:
    r = server.client(token).get(f"/api/v1/runs/{run_id}")
    return r.json() if r.status_code == 200 else None


def test_a_pipeline_span_tree_with_the_cicd_attributes_is_one_run_with_its_steps(
    tracer: Callable[[str], Any], server: Server
) -> None:
    t = tracer("ci-runner")
    pipeline = {"cicd.pipeline.name": "nightly-etl", "cicd.pipeline.run.id": "build-4711"}
    with t.start_as_current_span("pipeline", attributes=pipeline) as root:
        with t.start_as_current_span("extract", attributes={**pipeline, "cicd.pipeline.task.name": "extract"}):
            pass
        with t.start_as_current_span("load", attributes={**pipeline, "cicd.pipeline.task.name": "load"}) as load:
            try:
                raise ValueError("bad row 17")
            except ValueError as exc:
                load.record_exception(exc)
                load.set_status(SpanStatus(StatusCode.ERROR))
        root.set_attribute("cicd.pipeline.result", "failure")
    run = wait_for("the run, ended", lambda: (r := run_of(server, "build-4711")) and r["state"] != "running" and r)
    assert (run["workflow"], run["state"]) == ("nightly-etl", "failed")
    steps = {s["step"]: s for s in run["steps"]}
    assert set(steps) == {"extract", "load"}
    assert steps["extract"]["status"] == "completed"
    assert steps["load"]["status"] == "failed" and steps["load"]["error"] == "ValueError: bad row 17"
    assert "raise ValueError" in (steps["load"]["traceback"] or "")


def test_a_plain_trace_is_a_run_of_its_service_its_root_span_the_run(
    tracer: Callable[[str], Any], server: Server
) -> None:
    t = tracer("billing-batch")
    with t.start_as_current_span("monthly") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        with t.start_as_current_span("invoice"):
            time.sleep(0.01)
        with t.start_as_current_span("email"):
            pass
    run = wait_for("the run completed", lambda: (r := run_of(server, trace_id)) and r["state"] == "completed" and r)
    assert run["workflow"] == "billing-batch"
    # the root span came last (each span is sent as it ends): its start is the run's, no refused transition
    assert (
        run["start_time"] == pytest.approx(root.start_time / 1e9, abs=1e-6) and run["attrs"]["otel.span"] == "monthly"
    )
    assert [t["applied"] for t in run["transitions"]] == [True, True]
    assert [s["step"] for s in run["steps"]] == ["invoice", "email"]
    assert run["steps"][0]["duration_seconds"] >= 0.01


def _span(trace: bytes, span: bytes, name: str, parent: bytes = b"", start: int = 1_700_000_000 * 10**9) -> Span:
    return Span(
        trace_id=trace,
        span_id=span,
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 10**9,
    )


def _request(*spans: Span, service: str = "raw") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])])
    req.resource_spans[0].resource.attributes.add(key="service.name").value.string_value = service
    return req


TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def test_a_batch_with_a_malformed_span_keeps_the_rest_and_says_which_in_partial_success(server: Server) -> None:
    req = _request(
        _span(TRACE, bytes.fromhex("b7ad6b7169203331"), "root"),
        _span(TRACE, b"\x01\x02", "bad", parent=bytes.fromhex("b7ad6b7169203331")),  # a 2-byte span id
        _span(TRACE, bytes.fromhex("00f067aa0ba902b7"), "child", parent=bytes.fromhex("b7ad6b7169203331")),
    )
    body = gzip.compress(req.SerializeToString(), mtime=0)
    r = server.client().post("/v1/traces", content=body, headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_spans == 1
    assert answer.partial_success.error_message == (
        "1 of 3 spans refused: resource_spans[0].scope_spans[0].spans[1]: "
        "span_id must be 8 bytes, not all zero (16 hex digits in OTLP/JSON), got 2 bytes"
    )
    run = run_of(server, TRACE.hex())
    assert run is not None and run["state"] == "completed" and [s["step"] for s in run["steps"]] == ["child"]
    # sent again (an exporter's retry): stored once
    again = server.client().post("/v1/traces", content=body, headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert again.status_code == 200
    events = server.client().get(f"/api/v1/runs/{TRACE.hex()}/events").json()["events"]
    assert len(events) == 4


def test_otlp_json_with_hex_ids_and_a_bad_id_keeps_the_good_spans(server: Server) -> None:
    trace = "5b8efff798038103d269b633813fc60c"
    span = {"traceId": trace, "name": "root", "startTimeUnixNano": "1700000000000000000"}
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {**span, "spanId": "eee19b7ec3c1b174", "endTimeUnixNano": "1700000001000000000"},
                            {**span, "spanId": "not-hex!", "parentSpanId": "eee19b7ec3c1b174", "name": "x"},
                        ],
                        "someFieldFromTheFuture": 1,
                    }
                ],
            }
        ]
    }
    r = server.client().post("/v1/traces", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "spans[1]: span_id is not hex (OTLP/JSON writes ids as hex digits, not base64)" in partial["errorMessage"]
    run = run_of(server, trace)
    assert run is not None and (run["workflow"], run["state"]) == ("js-app", "completed")


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        (PROTOBUF, b"\xff\xff\xff garbage", 400, "not an OTLP ExportTraceServiceRequest in protobuf"),
        ({"Content-Type": "application/json"}, b"{not json", 400, "body is not JSON"),
        ({"Content-Type": "application/json"}, b"[1, 2]", 400, "must be an OTLP/JSON ExportTraceServiceRequest"),
        ({"Content-Type": "application/json"}, b'{"resourceSpans": 7}', 400, "not an OTLP/JSON"),
        ({**PROTOBUF, "Content-Encoding": "gzip"}, b"not gzip", 400, "not valid gzip"),
        ({"Content-Type": "text/plain"}, b"hello", 415, "content type 'text/plain' is not accepted"),
        ({**PROTOBUF, "Content-Encoding": "br"}, b"x", 415, "content encoding 'br' is not accepted"),
    ],
)
def test_a_body_that_does_not_decode_is_refused_with_a_status_that_says_why(
    server: Server, headers: dict[str, str], body: bytes, status: int, says: str
) -> None:
    r = server.client().post("/v1/traces", content=body, headers=headers)
    assert r.status_code == status
    if r.headers["content-type"] == "application/x-protobuf":
        message = Status.FromString(r.content).message
    else:
        message = r.json()["message"]
    assert says in message
    assert server.client().get("/api/v1/runs").json()["runs"] == []  # nothing half-stored
    assert server.proc.poll() is None


def test_the_ingest_token_is_required_where_the_server_asks_for_one(serve: Serve, store_url: str) -> None:
    token, reader = create_token(store_url, "ingest", "otel"), create_token(store_url, "read", "viewer")
    server = serve()  # a token in the store: the API is closed
    span = _span(TRACE, bytes.fromhex("b7ad6b7169203331"), "root")
    body = _request(span).SerializeToString()
    for path in ("/v1/traces", "/v1/logs"):  # refused with a Status, as every OTLP error
        r = server.client().post(path, content=body, headers=PROTOBUF)
        assert r.status_code == 401 and "missing token" in Status.FromString(r.content).message
        r = server.client("not-a-token").post(path, json={}, headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and r.json()["message"] == "unknown or revoked token"
        r = server.client(reader).post(path, content=b"", headers=PROTOBUF)
        assert r.status_code == 403 and "needs 'ingest'" in Status.FromString(r.content).message
    exporter = exporters(server.url, {"Authorization": f"Bearer {token}"})["protobuf"]
    provider = TracerProvider(resource=Resource.create({"service.name": "secured"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("job") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    assert wait_for("the run", lambda: run_of(server, trace_id, reader))["workflow"] == "secured"


def test_a_method_other_than_post_is_a_405_with_a_status(server: Server) -> None:
    for path in ("/v1/traces", "/v1/logs"):
        r = server.client().get(path)
        assert (r.status_code, r.headers["allow"]) == (405, "POST")
        assert r.json()["message"] == f"method GET is not allowed on {path!r}: OTLP/HTTP is POST"
        r = server.client().put(path, content=b"", headers=PROTOBUF)
        assert r.status_code == 405 and "OTLP/HTTP is POST" in Status.FromString(r.content).message
    r = server.client().delete("/api/v1/events")  # the API's own 405 stays its JSON error
    assert r.status_code == 405 and r.json()["error"] == "method DELETE is not allowed on '/api/v1/events'"


def test_json_answers_are_otlp_json(server: Server) -> None:
    """An OTLP/JSON request gets OTLP/JSON back: an empty partial success is no field at all."""
    body = json.loads(json.dumps({"resourceSpans": []}))
    r = server.client().post("/v1/traces", json=body)
    assert (r.status_code, r.json()) == (200, {})
    assert httpx.Headers(r.headers)["content-type"] == "application/json"


def test_protobuf_labelled_json_is_read_as_protobuf(server: Server) -> None:
    """Airflow 2's exporter sends protobuf with ``Content-Type: application/json``."""
    body = _request(_span(TRACE, bytes.fromhex("b7ad6b7169203331"), "nightly"), service="Airflow").SerializeToString()
    r = server.client().post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    run = run_of(server, TRACE.hex())
    assert run is not None and run["workflow"] == "Airflow"


def test_otlp_json_may_begin_with_white_space(server: Server) -> None:
    """A newline before the object is JSON still, not protobuf labelled JSON."""
    trace = "6b8efff798038103d269b633813fc60c"
    span = {"traceId": trace, "spanId": "eee19b7ec3c1b174", "name": "root", "startTimeUnixNano": "1700000000000000000"}
    body = b"\n " + json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    r = server.client().post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.headers["content-type"]) == (200, "application/json"), r.text
    assert run_of(server, trace) is not None
