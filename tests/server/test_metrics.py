"""``/metrics`` from a real server: the families and values it promises, the
exposition format as ``promtool`` checks it, and a real Prometheus scraping it."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import Server, event, free_port, need_binary, post

T0 = 1_700_000_000.0


def traffic(c: httpx.Client) -> int:
    """A completed run (steps of 10 s and 20 s, 30 s in all), a failed one, a
    duplicate and a rejected event; returns the events accepted."""
    out = post(
        c,
        [
            event("started", "etl", "ok", ts=T0, id="m1", total_steps=2),
            event("step_started", "etl", "ok", "extract", ts=T0, id="m2"),
            event("step_completed", "etl", "ok", "extract", ts=T0 + 10, id="m3"),
            event("step_started", "etl", "ok", 'we"ird step\\', ts=T0 + 10, id="m4"),  # escaped in the labels
            event("step_completed", "etl", "ok", 'we"ird step\\', ts=T0 + 30, id="m5"),
            event("completed", "etl", "ok", ts=T0 + 30, id="m6"),
            event("started", "report", "bad", ts=T0, id="m7"),
            event("failed", "report", "bad", ts=T0 + 2, id="m8", error="boom"),
            event("started", "report", "live", ts=T0 + 5, id="m9"),
            event("started", "etl", "ok", ts=T0, id="m1"),  # duplicate
            {"kind": "started"},  # rejected
        ],
    )
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (9, 1, 1)
    return 9


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(ss: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return ss[(name, tuple(sorted(labels.items())))]


def test_metrics_show_runs_events_durations_writes_and_subscribers(server: Server) -> None:
    c = server.client()
    traffic(c)
    with httpx.Client(base_url=server.url, timeout=10) as sc, sc.stream("GET", "/api/v1/stream") as stream:
        lines = stream.iter_lines()  # kept: a dropped iterator closes the response
        assert next(lines) == "retry: 2000"  # subscribed
        r = c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        ss = samples(r.text)
        assert value(ss, "flowsight_stream_subscribers") == 1
    assert value(ss, "flowsight_runs", workflow="etl", state="completed") == 1
    assert value(ss, "flowsight_runs", workflow="report", state="failed") == 1
    assert value(ss, "flowsight_runs", workflow="report", state="running") == 1
    assert value(ss, "flowsight_events_total", outcome="accepted") == 9
    assert value(ss, "flowsight_events_total", outcome="duplicate") == 1
    assert value(ss, "flowsight_events_total", outcome="rejected") == 1
    step = {"workflow": "etl", "step": "extract"}
    assert value(ss, "flowsight_step_duration_seconds_count", **step) == 1
    assert value(ss, "flowsight_step_duration_seconds_sum", **step) == pytest.approx(10)
    assert value(ss, "flowsight_step_duration_seconds_bucket", **step, le="5") == 0
    assert value(ss, "flowsight_step_duration_seconds_bucket", **step, le="15") == 1
    assert value(ss, "flowsight_step_duration_seconds_sum", workflow="etl", step='we"ird step\\') == pytest.approx(20)
    assert value(ss, "flowsight_run_duration_seconds_sum", workflow="etl", state="completed") == pytest.approx(30)
    assert value(ss, "flowsight_run_duration_seconds_count", workflow="report", state="failed") == 1
    assert value(ss, "flowsight_store_write_seconds_count") >= 1
    writes = value(ss, "flowsight_store_write_seconds_count")
    assert value(ss, "flowsight_store_write_seconds_bucket", le="+Inf") == writes
    assert value(ss, "flowsight_stream_dropped_total") == 0
    assert [value(ss, "flowsight_stream_disconnects_total", reason=r) for r in ("client", "slow", "shutdown")] == [
        0,
        0,
        0,
    ]
    deadline = time.monotonic() + 10
    while value(ss := samples(c.get("/metrics").text), "flowsight_stream_subscribers") != 0:
        assert time.monotonic() < deadline, "the stream client left, but is still counted"
        time.sleep(0.1)
    assert value(ss, "flowsight_stream_disconnects_total", reason="client") == 1


def test_metrics_speak_openmetrics_when_asked(server: Server) -> None:
    c = server.client()
    traffic(c)
    r = c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n") and 'flowsight_events_total{outcome="accepted"} 9.0' in r.text


def test_metrics_pass_promtool(server: Server) -> None:
    promtool = need_binary("promtool")
    c = server.client()
    empty = c.get("/metrics").text  # before any event: empty families are fine too
    traffic(c)
    for text in (empty, c.get("/metrics").text):
        out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_our_values(server: Server, tmp_path: Path) -> None:
    prometheus = need_binary("prometheus")
    accepted = traffic(server.client())
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: flowsight\n    scrape_interval: 1s\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.port}']\n"
    )
    port = free_port()
    prom = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        found: dict[str, float] = {}
        while time.monotonic() < deadline and found.get("accepted") != accepted:
            time.sleep(0.5)
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                rows = query(prom, "flowsight_events_total")
            except httpx.TransportError:
                continue  # not listening yet
            found = {row["metric"]["outcome"]: float(row["value"][1]) for row in rows}
        assert found == {"accepted": accepted, "duplicate": 1, "rejected": 1}, (tmp_path / "prometheus.log").read_text()
        (up,) = query(prom, 'up{job="flowsight"}')
        assert up["value"][1] == "1"
        runs = query(prom, 'flowsight_runs{workflow="etl"}')
        assert [(r["metric"]["state"], r["value"][1]) for r in runs] == [("completed", "1")]
        p = query(prom, 'histogram_quantile(0.5, flowsight_step_duration_seconds_bucket{step="extract"})')
        assert 5 < float(p[0]["value"][1]) <= 15
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
