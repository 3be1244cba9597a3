"""``[export.otlp]`` end to end: a real ``flowsight serve`` (both stores)
sends each ended run as a trace, and its log entries as log records, to a
real OTLP/HTTP receiver made of ``opentelemetry-proto`` (it decodes every
request, gzip included, as a collector would). The receiver is down while
the first runs end, and comes back: nothing is lost. The spans carry the
CI/CD attributes, the steps are the run span's children, a failure is an
ERROR status with an ``exception`` event, each log record is on its step's
span."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from flowsight.integrations.otlp import attrs_of
from tests.helpers import serving, wait_for
from tests.server.conftest import Serve, event, free_port, post


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP receiver: decodes ``/v1/traces`` and ``/v1/logs`` (protobuf, gzip) and keeps what came."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.spans: list[tuple[dict[str, Any], Any]] = []  # (resource attributes, span)
        self.logs: list[tuple[dict[str, Any], Any]] = []
        self.lock = threading.Lock()
        self.refuse = "poison"  # a request with a run whose id starts so is refused for good (400)


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert self.headers["Content-Type"] == "application/x-protobuf"
        with self.server.lock:
            if self.path == "/v1/traces":
                req = ExportTraceServiceRequest.FromString(body)
                ids = [str(a.value.string_value) for rs in req.resource_spans for ss in rs.scope_spans
                       for span in ss.spans for a in span.attributes if a.key == "cicd.pipeline.run.id"]  # fmt: skip
                if any(i.startswith(self.server.refuse) for i in ids):
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"span too big")
                    return
                for rs in req.resource_spans:
                    resource = attrs_of(rs.resource.attributes)
                    self.server.spans += [(resource, span) for ss in rs.scope_spans for span in ss.spans]
            elif self.path == "/v1/logs":
                logs = ExportLogsServiceRequest.FromString(body)
                for rl in logs.resource_logs:
                    resource = attrs_of(rl.resource.attributes)
                    self.server.logs += [(resource, rec) for sl in rl.scope_logs for rec in sl.log_records]
            else:
                self.send_response(404)
                self.end_headers()
                return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _run(client: httpx.Client, run_id: str, outcome: str) -> None:
    events = [event("started", "nightly", run_id), event("step_started", "nightly", run_id, "extract")]
    events.append(event("step_completed", "nightly", run_id, "extract"))
    events.append(event("step_started", "nightly", run_id, "load"))
    if outcome == "failed":
        events.append(event("step_failed", "nightly", run_id, "load", error="disk full", traceback="Traceback: x"))
        events.append(event("failed", "nightly", run_id, error="load failed"))
    else:
        events.append(event("step_completed", "nightly", run_id, "load"))
        events.append(event("completed", "nightly", run_id))
    post(client, events)


def _by_run(spans: list[tuple[dict[str, Any], Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for resource, span in spans:
        a = attrs_of(span.attributes)
        out.setdefault(a["cicd.pipeline.run.id"], {})[a.get("cicd.pipeline.task.name", "")] = (resource, span, a)
    return out


def test_ended_runs_reach_an_otlp_receiver_that_was_down_and_came_back(serve: Serve, tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "flowsight.toml"
    cfg.write_text(f'[export.otlp]\nendpoint = "http://127.0.0.1:{port}"\ntimeout = "1s"\ndelay = "0s"\n')
    server = serve("--config", str(cfg))
    assert f"export:    each ended run as a trace to http://127.0.0.1:{port}" in server.output()
    client = server.client()
    # the receiver is down: these runs end and wait in the outbox
    _run(client, "n-1", "completed")
    logs = [
        {"message": "read 120 rows", "run_id": "n-1", "workflow": "nightly", "step": "extract", "level": "info"},
        {"message": "row 17 has no id", "run_id": "n-1", "workflow": "nightly", "step": "load", "level": "warn"},
    ]
    assert client.post("/api/v1/logs", json=logs).status_code == 200
    _run(client, "n-2", "failed")
    wait_for(
        "a failed attempt to export",
        lambda: "receiver 'export.otlp': notification" in (out := server.output()) and "not delivered" in out,
        timeout=60,
    )
    with serving(Collector(port)) as collector:
        _run(client, "n-3", "completed")  # and one more while it is up
        runs = wait_for(
            "every run's spans",
            lambda: (
                (r := _by_run(list(collector.spans))).keys() >= {"n-1", "n-2", "n-3"}
                and all(len(r[k]) == 3 for k in ("n-1", "n-2", "n-3"))
                and r
            ),
            timeout=90,
        )
        got_logs = wait_for("the log records", lambda: len(collector.logs) >= 2 and list(collector.logs), timeout=30)
    one = runs["n-1"]
    resource, root, a = one[""]
    assert resource["service.name"] == "nightly"
    assert (root.name, a["cicd.pipeline.name"], a["cicd.pipeline.result"]) == ("nightly", "nightly", "success")
    assert not root.parent_span_id and root.status.code == Status.STATUS_CODE_OK
    for step in ("extract", "load"):
        _, span, sa = one[step]
        assert span.trace_id == root.trace_id and span.parent_span_id == root.span_id
        assert (sa["cicd.pipeline.task.run.result"], sa["flowsight.attempt"]) == ("success", 1)
        assert root.start_time_unix_nano <= span.start_time_unix_nano <= span.end_time_unix_nano
    failed = runs["n-2"]
    assert failed[""][2]["cicd.pipeline.result"] == "failure"
    assert failed[""][1].status.code == Status.STATUS_CODE_ERROR
    _, load, la = failed["load"]
    assert la["cicd.pipeline.task.run.result"] == "failure" and load.status.code == Status.STATUS_CODE_ERROR
    [exc] = [e for e in load.events if e.name == "exception"]
    assert attrs_of(exc.attributes) == {"exception.message": "disk full", "exception.stacktrace": "Traceback: x"}
    # each log record on its step's span, in the run's trace
    placed = {rec.body.string_value: (rec.trace_id, rec.span_id, rec.severity_text) for _, rec in got_logs}
    assert placed["read 120 rows"] == (root.trace_id, one["extract"][1].span_id, "INFO")
    assert placed["row 17 has no id"] == (root.trace_id, one["load"][1].span_id, "WARN")


def test_a_batch_the_receiver_refuses_for_good_fails_alone_and_the_next_runs_are_sent(
    serve: Serve, tmp_path: Path
) -> None:
    port = free_port()
    cfg = tmp_path / "flowsight.toml"
    cfg.write_text(f'[export.otlp]\nendpoint = "http://127.0.0.1:{port}"\ntimeout = "2s"\ndelay = "0s"\n')
    server = serve("--config", str(cfg))
    client = server.client()
    with serving(Collector(port)) as collector:
        _run(client, "poison-1", "completed")
        wait_for(
            "the refusal",
            lambda: "export.otlp" in (out := server.output()) and "HTTP 400: span too big" in out,
            timeout=30,
        )
        _run(client, "n-after", "completed")
        wait_for("the next run", lambda: "n-after" in _by_run(list(collector.spans)), timeout=30)
        assert "poison-1" not in _by_run(list(collector.spans))
    alerts = wait_for(
        "ReceiverBroken",
        lambda: [
            a for a in client.get("/api/v1/alerts").json()["alerts"] if a["labels"].get("receiver") == "export.otlp"
        ],
    )
    assert alerts[0]["labels"]["alertname"] == "ReceiverBroken"
