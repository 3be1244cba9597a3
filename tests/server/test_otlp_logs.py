"""OTLP/HTTP log ingest at ``/v1/logs`` of a real ``flowsight serve`` (both
stores), fed by OpenTelemetry's own Python SDK (its ``LoggingHandler`` under
the standard ``logging`` module, its OTLP HTTP exporters, protobuf and JSON,
gzip): each record lands on the run and step of the span it was written in,
whether its span came before it or after; its severity is flowsight's level;
a record in no span is kept with no run; a batch with a malformed record
keeps the rest and says which in ``partial_success``; a body of garbage is a
400; a batch sent again is stored once."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.common.http import Compression as JsonCompression
from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter as JsonLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from flowsight.store.opener import open_store
from tests.helpers import wait_for
from tests.server.conftest import Server, start_server

PROTOBUF = {"Content-Type": "application/x-protobuf"}


class Telemetry:
    """A service's tracer and a ``logging`` logger whose records go to flowsight over OTLP."""

    def __init__(self, url: str, service: str, encoding: str, logs_first: bool) -> None:
        resource = Resource.create({"service.name": service})
        self.traces = TracerProvider(resource=resource)
        self.traces.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=Compression.Gzip))
        )
        exporter = (
            OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip)
            if encoding == "protobuf"
            else JsonLogExporter(endpoint=f"{url}/v1/logs", compression=JsonCompression.GZIP)
        )
        self.logs = LoggerProvider(resource=resource)
        # each record sent as it is written (before its span ends and is sent), or all of them
        # at the end (after the spans)
        processor = (
            SimpleLogRecordProcessor(exporter)
            if logs_first
            else BatchLogRecordProcessor(exporter, schedule_delay_millis=3_600_000)
        )
        self.logs.add_log_record_processor(processor)
        self.handler = LoggingHandler(level=logging.DEBUG, logger_provider=self.logs)
        self.logger = logging.getLogger(f"etl.{service}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self.handler)
        self.tracer = self.traces.get_tracer("etl")

    def close(self) -> None:
        self.logs.force_flush()
        self.logger.removeHandler(self.handler)
        self.logs.shutdown()
        self.traces.shutdown()


@pytest.fixture(params=[("protobuf", True), ("json", False)], ids=["protobuf-logs-first", "json-spans-first"])
def telemetry(request: pytest.FixtureRequest, server: Server) -> Iterator[Telemetry]:
    encoding, logs_first = request.param
    t = Telemetry(server.url, f"etl-{encoding}", encoding, logs_first)
    yield t
    t.close()


def logs_of(server: Server, run_id: str) -> list[dict[str, Any]]:
    r = server.client().get(f"/api/v1/runs/{run_id}/logs", params={"limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["logs"])


def test_log_records_land_on_the_run_and_step_of_their_span_whichever_came_first(
    telemetry: Telemetry, server: Server, store_url: str
) -> None:
    t, log = telemetry.tracer, telemetry.logger
    run_id = f"build-{telemetry.logger.name}"
    pipeline = {"cicd.pipeline.name": "nightly-etl", "cicd.pipeline.run.id": run_id}
    with t.start_as_current_span("pipeline", attributes=pipeline) as root:
        log.info("pipeline starts")
        with t.start_as_current_span("extract", attributes={**pipeline, "cicd.pipeline.task.name": "extract"}):
            log.debug("read %d rows", 120)
        with t.start_as_current_span("load", attributes={**pipeline, "cicd.pipeline.task.name": "load"}) as load:
            log.warning("row 17 has no id")
            try:
                raise ValueError("bad row 17")
            except ValueError:
                log.exception("load failed")
            load.set_status(SpanStatus(StatusCode.ERROR))
        root.set_attribute("cicd.pipeline.result", "failure")
    log.info("outside every span")
    telemetry.logs.force_flush()
    want = {"pipeline starts", "read 120 rows", "row 17 has no id", "load failed"}
    got = wait_for(
        "the records on their steps",
        lambda: (
            (rows := {r["message"]: r for r in logs_of(server, run_id)}).keys() == want
            and all(r["step"] is not None for m, r in rows.items() if m != "pipeline starts")
            and rows
        ),
    )
    assert {m: (r["workflow"], r["step"], r["level"]) for m, r in got.items()} == {
        "pipeline starts": ("nightly-etl", None, "info"),
        "read 120 rows": ("nightly-etl", "extract", "debug"),
        "row 17 has no id": ("nightly-etl", "load", "warn"),
        "load failed": ("nightly-etl", "load", "error"),
    }
    failed = got["load failed"]
    assert failed["source"] == "otlp"
    assert failed["fields"]["exception.type"] == "ValueError"
    assert "raise ValueError" in str(failed["fields"]["exception.stacktrace"])
    assert failed["fields"]["otel.scope"] == telemetry.logger.name
    assert failed["fields"]["service.name"] == telemetry.logger.name.removeprefix("etl.")
    # the record in no span is kept, on no run
    alone = server.client().get("/api/v1/logs", params={"q": "outside every span"}).json()["logs"]
    assert [(r["run_id"], r["level"]) for r in alone] == [(None, "info")]
    with open_store(store_url) as store:
        assert store.spans.count_parked() == 0


def _record(message: str, trace: bytes = b"", span: bytes = b"", severity: int = 9, **kw: Any) -> LogRecord:
    rec = LogRecord(time_unix_nano=1_700_000_000 * 10**9, trace_id=trace, span_id=span, **kw)
    rec.severity_number = severity  # type: ignore[assignment]  # the enum's numbers are ints
    rec.body.string_value = message
    return rec


def _request(*records: LogRecord) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=list(records))])])
    req.resource_logs[0].resource.attributes.add(key="service.name").value.string_value = "raw"
    return req


