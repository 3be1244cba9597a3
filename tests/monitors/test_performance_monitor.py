"""The performance monitor with injected time and samples: thresholds per
run, host and workflow (``for``, hysteresis, a run that ends), baselines on
durations (from what it observed, and from the store after a restart), and
collect_metrics for each scope."""

from __future__ import annotations

import random

import pytest

from flowsight.model.alerts import Alert, AlertStatus, Severity
from flowsight.model.runs.events import make_event
from flowsight.model.performance import ResourceUsage, Scope, ScopeKind
from flowsight.model.performance.thresholds import Baseline, Direction, Threshold
from flowsight.monitors.performance import PerformanceMonitor
from flowsight.store.sql import SqlStore


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def usage(cpu: float = 1.0, rss: int = 50 << 20, write: float = 0.0) -> ResourceUsage:
    return ResourceUsage(ts=0.0, cpu_percent=cpu, memory_bytes=rss, disk_write_bytes_per_s=write)


def said(alerts: list[Alert]) -> list[tuple[str, str, str]]:
    out = [
        (
            a.labels["alertname"],
            a.status.value,
            a.labels.get("run_id") or a.labels.get("workflow") or a.labels.get("host", ""),
        )
        for a in alerts
    ]
    alerts.clear()
    return out


def monitor(
    *rules: Threshold, baselines: tuple[Baseline, ...] = (), store: SqlStore | None = None
) -> tuple[PerformanceMonitor, Clock, list[Alert]]:
    clock, alerts = Clock(), []
    mon = PerformanceMonitor(
        None,
        {r.name: r for r in rules},
        baselines=baselines,
        alert_manager=alerts.append,
        store=store,
        hostname="web-1",
        clock=clock,
    )
    return mon, clock, alerts


def test_a_run_over_its_cpu_threshold_for_long_enough_fires_once_and_resolves_past_the_line() -> None:
    rule = Threshold("HighCPU", "cpu_percent", ScopeKind.RUN, 90.0, for_=10.0, resolve=80.0, workflow="etl")
    mon, clock, alerts = monitor(rule)
    wf = {"r-1": "etl", "r-2": "etl", "x-1": "report"}
    for t, cpu in ((0, 95.0), (5, 99.0), (10, 97.0), (15, 85.0), (20, 91.0), (25, 79.0)):
        clock.now = 10_000.0 + t
        mon.take(usage(), {"r-1": usage(cpu), "r-2": usage(10.0), "x-1": usage(200.0)}, workflows=wf)
        if t == 10:
            [a] = alerts
            assert a.annotations["summary"] == "cpu_percent of run r-1 of etl is 97.0%, over 90.0% for 10.0s"
            assert a.labels == {
                "alertname": "HighCPU",
                "metric": "cpu_percent",
                "severity": "warning",
                "run_id": "r-1",
                "workflow": "etl",
                "host": "web-1",
            }
    assert said(alerts) == [("HighCPU", "firing", "r-1"), ("HighCPU", "resolved", "r-1")]  # x-1 is not etl's


def test_a_run_that_ends_while_firing_resolves() -> None:
    rule = Threshold("BigRSS", "memory_bytes", ScopeKind.RUN, 150 * 2**20)
    mon, clock, alerts = monitor(rule)
    mon.take(usage(), {"r-1": usage(rss=200 << 20)})
    clock.now += 5
    mon.take(usage(), {})
    assert said(alerts) == [("BigRSS", "firing", "r-1"), ("BigRSS", "resolved", "r-1")]
    assert mon.states == {}


def test_host_and_workflow_thresholds() -> None:
    host = Threshold("HostCPU", "cpu_percent", ScopeKind.HOST, 80.0)
    starved = Threshold("Starved", "steps_per_s", ScopeKind.WORKFLOW, 0.5, Direction.BELOW, for_=60.0, resolve=1.0)
    mon, clock, alerts = monitor(host, starved)
    for i in range(120):  # two steps a second for two minutes
        clock.now = 10_000.0 + i
        mon.observe([("etl", "load", 1.0), ("etl", "load", 1.0)])
    mon.take(usage(cpu=85.0), {})
    assert said(alerts) == [("HostCPU", "firing", "web-1")]
    clock.now += 61  # then nothing for a minute: 0 steps/s ...
    mon.take(usage(cpu=10.0), {})
    clock.now += 60  # ... held for the whole `for`
    mon.take(usage(cpu=10.0), {})
    assert said(alerts) == [("HostCPU", "resolved", "web-1"), ("Starved", "firing", "etl")]


