"""``GET /api/v1/metrics`` (what has samples), ``/api/v1/metrics/summary``
(a scope's throughput, latency and latest resources) and
``/api/v1/metrics/series`` (one metric of a scope over a time range: every
sample within the raw retention, else 1-minute rollups in ``step`` buckets).

A scope is written ``host:NAME``, ``run:RUN_ID`` or ``workflow:NAME``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from flowsight.errors import FlowsightError
from flowsight.model.runs.events import MAX_TS
from flowsight.model.performance import RESOURCE_METRICS, PerformanceMetrics, Scope, parse_scope
from flowsight.server.params import float_param, text_param, time_param
from flowsight.server import schemas as S
from flowsight.server.http import json, route
from starlette.routing import Route

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext


def _scope(request: Request) -> Scope:
    raw = text_param(request, "scope")
    try:
        return parse_scope(raw or "")
    except ValueError as exc:
        raise FlowsightError(f"query parameter 'scope': {exc}") from None


def _when(request: Request, name: str, now: float, default: float | None) -> float | None:
    """A time parameter, brought within the years a store keeps (1970 ..
    the year 10889): a bound before 1970 or after 10889 selects what the
    nearest one does."""
    value = time_param(request, name, now)
    if value is None:
        return default
    return min(max(value, 0.0), MAX_TS - 1.0)


def summary_out(m: PerformanceMetrics, latest: dict[str, tuple[float, float]]) -> S.PerfSummary:
    return S.PerfSummary(
        scope=str(m.scope),
        ts=m.ts,
        throughput=m.throughput,
        latency={
            k: S.QuantilesOut(count=q.count, p50=q.p50, p90=q.p90, p95=q.p95, p99=q.p99) for k, q in m.latency.items()
        },
        cpu_usage=m.cpu_usage,
        memory_usage=m.memory_usage,
        disk_io=None if m.disk_io is None else {"read_bytes_per_s": m.disk_io[0], "write_bytes_per_s": m.disk_io[1]},
        network_io=None
        if m.network_io is None
        else {"sent_bytes_per_s": m.network_io[0], "recv_bytes_per_s": m.network_io[1]},
        latest={k: S.LatestOut(ts=ts, value=v) for k, (ts, v) in sorted(latest.items())},
    )


async def get_scopes(request: Request, st: ServerContext) -> Response:
    now = time.time()
    since = _when(request, "since", now, now - 86400)
    assert since is not None
    rows = await asyncio.to_thread(st.store.perf.sample_scopes, since)
    scopes: dict[tuple[str, str], list[str]] = {}
    for kind, ident, metric in rows:
        scopes.setdefault((kind, ident), []).append(metric)
    return json(
        S.MetricScopes(scopes=[S.MetricScopeOut(scope=f"{k}:{i}", metrics=m) for (k, i), m in sorted(scopes.items())])
    )


async def get_summary(request: Request, st: ServerContext) -> Response:
    scope = _scope(request)
    latest = await asyncio.to_thread(st.store.perf.latest_samples, scope.kind.value, scope.id)
    perf = st.performance
    metrics = perf.collect_metrics(scope) if perf is not None else PerformanceMetrics(scope, time.time())
    return json(summary_out(metrics, latest))


async def get_series(request: Request, st: ServerContext) -> Response:
    now = time.time()
    scope = _scope(request)
    metric = text_param(request, "metric")
    if metric not in RESOURCE_METRICS:
        raise FlowsightError(f"query parameter 'metric': {metric!r} is not one of {', '.join(RESOURCE_METRICS)}")
    since = _when(request, "since", now, now - 3600)
    assert since is not None
    until = _when(request, "until", now, None)
    step = float_param(request, "step")
    if step is not None and not 60 <= step <= 366 * 86400:
        raise FlowsightError(
            f"query parameter 'step': {step:g} s is not a bucket width from 60 s to a year (a multiple of 60)"
        )
    raw_since = now - st.performance_raw_retention
    try:
        points = await asyncio.to_thread(
            st.store.perf.query_samples, scope.kind.value, scope.id, metric, since, until, step, raw_since=raw_since
        )
    except ValueError as exc:
        raise FlowsightError(f"query parameter 'step': {exc}") from None
    raw = step is None and since >= raw_since
    return json(
        S.Series(
            scope=str(scope),
            metric=metric,
            resolution="raw" if raw else f"{int(step or 60)}s",
            points=[S.PointOut(ts=p.ts, avg=p.avg, min=p.min, max=p.max, count=p.count) for p in points],
        )
    )


def routes() -> list[Route]:
    return [
        route("/api/v1/metrics", GET=("read", get_scopes)),
        route("/api/v1/metrics/summary", GET=("read", get_summary)),
        route("/api/v1/metrics/series", GET=("read", get_series)),
    ]
