"""The ASGI app of ``flowsight serve`` (Starlette): ingest, query, stream, metrics.

Handlers parse the request, call the store or the hub, render JSON; the
decisions live in the model and the read models.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.middleware import Middleware
from starlette.routing import Route

from flowsight import __version__
from flowsight.server.alerting import AlertingService
from flowsight.config import Config
from flowsight.errors import FlowsightError, StoreError
from flowsight.hub import Hub
from flowsight.model.events import Event, EventKind
from flowsight.model.state import WorkflowState
from flowsight.model.hosts import AllowedHosts
from flowsight.monitors.channel import EventFilter
from flowsight.query import Views
from flowsight.server.auth import Authenticator, AuthError
from flowsight.server.ingest import (
    BodyError,
    Committer,
    Limits,
    answer,
    decode_batch,
    decode_off_loop,
    read_json_body,
    write_answer,
)
from flowsight.monitors.fault import FaultMonitor
from flowsight.collect.resources import MetricsCollector
from flowsight.monitors.performance import PerformanceMonitor
from flowsight.server import alerts_api, dashboard_api, faults_api, logs_api, perf_api
from flowsight.server.metrics import Stats, alert_counts, render_metrics
from flowsight.server.openapi import build_openapi
from flowsight.server.pages import dashboard_routes
from flowsight.server.follow import StoreFollower
from flowsight.server.sources import SourceFollower
from flowsight.server.hosts import HostCheck
from flowsight.server.params import float_param as _float
from flowsight.server.params import int_param as _int
from flowsight.server.params import text_param as _text
from flowsight.server.retention import DEFAULT_INTERVAL, DEFAULT_RETENTION, LogRetention
from flowsight.server.stream import EventStreamResponse, Streams, event_stream
from flowsight.server.timing import ServerTiming
from flowsight.store.runs import decode_cursor
from flowsight.store.interface import Store

_enc = msgspec.json.Encoder()
#: the events at which a run's process tree is sampled at once (a step's start or end, the run's end)
BOUNDARIES = frozenset(
    {
        EventKind.STEP_STARTED,
        EventKind.STEP_COMPLETED,
        EventKind.STEP_FAILED,
        EventKind.COMPLETED,
        EventKind.FAILED,
        EventKind.CANCELLED,
    }
)


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_enc.encode(data), status_code=status, media_type="application/json", headers=headers)


def error(status: int, message: str) -> Response:
    return json({"error": message}, status)


@dataclass
class ServerState:
    store: Store
    hub: Hub
    committer: Committer
    auth: Authenticator
    limits: Limits
    stall_timeout: float
    alerting: AlertingService
    stats: Stats = field(default_factory=Stats)
    streams: Streams = field(default_factory=Streams)
    events_rejected: int = 0
    logs_rejected: int = 0
    #: told of the log entries each POST /api/v1/logs stored (see flowsight.server.logs_api)
    on_logs: logs_api.OnLogs | None = None
    log_retention: LogRetention | None = None
    #: the [[detectors]] of the configuration at work (None without any)
    fault_monitor: FaultMonitor | None = None
    #: throughput, latency and the [[thresholds]] of the configuration
    performance: PerformanceMonitor | None = None
    #: how long every resource sample is kept (older ranges are read from the 1-minute rollups)
    performance_raw_retention: float = 6 * 3600.0
    started_at: float = field(default_factory=time.time)


Handler = Callable[[Request, ServerState], Awaitable[Response]]


def endpoint(scope: str | None, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: auth for ``scope``, and every error a caller can cause
    turned into a JSON answer (a store failure is a 503, never a bare 500)."""

    async def run(request: Request) -> Response:
        st: ServerState = request.app.state.flowsight
        try:
            if scope is not None:
                await st.auth.require(request, scope)
            return await handler(request, st)
        except AuthError as exc:
            return error(exc.status, exc.message)
        except BodyError as exc:
            return error(exc.status, exc.message)
        except StoreError as exc:
            return error(503, f"store unavailable: {exc}")
        except FlowsightError as exc:
            return error(400, str(exc))
        except ClientDisconnect:
            return Response(status_code=499)

    return run