def test_a_step_far_over_its_usual_duration_fires_a_baseline_alert_with_a_sentence() -> None:
    rule = Baseline("SlowLoad", "step_duration", quantile=0.95, factor=1.5, runs=30, step="load")
    mon, clock, alerts = monitor(baselines=(rule,))
    rng = random.Random(3)
    for _ in range(30):
        mon.observe([("etl", "load", rng.gauss(250.0, 15.0)), ("etl", "extract", 900.0)])
    assert alerts == []
    mon.observe([("etl", "load", 843.0)])
    [a] = alerts
    assert a.labels == {
        "alertname": "SlowLoad",
        "workflow": "etl",
        "metric": "step_duration",
        "severity": "warning",
        "step": "load",
    }
    assert a.annotations["summary"].startswith("step 'load' of etl took 14m 03s; p95 of the last 30 runs is 4m ")
    assert a.source == "performance" and a.ends_at == clock.now + 3600  # about a step that ended: it expires


def test_after_a_restart_the_baseline_history_comes_from_the_store(store: SqlStore) -> None:
    events = []
    for i in range(12):
        t0 = 1_000.0 + i * 1_000
        events += [make_event("started", "etl", f"r{i}", ts=t0), make_event("completed", "etl", f"r{i}", ts=t0 + 100)]
    store.runs.write_events(events)
    mon, _, alerts = monitor(
        baselines=(Baseline("SlowRun", "run_duration", factor=2.0, runs=20, min_runs=10),), store=store
    )
    mon.observe(run_durations=[("etl", "completed", 150.0)])
    assert alerts == []
    mon.observe(run_durations=[("etl", "completed", 250.0)])
    [a] = alerts
    assert "a run of etl took 4m 10s" in a.annotations["summary"] and "last 13 runs" in a.annotations["summary"]


def test_collect_metrics_for_each_scope() -> None:
    mon, clock, _ = monitor()
    for i in range(60):
        clock.now = 10_000.0 + i
        mon.observe([("etl", "load", 2.0 + i / 100)], [("etl", "completed", 30.0)] if i % 10 == 0 else [])
    mon.take(
        ResourceUsage(0.0, 40.0, 4 << 30, 50.0, 1.0, 2.0, 3.0, 4.0),
        {"r-1": usage(60.0, 100 << 20, 5.0), "r-2": usage(20.0, 50 << 20, 1.0)},
        workflows={"r-1": "etl", "r-2": "etl"},
    )
    wf = mon.collect_metrics(Scope.workflow("etl"))
    assert wf.throughput["steps_per_s_1m"] == pytest.approx(1.0) and wf.throughput["runs_per_s_1m"] == pytest.approx(
        0.1
    )
    assert wf.latency["run"].count == 6 and wf.latency["run"].p50 == pytest.approx(30.0, rel=0.01)
    assert wf.latency["step:load"].p99 == pytest.approx(2.58, rel=0.01)
    assert wf.cpu_usage == 80.0 and wf.memory_usage == 150 << 20 and wf.disk_io == (0.0, 6.0)
    host = mon.collect_metrics(Scope.host("web-1"))
    assert host.cpu_usage == 40.0 and host.network_io == (3.0, 4.0) and "step:etl/load" in host.latency
    run = mon.collect_metrics(Scope.run("r-1"))
    assert run.cpu_usage == 60.0 and run.memory_usage == 100 << 20 and run.throughput == {}
    assert mon.collect_metrics(Scope.run("gone")).cpu_usage is None


def test_threshold_alerts_go_to_an_alert_manager_object() -> None:
    class Sink:
        def __init__(self) -> None:
            self.got: list[Alert] = []

        def send_alert(self, alert: Alert) -> None:
            self.got.append(alert)

    sink = Sink()
    mon = PerformanceMonitor(
        None, [Threshold("HostCPU", "cpu_percent", ScopeKind.HOST, 50.0, severity=Severity.ERROR)], alert_manager=sink
    )
    mon.take(usage(cpu=90.0), {})
    [a] = sink.got
    assert a.status is AlertStatus.FIRING and a.severity is Severity.ERROR
    with pytest.raises(RuntimeError, match="no metrics collector"):
        mon.sample({})