def test_a_batch_with_a_malformed_record_keeps_the_rest_and_a_retry_is_stored_once(server: Server) -> None:
    req = _request(
        _record("first", severity=17),
        _record("bad trace", trace=b"\x01\x02"),
        _record("third", severity=0, severity_text="WARNING"),
        _record("fourth", severity=0, severity_text="loud"),
    )
    for _ in range(2):  # sent twice: an exporter's retry
        r = httpx.post(f"{server.url}/v1/logs", content=req.SerializeToString(), headers=PROTOBUF)
        assert r.status_code == 200
        answer = ExportLogsServiceResponse.FromString(r.content)
        assert answer.partial_success.rejected_log_records == 1
        assert answer.partial_success.error_message == (
            "1 of 4 log records refused: resource_logs[0].scope_logs[0].log_records[1]: "
            "trace_id must be 16 bytes or empty (32 hex digits in OTLP/JSON), got 2 bytes"
        )
    rows = server.client().get("/api/v1/logs", params={"limit": 100}).json()["logs"]
    kept = {r["message"]: r for r in rows if r["fields"].get("service.name") == "raw"}
    assert {m: r["level"] for m, r in kept.items()} == {"first": "error", "third": "warn", "fourth": "info"}
    assert kept["fourth"]["fields"]["otel.severity_text"] == "loud"


def test_a_body_that_does_not_decode_is_a_400_with_a_status(server: Server) -> None:
    r = httpx.post(f"{server.url}/v1/logs", content=b"\xff\xfe garbage", headers=PROTOBUF)
    assert r.status_code == 400
    assert "ExportLogsServiceRequest" in r.text
    r = httpx.post(f"{server.url}/v1/logs", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "ExportLogsServiceRequest" in r.json()["message"]


def test_more_records_than_the_server_takes_at_once_is_a_413(server: Server) -> None:
    req = _request(*(_record(f"line {i}") for i in range(10_001)))
    r = httpx.post(f"{server.url}/v1/logs", content=req.SerializeToString(), headers=PROTOBUF, timeout=30)
    assert r.status_code == 413
    assert "10001 log records in one request; the limit is 10000" in Status.FromString(r.content).message


def test_a_record_sent_again_after_its_parking_failed_still_gets_its_span(tmp_path: Path) -> None:
    """The records were stored, their parking was not (a 503): the exporter's retry finds them
    stored already, and parks them all the same, so the span that comes later places them."""
    db = tmp_path / "flowsight.db"
    server = start_server(str(db), log_dir=tmp_path)
    try:
        trace, span = bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), bytes.fromhex("b7ad6b7169203331")
        body = _request(_record("in the step", trace=trace, span=span)).SerializeToString()
        with sqlite3.connect(db) as conn:
            conn.execute(
                "CREATE TRIGGER no_parking BEFORE INSERT ON otel_pending BEGIN SELECT RAISE(ABORT, 'full'); END"
            )
        r = httpx.post(f"{server.url}/v1/logs", content=body, headers=PROTOBUF)
        assert r.status_code == 503
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TRIGGER no_parking")
        assert httpx.post(f"{server.url}/v1/logs", content=body, headers=PROTOBUF).status_code == 200
        spans = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[
            Span(trace_id=trace, span_id=span, name="load", start_time_unix_nano=1_700_000_000 * 10**9,
                 end_time_unix_nano=1_700_000_001 * 10**9, parent_span_id=bytes.fromhex("00f067aa0ba902b7")),
        ])])])  # fmt: skip
        assert httpx.post(f"{server.url}/v1/traces", content=spans.SerializeToString(), headers=PROTOBUF).is_success
        [row] = server.client().get("/api/v1/logs", params={"q": "in the step"}).json()["logs"]
        assert (row["run_id"], row["step"]) == (trace.hex(), "load")
    finally:
        assert server.stop() == 0, server.output()


def test_otlp_json_ids_that_are_not_hex_are_refused_saying_so(server: Server) -> None:
    """A base64 id (protobuf's JSON mapping, not OTLP/JSON's) is a common mistake: refused by name."""
    good = {"timeUnixNano": "1700000000000000000", "body": {"stringValue": "kept"}}
    records = [
        good,
        {**good, "body": {"stringValue": "zzz"}, "traceId": "zz" * 16},
        {**good, "body": {"stringValue": "b64"}, "traceId": "AQIDBAUGBwgJCgsMDQ4PEA=="},
        {**good, "body": {"stringValue": "span"}, "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "xyz"},
    ]
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}
    r = server.client().post("/v1/logs", json=body)
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "3"
    for i, name in ((1, "trace_id"), (2, "trace_id"), (3, "span_id")):
        assert f"log_records[{i}]: {name} is not hex" in partial["errorMessage"]
    kept = server.client().get("/api/v1/logs", params={"q": "kept"}).json()["logs"]
    assert [r["message"] for r in kept] == ["kept"]
