"""The performance monitor: resources per run and host, throughput and
latency per workflow and step, thresholds and baselines turned into alerts.

:meth:`PerformanceMonitor.observe` takes what the store made of a batch of
events (completed steps and runs with their durations): throughput windows
(:class:`~flowsight.model.performance.throughput.RateWindow`) and latency sketches
(:class:`~flowsight.model.performance.sketch.QuantileSketch`, bounded memory) per
workflow and step, and each duration checked against the baselines.
:meth:`PerformanceMonitor.sample` takes one resource sample of the host and
of each live run's process tree (the metrics collector's) and checks the
thresholds (:func:`~flowsight.model.performance.thresholds.evaluate_threshold`).
:meth:`PerformanceMonitor.collect_metrics` is the specification's summary of
a scope. Alerts go to the alert manager.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from flowsight.errors import StoreFullError
from flowsight.model.alerts import Alert, AlertStatus
from flowsight.model.durations import format_duration
from flowsight.model.performance import PerformanceMetrics, format_metric, Quantiles, ResourceUsage, Scope, ScopeKind
from flowsight.model.performance.sketch import QuantileSketch
from flowsight.model.performance.thresholds import (
    QUIET,
    Baseline,
    Direction,
    Threshold,
    ThresholdState,
    evaluate_baseline,
    evaluate_threshold,
)
from flowsight.model.performance.throughput import RateWindow
from flowsight.monitors.sink import Sink, send
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.performance")
K = TypeVar("K")
ALL = "*"  # every workflow together
#: a baseline alert is about a run or step that ended: it resolves by itself after this long
BASELINE_ALERT_TTL = 3600.0


class MetricsCollector(Protocol):
    """What samples resources: the host and each run's process tree (run id -> root pid)."""

    def sample(self, runs: Mapping[str, int]) -> tuple[ResourceUsage, dict[str, ResourceUsage]]: ...

    def sample_tree(self, pid: int) -> ResourceUsage | None: ...