def by_method(**handlers: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """One route, a handler (and so a scope) per method: the 405's ``Allow``
    then lists every method of the path."""

    async def run(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return run


# ---- ingest ---------------------------------------------------------------
async def post_events(request: Request, st: ServerState) -> Response:
    body = await read_json_body(request, st.limits)
    items = await decode_off_loop(body, lambda raw: decode_batch(raw, st.limits))
    valid = [it for it in items if not isinstance(it, Exception)]
    result = await st.committer.submit(valid)
    out = answer(items, result)
    st.events_rejected += out["rejected"]
    return json(*write_answer(body, items, out))


# ---- queries --------------------------------------------------------------
def _states(request: Request) -> list[WorkflowState] | None:
    raw = request.query_params.getlist("state")
    try:
        return [WorkflowState(s) for s in raw] or None
    except ValueError:
        allowed = ", ".join(s.value for s in WorkflowState)
        raise FlowsightError(f"query parameter 'state': {raw!r} has an unknown state; use {allowed}") from None


async def get_runs(request: Request, st: ServerState) -> Response:
    q = request.query_params
    states = _states(request)
    since, until = _float(request, "since"), _float(request, "until")
    limit = _int(request, "limit", 50, 1, 1000)
    workflow, text, cursor = _text(request, "workflow"), _text(request, "q") or None, q.get("cursor") or None
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except StoreError as exc:  # the caller's mistake, not a store failure: 400, not 503
            raise FlowsightError(f"query parameter 'cursor': {exc}") from None

    def work() -> dict[str, Any]:
        page = st.store.runs.list_runs(
            workflow=workflow, states=states, since=since, until=until, text=text, limit=limit, cursor=cursor
        )
        views = Views(st.store, time.time(), stall_timeout=st.stall_timeout).views(page.runs)
        return {"runs": [v.to_dict() for v in views], "cursor": page.cursor}

    return json(await asyncio.to_thread(work))


async def get_run(request: Request, st: ServerState) -> Response:
    run_id = request.path_params["run_id"]
    if "\x00" in run_id:  # no run has one (ingest refuses it), and PostgreSQL cannot look it up
        return error(404, f"no run {run_id!r}")

    def work() -> dict[str, Any] | None:
        run = st.store.runs.get_run(run_id)
        if run is None:
            return None
        return Views(st.store, time.time(), stall_timeout=st.stall_timeout).detail(run).to_dict()

    detail = await asyncio.to_thread(work)
    return json(detail) if detail is not None else error(404, f"no run {run_id!r}")


async def get_run_events(request: Request, st: ServerState) -> Response:
    run_id = request.path_params["run_id"]
    if "\x00" in run_id:
        return error(404, f"no run {run_id!r}")
    after = _int(request, "after", 0, 0, 2**62)
    limit = _int(request, "limit", 1000, 1, 10_000)

    def work() -> dict[str, Any] | None:
        if st.store.runs.get_run(run_id) is None:
            return None
        rows = st.store.runs.events_after(after, run_id=run_id, limit=limit)
        events = [{**msgspec.to_builtins(ev), "seq": seq} for seq, ev in rows]
        return {"events": events, "next_after": rows[-1][0] if len(rows) == limit else None}

    page = await asyncio.to_thread(work)
    return json(page) if page is not None else error(404, f"no run {run_id!r}")


async def get_workflows(request: Request, st: ServerState) -> Response:
    return json({"workflows": await asyncio.to_thread(st.store.stats.workflow_stats)})


def _last_event_id(raw: str | None) -> int | None:
    """The seq in a ``Last-Event-ID`` header; None (start live) for anything
    that is not one (an id is a seq this server sent: 0 up to a 63-bit integer)."""
    if raw is None:
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:  # '²' is a digit to isdigit(), not to int()
        return None
    value = int(raw)
    return value if value < 2**63 else None


async def get_stream(request: Request, st: ServerState) -> Response:
    last_seq = _last_event_id(request.headers.get("last-event-id"))
    flt = EventFilter(workflow=_text(request, "workflow"), run_id=_text(request, "run_id"))
    return EventStreamResponse(
        event_stream(st.hub, flt, last_seq, streams=st.streams, client=request.client),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def get_metrics(request: Request, st: ServerState) -> Response:
    counts = await st.alerting.read(alert_counts)
    body, ctype = await asyncio.to_thread(render_metrics, st, request.headers.get("accept"), counts)
    return Response(body, media_type=ctype)


async def get_health(request: Request, st: ServerState) -> Response:
    return json({"status": "ok", "store": st.store.dialect, "version": __version__})


async def get_openapi(request: Request) -> Response:
    return json(request.app.state.openapi)


async def http_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 and 405, as JSON like every other error."""
    assert isinstance(exc, HTTPException)
    message = (
        f"no such path {request.url.path!r}; the API is described at /openapi.json"
        if exc.status_code == 404
        else f"method {request.method} is not allowed on {request.url.path!r}"
    )
    return json({"error": message}, exc.status_code, headers=dict(exc.headers or {}))


def create_app(
    store: Store,
    *,
    limits: Limits | None = None,
    stall_timeout: float = 1800.0,
    hub: Hub | None = None,
    config: Config | None = None,
    alerting: AlertingService | None = None,
    on_logs: logs_api.OnLogs | None = None,
    log_retention: float | None = DEFAULT_RETENTION,
    log_purge_interval: float = DEFAULT_INTERVAL,
    may_be_open: bool = True,
    allowed_hosts: AllowedHosts | None = None,
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
    None: no check, for an app served in-process)."""
    hub = hub or Hub(store, track=False)
    alerting = alerting or AlertingService(store, config or Config.default())
    hub.hooks.append(alerting.observe)
    st = ServerState(
        store=store,
        hub=hub,
        committer=Committer(hub),
        auth=Authenticator(store.tokens, may_be_open=may_be_open),
        limits=limits or Limits(),
        stall_timeout=stall_timeout,
        alerting=alerting,
    )
    st.committer.on_commit = st.stats.on_commit
    st.on_logs = on_logs
    if log_retention is not None:
        st.log_retention = LogRetention(store, log_retention, interval=log_purge_interval)
    cfg = config or Config.default()
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
    perf_stop = asyncio.Event()
    st.performance_raw_retention = cfg.performance_raw_retention

    def live_runs() -> dict[str, tuple[int, str]]:
        """The running runs of this host (the SDK reports its pid and host): run id -> (pid, workflow)."""
        out = {}
        for m in store.runs.list_runs(states=[WorkflowState.RUNNING], limit=1000).runs:
            pid = m.attrs.get("pid")
            if m.attrs.get("host") == collector.host.id and isinstance(pid, int) and pid > 0:
                out[m.workflow_id] = (pid, m.workflow)
        return out

    def run_process(run_id: str) -> tuple[int, str] | None:
        """A run's root pid and workflow, when its process is on this host."""
        m = store.runs.get_run(run_id)
        pid = m.attrs.get("pid") if m is not None else None
        if m is None or m.attrs.get("host") != collector.host.id or not isinstance(pid, int) or pid <= 0:
            return None
        return pid, m.workflow

    def boundaries(events: Sequence[Event], seqs: Mapping[str, int]) -> None:
        for ev in events:
            if ev.kind in BOUNDARIES:
                perf.note_boundary(ev.run_id, ev.ts)

    hub.result_hooks.append(lambda r: perf.observe(r.step_durations, r.run_durations))
    hub.hooks.append(boundaries)
    warmer = dashboard_api.OverviewWarmer(store)
    follower = StoreFollower(hub)
    sources = SourceFollower(store, cfg.logs.sources)
    faults_stop = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        st.committer.start()
        alerting.load(wait=False)  # the port is bound meanwhile; what reads the alerts waits for it
        alerting.start()
        if st.log_retention is not None:
            st.log_retention.start()
        warmer.start()
        await follower.start()
        sources.start()
        perf_stop.clear()
        perf_task = asyncio.create_task(
            perf.monitor_performance(
                live_runs,
                cfg.performance_interval,
                perf_stop,
                raw_retention=cfg.performance_raw_retention,
                rollup_retention=cfg.performance_rollup_retention,
                run_process=run_process,
            ),
            name="flowsight-performance",
        )
        faults_task = None
        if st.fault_monitor is not None:
            faults_stop.clear()
            faults_task = asyncio.create_task(st.fault_monitor.monitor_faults(faults_stop), name="flowsight-faults")
        try:
            yield
        finally:
            await sources.stop()
            await follower.stop()
            warmer.stop()
            perf_stop.set()
            await perf_task
            if faults_task is not None:
                faults_stop.set()
                await faults_task
            await st.committer.stop()  # everything acknowledged is committed before exit
            await alerting.stop()  # then the rules see the last events, and the outbox is saved
            if st.log_retention is not None:
                await st.log_retention.stop()

    routes = [
        Route("/api/v1/events", endpoint("ingest", post_events), methods=["POST"]),
        Route(
            "/api/v1/logs",
            by_method(GET=endpoint("read", logs_api.get_logs), POST=endpoint("ingest", logs_api.post_logs)),
            methods=["GET", "POST"],
        ),
        Route("/api/v1/runs", endpoint("read", get_runs), methods=["GET"]),
        # ':path': a run id may hold a '/' (sent as %2F, which routing sees decoded);
        # a run whose id ends in '/events' or '/logs' is then reached through that route only
        Route("/api/v1/runs/{run_id:path}/events", endpoint("read", get_run_events), methods=["GET"]),
        Route("/api/v1/runs/{run_id:path}/logs", endpoint("read", logs_api.get_run_logs), methods=["GET"]),
        Route("/api/v1/logs/templates", endpoint("read", logs_api.get_log_templates), methods=["GET"]),
        Route("/api/v1/runs/{run_id:path}", endpoint("read", get_run), methods=["GET"]),
        Route("/api/v1/workflows", endpoint("read", get_workflows), methods=["GET"]),
        Route("/api/v1/stream", endpoint("read", get_stream), methods=["GET"]),
        Route(
            "/api/v1/alerts",
            by_method(GET=endpoint("read", alerts_api.get_alerts), POST=endpoint("ingest", alerts_api.post_alerts)),
            methods=["GET", "POST"],
        ),
        Route(
            "/api/v1/silences",
            by_method(GET=endpoint("read", alerts_api.get_silences), POST=endpoint("admin", alerts_api.post_silence)),
            methods=["GET", "POST"],
        ),
        Route("/api/v1/silences/{silence_id}", endpoint("admin", alerts_api.delete_silence), methods=["DELETE"]),
        Route("/api/v1/faults", endpoint("read", faults_api.get_faults), methods=["GET"]),
        Route("/api/v1/faults/{fault_id}", endpoint("read", faults_api.get_fault), methods=["GET"]),
        Route("/api/v1/metrics", endpoint("read", perf_api.get_scopes), methods=["GET"]),
        Route("/api/v1/metrics/summary", endpoint("read", perf_api.get_summary), methods=["GET"]),
        Route("/api/v1/metrics/series", endpoint("read", perf_api.get_series), methods=["GET"]),
        Route("/api/v1/overview", endpoint("read", dashboard_api.get_overview), methods=["GET"]),
        Route("/api/v1/performance", endpoint("read", dashboard_api.get_performance), methods=["GET"]),
        Route("/metrics", endpoint("read", get_metrics), methods=["GET"]),
        Route("/healthz", endpoint(None, get_health), methods=["GET"]),
        Route("/openapi.json", get_openapi, methods=["GET"]),
        *dashboard_routes(),  # the dashboard's page and assets (no data, no token)
    ]
    middleware = [Middleware(ServerTiming)]  # the server's time in the browser's devtools
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(HostCheck, allowed=allowed_hosts))  # before anything else sees the request
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={404: http_error, 405: http_error}, middleware=middleware
    )
    app.state.flowsight = st
    app.state.openapi = build_openapi(__version__)
    return app
