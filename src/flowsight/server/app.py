"""The ASGI app of ``flowsight serve`` (Starlette): :func:`create_app`
assembles the state the handlers share, the services that run beside them
and the routes each ``*_api`` module exports.

Handlers parse the request, call the store or the hub, render JSON; the
decisions live in the model and the read models.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight import __version__
from flowsight.collect.resources import MetricsCollector
from flowsight.config import Config
from flowsight.hub import Hub
from flowsight.model.hosts import AllowedHosts
from flowsight.monitors.performance import PerformanceMonitor
from flowsight.server import (
    alerts_api,
    cluster_api,
    dashboard_api,
    faults_api,
    lineage_api,
    logs_api,
    metrics,
    otlp_api,
    perf_api,
    runs_api,
    schedules_api,
)
from flowsight.server import schemas as S
from flowsight.server.alerting import AlertingService
from flowsight.server.auth import Authenticator
from flowsight.server.export import ExportService
from flowsight.server.follow import StoreFollower
from flowsight.server.hosts import HostCheck
from flowsight.server.http import http_error, json, mount, route
from flowsight.server.ingest import Committer, Limits
from flowsight.server.leadership import Alone, Leadership
from flowsight.server.openapi import build_openapi
from flowsight.server.pages import dashboard_routes
from flowsight.server.retention import DEFAULT_INTERVAL, DEFAULT_RETENTION, LogRetention
from flowsight.server.sampling import RunSampling
from flowsight.server.services import Loop, Service, start_all, stop_all
from flowsight.server.sources import SourceFollower
from flowsight.server.context import OnLogs, ServerContext
from flowsight.server.timing import ServerTiming
from flowsight.store.interface import Store


async def get_health(request: Request, st: ServerContext) -> Response:
    return json(S.Health(status="ok", store=st.store.dialect, version=__version__))


async def get_openapi(request: Request) -> Response:
    return json(request.app.state.openapi)


async def _method_error(request: Request, exc: Exception) -> Response:
    """The router's 405: an OTLP path's as a ``google.rpc.Status``, as its other errors; else JSON."""
    if request.url.path in otlp_api.PATHS:
        return otlp_api.method_not_allowed(request)
    return await http_error(request, exc)


def create_app(
    store: Store,
    *,
    limits: Limits | None = None,
    stall_timeout: float = 1800.0,
    hub: Hub | None = None,
    config: Config | None = None,
    alerting: AlertingService | None = None,
    on_logs: OnLogs | None = None,
    log_retention: float | None = DEFAULT_RETENTION,
    log_purge_interval: float = DEFAULT_INTERVAL,
    may_be_open: bool = True,
    allowed_hosts: AllowedHosts | None = None,
    leadership: Leadership | None = None,
) -> Starlette:
    """The app over ``store``; the caller keeps ownership of the store.
    Alerting follows ``config`` (default: built-in rules, alerts to the log).

    ``on_logs``: called with the log entries each ``POST /api/v1/logs``
    stored, after the commit (see :mod:`flowsight.server.logs_api`).
    ``log_retention``: log entries older than this many seconds are purged
    in the background at start and every ``log_purge_interval`` seconds
    (None: kept for ever). ``may_be_open``: the API is open while the store
    holds no token and none has been seen (see :class:`Authenticator`); a
    server listening beyond loopback passes False. ``allowed_hosts``: a
    request with any other ``Host`` is refused (see :mod:`flowsight.server.hosts`;
    None: no check, for an app served in-process). ``leadership``: this
    server's part in a group of replicas on one store (see
    :mod:`flowsight.server.leadership`; None: it does every duty itself)."""
    hub = hub or Hub(store, track=False)
    cfg = config or Config.default()
    cluster: Leadership | Alone = leadership or Alone()
    alerting = alerting or AlertingService(store, cfg, duty=cluster.duty("alerting"))
    hub.hooks.append(alerting.rule_events.observe)
    st = ServerContext(
        store=store,
        hub=hub,
        committer=Committer(hub),
        auth=Authenticator(store.tokens, may_be_open=may_be_open),
        limits=limits or Limits(),
        stall_timeout=stall_timeout,
        alerting=alerting,
        on_logs=on_logs,
        performance_raw_retention=cfg.performance_raw_retention,
        otlp_services=cfg.otlp_services,
        cluster=cluster,
    )
    st.committer.on_commit = st.counters.on_commit
    st.fault_monitor = faults_api.make_fault_monitor(cfg, store, alerting)
    collector = MetricsCollector()
    perf = st.performance = PerformanceMonitor(
        collector,
        cfg.thresholds,
        baselines=cfg.baselines,
        alert_manager=alerting,
        store=store,
        hostname=collector.host.id,
    )
    sampling = RunSampling(store, perf, collector.host.id, cfg)
    hub.result_hooks.append(lambda r: perf.observe(r.step_durations, r.run_durations))
    hub.hooks.append(sampling.boundaries)
    # Started in this order, stopped in the reverse. The stop order is what
    # matters: the committer stops after everything that feeds it, so
    # everything acknowledged is committed; then alerting, whose rules see the
    # last events and whose outbox is saved; log retention last. (Started so,
    # the detectors and the sampler begin before the follower and the warmer:
    # none of them waits for another.)
    # The singleton duties (see flowsight.server.leadership): started here when
    # this server is alone, by the leadership while it leads them otherwise.
    # Each is made afresh for each term a replica leads its duty (a stopped service does not start again).
    retention_every = log_purge_interval

    def retention() -> list[Service]:
        if log_retention is None:
            return []
        st.log_retention = LogRetention(store, log_retention, interval=retention_every)
        return [st.log_retention]

    def detectors() -> list[Service]:
        monitor = st.fault_monitor
        return [Loop("flowsight-faults", monitor.monitor_faults)] if monitor is not None else []

    def export() -> list[Service]:
        if cfg.otlp_export is None:
            return []
        on_broken, on_recovered = alerting.receiver_broken, alerting.receiver_recovered
        return [ExportService(store, cfg.otlp_export, on_broken=on_broken, on_recovered=on_recovered)]

    services: list[Service] = [
        *([leadership.release] if leadership is not None else []),  # stopped last: the leases given back
        *cluster.wrap("retention", retention),
        alerting,  # loads what the store kept without waiting: the port is bound meanwhile
        st.committer,
        *([leadership] if leadership is not None else []),  # stopped before the committer and alerting
        *cluster.wrap("detectors", detectors),
        sampling,
        dashboard_api.OverviewWarmer(store),
        StoreFollower(hub),
        SourceFollower(store, cfg.logs.sources),
        *cluster.wrap("export", export),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started = await start_all(services)
        try:
            yield
        finally:
            await stop_all(started)

    routes = mount(
        logs_api.routes(),  # first: its /api/v1/runs/{run_id:path}/logs is the run route's too
        runs_api.routes(),
        alerts_api.routes(),
        faults_api.routes(),
        schedules_api.routes(),
        perf_api.routes(),
        dashboard_api.routes(),
        metrics.routes(),
        otlp_api.routes(),
        lineage_api.routes(),
        cluster_api.routes(),
        [
            route("/healthz", GET=(None, get_health)),
            Route("/openapi.json", get_openapi, methods=["GET"]),
        ],
        dashboard_routes(),  # the dashboard's page and assets (no data, no token)
    )
    middleware = [Middleware(ServerTiming)]  # the server's time in the browser's devtools
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(HostCheck, allowed=allowed_hosts))  # before anything else sees the request
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: http_error, 405: _method_error},
        middleware=middleware,
    )
    app.state.flowsight = st
    app.state.openapi = build_openapi(__version__)
    return app