class PerformanceMonitor:
    """The specification's ``PerformanceMonitor{metrics_collector, alert_thresholds}``.

    ``alert_thresholds``: name -> :class:`Threshold` (or a sequence of them);
    ``baselines``: duration rules against each workflow's history.
    ``alert_manager``: anything with ``send_alert(alert)``, or a callable.
    ``store``: where a workflow's history of durations is first read from
    (after a restart); None: it is built from what this monitor observes.
    ``run_workflows``: run id -> workflow, for the thresholds of a workflow's runs.
    """

    def __init__(
        self,
        metrics_collector: MetricsCollector | None = None,
        alert_thresholds: Mapping[str, Threshold] | Sequence[Threshold] = (),
        *,
        baselines: Sequence[Baseline] = (),
        alert_manager: Sink | None = None,
        store: Store | None = None,
        hostname: str = "localhost",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics_collector = metrics_collector
        rules = list(alert_thresholds.values()) if isinstance(alert_thresholds, Mapping) else list(alert_thresholds)
        self.alert_thresholds: dict[str, Threshold] = {t.name: t for t in rules}
        self.baselines = list(baselines)
        self.alert_manager = alert_manager
        self.store = store
        self.hostname = hostname
        self.clock = clock
        self.host_usage: ResourceUsage | None = None
        self.run_usage: dict[str, ResourceUsage] = {}
        self._host_metrics: dict[str, float] = {}
        self._run_metrics: dict[str, dict[str, float]] = {}
        self.run_workflows: dict[str, str] = {}
        self._steps: dict[str, RateWindow] = {}
        self._runs: dict[str, RateWindow] = {}
        self._step_latency: dict[tuple[str, str], QuantileSketch] = {}
        self._run_latency: dict[str, QuantileSketch] = {}
        self._history: dict[tuple[str, str], deque[float]] = {}  # (workflow, step or "") -> durations, newest last
        self.states: dict[tuple[str, str], ThresholdState] = {}  # (threshold, scope) -> state
        self._firing: dict[tuple[str, str], Alert] = {}
        #: run id -> the time of its latest step start or end (or its end) not yet sampled
        self._boundaries: dict[str, float] = {}
        self._boundary_wake: asyncio.Event | None = None
        self._sampled_at: dict[str, float] = {}  # run id -> its tree's latest sample's ts

    # ---- execution: throughput, latency, baselines ------------------------------------
    def observe(
        self,
        step_durations: Iterable[tuple[str, str, float]] = (),
        run_durations: Iterable[tuple[str, str, float]] = (),
        *,
        now: float | None = None,
        runs: Mapping[str, str] | None = None,
    ) -> None:
        """Completed steps ``(workflow, step, seconds)`` and ended runs
        ``(workflow, state, seconds)``, as the store reports them for a batch
        (``WriteResult.step_durations`` / ``run_durations``). ``runs``: run
        id -> workflow of the runs they belong to, named in baseline alerts
        when given (else the workflow alone is named)."""
        now = self.clock() if now is None else now
        for workflow, step, seconds in step_durations:
            for key in (workflow, ALL):
                self._window(self._steps, key).add(now)
            self._sketch(self._step_latency, (workflow, step)).add(max(0.0, seconds))
            self._check_baselines("step_duration", workflow, step, seconds, now)
        for workflow, state, seconds in run_durations:
            for key in (workflow, ALL):
                self._window(self._runs, key).add(now)
            if state == "completed":
                self._sketch(self._run_latency, workflow).add(max(0.0, seconds))
                self._check_baselines("run_duration", workflow, "", seconds, now)

    @staticmethod
    def _window(table: dict[str, RateWindow], key: str) -> RateWindow:
        w = table.get(key)
        if w is None:
            w = table[key] = RateWindow()
        return w

    @staticmethod
    def _sketch(table: dict[K, QuantileSketch], key: K) -> QuantileSketch:
        s = table.get(key)
        if s is None:
            s = table[key] = QuantileSketch()
        return s

    def _durations(self, workflow: str, step: str, keep: int, current: float) -> deque[float]:
        """The durations before ``current`` of a workflow's runs (or of one
        step), newest last. The first time, read from the store (after a
        restart the history is there); hooks run after the commit, so the
        store already holds ``current``: it is left out of what is read."""
        key = (workflow, step)
        past = self._history.get(key)
        if past is None:
            past = self._history[key] = deque(maxlen=keep)
            if self.store is not None:
                h = self.store.stats.history(workflow, keep + 1)
                seeded = list(reversed(h.step_durations.get(step, ()) if step else h.run_durations))
                if current in seeded:  # the store gives newest first: reversed, the newest is last
                    seeded.reverse()
                    seeded.remove(current)
                    seeded.reverse()
                past.extend(seeded[-keep:])
        return past

    def _check_baselines(self, metric: str, workflow: str, step: str, seconds: float, now: float) -> None:
        if not self.baselines:
            return
        rules = [
            b
            for b in self.baselines
            if b.metric == metric
            and b.workflow in (None, workflow)
            and (metric == "run_duration" or b.step in (None, step))
        ]
        if not rules:
            return
        keep = max(b.runs for b in rules)
        past = self._durations(workflow, step, keep, seconds)
        what = f"step '{step}' of {workflow}" if step else f"a run of {workflow}"
        for rule in rules:
            verdict = evaluate_baseline(rule, seconds, list(past), what=what)
            if verdict is not None and verdict.fired:
                labels = {
                    "alertname": rule.name,
                    "workflow": workflow,
                    "metric": metric,
                    "severity": rule.severity.value,
                }
                if step:
                    labels["step"] = step
                self._send(
                    Alert(
                        labels,
                        {
                            "summary": verdict.sentence,
                            "description": f"{verdict.sentence} ({verdict.history} runs of history)",
                        },
                        rule.severity,
                        "performance",
                        now,
                        now + BASELINE_ALERT_TTL,
                    )
                )
        past.append(seconds)

    # ---- resources: samples and thresholds ----------------------------------------------
    def sample(self, runs: Mapping[str, int], *, workflows: Mapping[str, str] | None = None) -> None:
        """Sample the host and each run's process tree (run id -> root pid)
        with the metrics collector, then check the thresholds."""
        if self.metrics_collector is None:
            raise RuntimeError("this performance monitor has no metrics collector")
        host, trees = self.metrics_collector.sample(runs)
        self.take(host, trees, workflows=workflows)

    def take(
        self,
        host: ResourceUsage | None,
        trees: Mapping[str, ResourceUsage],
        *,
        workflows: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> None:
        """One round of samples (from any collector): kept as the latest, and
        every threshold checked against them. A run without a sample this
        round (it ended) resolves what fired for it."""
        now = self.clock() if now is None else now
        if workflows:
            self.run_workflows.update(workflows)
        self.host_usage = host
        gone = set(self.run_usage) - set(trees)
        self.run_usage = dict(trees)
        # each sample as metric -> value, once per round (every rule and the store read them)
        self._host_metrics = {} if host is None else host.as_metrics()
        self._run_metrics = {run_id: usage.as_metrics() for run_id, usage in trees.items()}
        for rule in self.alert_thresholds.values():
            if rule.scope is ScopeKind.HOST:
                self._judge(
                    rule, Scope.host(self.hostname), None if host is None else self._host_metrics.get(rule.metric), now
                )
            elif rule.scope is ScopeKind.RUN:
                for run_id, metrics in self._run_metrics.items():
                    if rule.workflow is None or self.run_workflows.get(run_id) == rule.workflow:
                        self._judge(rule, Scope.run(run_id), metrics.get(rule.metric), now)
                for run_id in gone:
                    self._judge(rule, Scope.run(run_id), None, now)
            else:
                for workflow in self._workflows(rule):
                    self._judge(rule, Scope.workflow(workflow), self._workflow_value(rule.metric, workflow, now), now)
        for run_id in gone:
            self.run_workflows.pop(run_id, None)

    def _workflows(self, rule: Threshold) -> list[str]:
        if rule.workflow is not None:
            return [rule.workflow]
        return sorted({*self._steps, *self._runs} - {ALL})

    def _workflow_value(self, metric: str, workflow: str, now: float) -> float | None:
        if metric == "steps_per_s":
            return self._window(self._steps, workflow).rate(now, 60.0)
        if metric == "runs_per_s":
            return self._window(self._runs, workflow).rate(now, 300.0)
        if metric == "run_duration_s":
            s = self._run_latency.get(workflow)
            return None if not s else s.quantile(0.95)
        if metric == "step_duration_s":
            worst = [s.quantile(0.95) for (wf, _), s in self._step_latency.items() if wf == workflow and s]
            return max((w for w in worst if w is not None), default=None)
        # a resource metric of a workflow: the sum over its live runs
        values = [m.get(metric) for rid, m in self._run_metrics.items() if self.run_workflows.get(rid) == workflow]
        present = [v for v in values if v is not None]
        return sum(present) if present else None

    def _judge(self, rule: Threshold, scope: Scope, value: float | None, now: float) -> None:
        key = (rule.name, str(scope))
        state, change = evaluate_threshold(rule, value, self.states.get(key, QUIET), now)
        if state == QUIET:
            self.states.pop(key, None)
        else:
            self.states[key] = state
        if change == "firing" and value is not None:
            alert = self._threshold_alert(rule, scope, value, now)
            self._firing[key] = alert
            self._send(alert)
        elif change == "resolved":
            fired = self._firing.pop(key, None)
            if fired is not None:
                self._send(replace(fired, status=AlertStatus.RESOLVED, ends_at=now))

    def _threshold_alert(self, rule: Threshold, scope: Scope, value: float, now: float) -> Alert:
        labels = {"alertname": rule.name, "metric": rule.metric, "severity": rule.severity.value}
        if scope.kind is ScopeKind.HOST:
            labels["host"] = scope.id
            where = f"host {scope.id}"
        elif scope.kind is ScopeKind.RUN:
            labels["run_id"] = scope.id
            wf = self.run_workflows.get(scope.id)
            if wf:
                labels["workflow"] = wf
            where = f"run {scope.id}" + (f" of {wf}" if wf else "")
            labels["host"] = self.hostname
        else:
            labels["workflow"] = scope.id
            where = f"workflow {scope.id}"
        side = "over" if rule.direction is Direction.ABOVE else "under"
        held = f" for {format_duration(rule.for_)}" if rule.for_ else ""
        sentence = f"{rule.metric} of {where} is {format_metric(rule.metric, value)}, {side} {format_metric(rule.metric, rule.value)}{held}"
        return Alert(
            labels,
            {
                "summary": sentence,
                "description": f"{sentence}; it resolves once back at {format_metric(rule.metric, rule.resolve_at)}",
            },
            rule.severity,
            "performance",
            now,
        )

    def _send(self, alert: Alert) -> None:
        send(self.alert_manager, alert)

    def note_boundary(self, run_id: str, ts: float) -> None:
        """A step of ``run_id`` started or ended at ``ts`` (or the run
        ended): its tree is sampled at once, so each step's figures come from
        its own interval (see :meth:`monitor_performance`). Call it on the loop."""
        self._boundaries[run_id] = max(ts, self._boundaries.get(run_id, ts))
        if self._boundary_wake is not None:
            self._boundary_wake.set()

    async def monitor_performance(
        self,
        live_runs: Callable[[], Mapping[str, tuple[int, str]]],
        interval: float,
        stop: asyncio.Event,
        *,
        raw_retention: float | None = None,
        rollup_retention: float | None = None,
        run_process: Callable[[str], tuple[int, str] | None] | None = None,
    ) -> None:
        """Every ``interval`` seconds until ``stop``: sample the host and the
        process trees of ``live_runs()`` (run id -> (root pid, workflow)),
        check the thresholds, and keep the samples in the store (when there
        is one), purging those past the retentions once an hour. Sampling,
        listing and storing run in a thread (psutil and the store block); a
        failed round is logged, not fatal.

        Between rounds, a run told of with :meth:`note_boundary` whose
        process is on this host (``run_process(run_id)``: (root pid,
        workflow), or None) is sampled at once and its sample stored with the
        boundary's time: the interval it measures (since the tree's sample
        before) ends there, so a step's CPU is not counted to the next one."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        purged = 0.0
        wake = self._boundary_wake = asyncio.Event()
        while not stop.is_set():
            if loop.time() < due:  # woken between rounds by step boundaries
                wake.clear()
                try:
                    await self._sample_boundaries(run_process)
                except Exception:
                    log.exception("sampling runs at their step boundaries failed")
                await self._wait(stop, wake, due - loop.time())
                continue
            try:
                runs = await asyncio.to_thread(live_runs)
                host, trees = await asyncio.to_thread(self._sample_now, {r: p for r, (p, _) in runs.items()})
                now = self.clock()
                self._sampled_at = {r: now for r in trees}
                self.take(host, trees, workflows={r: wf for r, (_, wf) in runs.items()}, now=now)
                if self.store is not None:
                    rows = self.sample_rows(now)
                    await asyncio.to_thread(self.store.perf.save_samples, rows)
                    if raw_retention is not None and rollup_retention is not None and now - purged >= 3600:
                        purged = now
                        await asyncio.to_thread(
                            self.store.perf.purge_samples, now - raw_retention, now - rollup_retention
                        )
            except StoreFullError:
                pass  # said once per full-disk episode by the store, not once per round
            except Exception:
                log.exception("performance sampling round failed")
            due += interval
            await self._wait(stop, wake, due - loop.time())
        self._boundary_wake = None

    @staticmethod
    async def _wait(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
        """Until ``stop`` or ``wake`` is set, or ``seconds`` have passed."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waits, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _sample_boundaries(self, run_process: Callable[[str], tuple[int, str] | None] | None) -> None:
        """Sample the trees of the runs whose steps started or ended since
        the last round; store each sample at its boundary's time."""
        pending, self._boundaries = self._boundaries, {}
        if run_process is None or self.metrics_collector is None:
            return
        collector = self.metrics_collector

        def work() -> list[tuple[float, str, str, str, float]]:
            rows: list[tuple[float, str, str, str, float]] = []
            for run_id, ts in pending.items():
                if ts <= self._sampled_at.get(run_id, 0.0):
                    continue  # a round sampled it after the boundary already
                found = run_process(run_id)
                usage = collector.sample_tree(found[0]) if found is not None else None
                if usage is None:
                    continue
                self._sampled_at[run_id] = ts
                rows += [(ts, "run", run_id, k, v) for k, v in usage.as_metrics().items()]
            return rows

        rows = await asyncio.to_thread(work)
        if rows and self.store is not None:
            await asyncio.to_thread(self.store.perf.save_samples, rows)

    def sample_rows(self, now: float) -> list[tuple[float, str, str, str, float]]:
        """The latest samples as store rows ``(ts, scope kind, scope id,
        metric, value)``: the host, each run, and each workflow (its live runs summed)."""
        rows: list[tuple[float, str, str, str, float]] = []
        rows += [(now, "host", self.hostname, k, v) for k, v in self._host_metrics.items()]
        sums: dict[str, dict[str, float]] = {}
        for run_id, metrics in self._run_metrics.items():
            rows += [(now, "run", run_id, k, v) for k, v in metrics.items()]
            wf = self.run_workflows.get(run_id)
            if wf is not None:
                total = sums.setdefault(wf, {})
                for k in ("cpu_percent", "memory_bytes", "disk_read_bytes_per_s", "disk_write_bytes_per_s"):
                    if k in metrics:
                        total[k] = total.get(k, 0.0) + metrics[k]
        for wf, total in sums.items():
            rows += [(now, "workflow", wf, k, v) for k, v in total.items()]
        return rows

    def _sample_now(self, runs: Mapping[str, int]) -> tuple[ResourceUsage, dict[str, ResourceUsage]]:
        if self.metrics_collector is None:
            raise RuntimeError("this performance monitor has no metrics collector")
        return self.metrics_collector.sample(runs)

    # ---- the summary ----------------------------------------------------------------------
    def collect_metrics(self, scope: Scope) -> PerformanceMetrics:
        """The specification's summary of ``scope`` now: throughput and
        latency (a workflow, or every workflow for the host), and the last
        resource sample (a run's tree, the host, or a workflow's live runs summed)."""
        now = self.clock()
        key = scope.id if scope.kind is ScopeKind.WORKFLOW else ALL
        throughput: dict[str, float] = {}
        for name, table in (("steps", self._steps), ("runs", self._runs)):
            w = table.get(key)
            for window, rate in (w.rates(now) if w is not None else {}).items():
                throughput[f"{name}_per_s_{window}"] = rate
        latency: dict[str, Quantiles] = {}
        runs = (
            self._run_latency.get(scope.id) if scope.kind is ScopeKind.WORKFLOW else _merged(self._run_latency.values())
        )
        if runs:
            latency["run"] = _quantiles(runs)
        for (wf, step), s in self._step_latency.items():
            if scope.kind is not ScopeKind.WORKFLOW or wf == scope.id:
                latency[f"step:{step}" if scope.kind is ScopeKind.WORKFLOW else f"step:{wf}/{step}"] = _quantiles(s)
        usage: ResourceUsage | None
        if scope.kind is ScopeKind.RUN:
            usage = self.run_usage.get(scope.id)
            throughput, latency = {}, {}
        elif scope.kind is ScopeKind.HOST:
            usage = self.host_usage
        else:
            usage = None
        out = PerformanceMetrics(scope, now, throughput, latency)
        if usage is not None:
            net = None
            if usage.net_sent_bytes_per_s is not None and usage.net_recv_bytes_per_s is not None:
                net = (usage.net_sent_bytes_per_s, usage.net_recv_bytes_per_s)
            out = PerformanceMetrics(
                scope,
                now,
                throughput,
                latency,
                usage.cpu_percent,
                usage.memory_bytes,
                (usage.disk_read_bytes_per_s, usage.disk_write_bytes_per_s),
                net,
            )
        elif scope.kind is ScopeKind.WORKFLOW:
            live = [u for rid, u in self.run_usage.items() if self.run_workflows.get(rid) == scope.id]
            if live:
                out = PerformanceMetrics(
                    scope,
                    now,
                    throughput,
                    latency,
                    sum(u.cpu_percent for u in live),
                    sum(u.memory_bytes for u in live),
                    (sum(u.disk_read_bytes_per_s for u in live), sum(u.disk_write_bytes_per_s for u in live)),
                )
        return out


def _quantiles(s: QuantileSketch) -> Quantiles:
    q = s.quantiles((0.5, 0.9, 0.95, 0.99))
    return Quantiles(s.count, q.get(0.5), q.get(0.9), q.get(0.95), q.get(0.99))


def _merged(sketches: Iterable[QuantileSketch]) -> QuantileSketch | None:
    out: QuantileSketch | None = None
    for s in sketches:
        if out is None:
            out = QuantileSketch()
        out.merge(s)
    return out
