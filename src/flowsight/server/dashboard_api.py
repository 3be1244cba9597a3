"""Read endpoints the dashboard's pages need beyond the rest of the API:

- ``GET /api/v1/overview``: the overview page's aggregates in one answer —
  runs per state, how many running runs are stalled, alerts per status, open
  faults, and per workflow its success rate, runs per state, duration p50/p95
  and the durations of its latest ended runs (the trend sparkline);
- ``GET /api/v1/performance``: per workflow and step over a time range, from
  the store: runs and steps per hour and duration percentiles.

Every query is bounded (LIMIT) and goes through the store's indexed reads;
where a bound cuts the data short the answer says so (``sampled``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from flowsight.model.faults import FaultStatus
from flowsight.model.runs.history import quantile
from flowsight.model.runs.stall import stall_verdict
from flowsight.model.runs.state import WorkflowState
from flowsight.server import schemas as S
from flowsight.server.views import schedule_list
from flowsight.server.params import int_param, text_param, time_param
from flowsight.store.dashboard import RunTimes
from flowsight.store.interface import Store
from flowsight.server.http import json, route
from starlette.routing import Route

if TYPE_CHECKING:
    from flowsight.alerting.manager import AlertManager
    from flowsight.server.context import ServerContext

log = logging.getLogger("flowsight.server")

State = Literal["pending", "running", "completed", "failed", "suspended", "cancelled"]
#: running runs looked at for the stalled count (newest first)
STALL_SCAN = 500
#: workflows given a duration trend (those with the latest runs first)
TREND_WORKFLOWS = 100
#: runs per workflow read for the performance page, and of those the newest whose steps are read
RUN_SAMPLE, STEP_SAMPLE = 1000, 200
#: ended runs per workflow in the duration scatter (evenly thinned beyond)
POINTS = 300
_ENDED_NAMES = frozenset(s.value for s in (WorkflowState.COMPLETED, WorkflowState.FAILED, WorkflowState.CANCELLED))


# ---- schemas -------------------------------------------------------------------
class TrendPoint(msgspec.Struct, kw_only=True):
    run_id: str
    state: State
    start_time: float | None
    end_time: float | None
    duration_seconds: float | None


class WorkflowOverview(S.WorkflowOut, kw_only=True):
    #: its latest ended runs, oldest first (the duration trend)
    trend: list[TrendPoint]


class Overview(msgspec.Struct, kw_only=True):
    now: float
    runs: int
    by_state: dict[str, int]
    #: running runs quiet beyond their bound (of the newest 500 running)
    stalled: int
    #: alerts the manager holds, by status (firing, pending, resolved, silenced, ...)
    alerts: dict[str, int]
    faults_open: int
    workflows: list[WorkflowOverview]
    #: scheduled workflows per status of their last slot judged (late, missed, ok, ...)
    schedules: dict[str, int] = {}


class StepPerf(msgspec.Struct, kw_only=True):
    step: str
    attempts: int
    failed: int
    #: completed attempts per hour over the window the sample covers
    per_hour: float
    #: durations of completed attempts, seconds
    duration: S.QuantilesOut


class DurationPoint(msgspec.Struct, kw_only=True):
    run_id: str
    start_time: float
    duration_seconds: float
    state: State


class WorkflowPerf(msgspec.Struct, kw_only=True):
    workflow: str
    #: runs started in the range (of the sample)
    runs: int
    by_state: dict[str, int]
    #: runs ended per hour over ``window_seconds``
    per_hour: float
    #: the span the figures cover: the range, or less when the sample was cut short
    window_seconds: float
    #: more runs started in the range than were read (the newest 1,000 were)
    sampled: bool
    #: durations of completed runs, seconds
    duration: S.QuantilesOut
    #: steps of the newest 200 runs read
    steps: list[StepPerf]
    #: ended runs: start and duration (the scatter chart), oldest first; at most 300, evenly thinned
    points: list[DurationPoint]


class PerfPage(msgspec.Struct, kw_only=True):
    since: float
    until: float
    workflows: list[WorkflowPerf]


# ---- overview ------------------------------------------------------------------
def overview(store: Store, alerts: dict[str, int], *, now: float, stall_timeout: float, trend: int) -> Overview:
    """The overview page's aggregates (see the module docstring)."""
    stats = store.stats.workflow_stats()
    by_state: dict[str, int] = {}
    for wf in stats:
        for state, n in wf["by_state"].items():
            by_state[state] = by_state.get(state, 0) + n
    ended = store.stats.latest_ended(_trended(stats), trend) if trend else {}
    workflows = []
    for wf in stats:
        points = [
            TrendPoint(
                run_id=rid,
                state=state,
                start_time=start,
                end_time=end,
                duration_seconds=None if start is None or end is None else round(max(0.0, end - start), 3),
            )
            for rid, state, start, end in reversed(ended.get(wf["workflow"], []))
        ]
        workflows.append(WorkflowOverview(**wf, trend=points))
    # the stall flags alone (as the runs list judges them), without the ETAs
    running = store.runs.list_runs(states=[WorkflowState.RUNNING], limit=STALL_SCAN).runs
    histories = store.stats.histories([m.workflow for m in running])
    verdicts = [stall_verdict(m, histories[m.workflow], now, timeout=stall_timeout) for m in running]
    faults_open = len(store.faults.list_faults(status=FaultStatus.OPEN, limit=1000))
    return Overview(
        now=now,
        runs=sum(by_state.values()),
        by_state=by_state,
        stalled=sum(1 for v in verdicts if v is not None and v.stalled),
        alerts=alerts,
        faults_open=faults_open,
        workflows=workflows,
    )


#: how often the server recounts runs per workflow and state (healing counts no writer kept)
RECOUNT_EVERY = 3600.0


class OverviewWarmer:
    """Recounts the runs per workflow and state (then hourly: see
    :meth:`flowsight.store.runs.Runs.recount_runs`), and makes what the
    overview reads once, in a thread, when the server starts: the histories of the workflows with live runs (the ETAs and the
    stall flags need them; each replays the step events of 20 runs, ~25 ms
    of reads at 100,000 runs), the workflows' figures and trends. Without
    it the first overview after a start made them all while its user waited.
    A request that needs a history being made waits for it instead of making
    it again (see :meth:`flowsight.store.runstats.RunStats.history`)."""

    def __init__(self, store: Store, *, trend: int = 30) -> None:
        self.store = store
        self.trend = trend
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="flowsight-overview-warmer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stops after the workflow at hand (one history at most)."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def _run(self) -> None:
        try:
            self.store.runs.recount_runs()  # first: the figures made next rest on the counts
            self.warm()
        except Exception as exc:  # noqa: BLE001 - a store failing or closing: the requests will tell
            log.debug("overview warm-up stopped: %s", exc)
        while not self._stop.wait(RECOUNT_EVERY):
            try:
                self.store.runs.recount_runs()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("recount of the runs per workflow and state failed: %s", exc)

    def warm(self) -> None:
        counts = self.store.stats.run_counts()
        live = [
            wf
            for wf, by in sorted(counts.items())
            if any(by.get(state.value, (0, 0))[0] > 0 for state in WorkflowState if not state.terminal)
        ]
        for wf in live:
            if self._stop.is_set():
                return
            self.store.stats.histories([wf])
        if self._stop.is_set():
            return
        stats = self.store.stats.workflow_stats()
        if self.trend and not self._stop.is_set():
            self.store.stats.latest_ended(_trended(stats), self.trend)


def _trended(stats: list[dict[str, Any]]) -> list[str]:
    """The workflows given a duration trend: those with the latest runs first."""
    return sorted(
        wf["workflow"] for wf in sorted(stats, key=lambda w: w["last_run_at"] or 0.0, reverse=True)[:TREND_WORKFLOWS]
    )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _alerts_by_status(am: AlertManager) -> dict[str, int]:
    """Call on the manager's thread (``AlertingService.read``): its alerts belong to it."""
    counts: dict[str, int] = {}
    for fp in am.alerts:
        status = am.status_of(fp)
        counts[status] = counts.get(status, 0) + 1
    return counts


async def get_overview(request: Request, st: ServerContext) -> Response:
    trend = int_param(request, "trend", 30, 0, 200)
    alerts = await st.alerting.read(_alerts_by_status)
    out = await asyncio.to_thread(
        overview, st.store, alerts, now=time.time(), stall_timeout=st.stall_timeout, trend=trend
    )
    out.schedules = schedule_list(await asyncio.to_thread(st.alerting.schedules.snapshot), 0).counts
    return json(out)


# ---- performance ---------------------------------------------------------------
def _quantiles(values: list[float]) -> S.QuantilesOut:
    if not values:
        return S.QuantilesOut(count=0, p50=None, p90=None, p95=None, p99=None)
    p50, p90, p95, p99 = (round(quantile(values, q), 3) for q in (0.5, 0.9, 0.95, 0.99))
    return S.QuantilesOut(count=len(values), p50=p50, p90=p90, p95=p95, p99=p99)


def _took(r: RunTimes) -> float:
    """How long an ended run took (both times known)."""
    return max(0.0, (r.end_time or 0.0) - (r.start_time or 0.0))


def workflow_perf(store: Store, workflow: str, since: float, until: float) -> WorkflowPerf:
    """One workflow's figures over ``since``..``until`` (runs by when they started)."""
    runs = store.stats.runs_created(workflow, since, until, RUN_SAMPLE + 1)
    sampled = len(runs) > RUN_SAMPLE
    runs = runs[:RUN_SAMPLE]

    def window(of: list[RunTimes], cut: bool) -> float:
        starts = [r.start_time for r in of if r.start_time is not None]
        return max(1.0, until - (min(starts) if cut and starts else since))

    span = window(runs, sampled)
    by_state: dict[str, int] = {}
    for r in runs:
        by_state[r.state] = by_state.get(r.state, 0) + 1
    ended = [r for r in runs if r.state in _ENDED_NAMES and r.start_time is not None and r.end_time is not None]
    done = [_took(r) for r in ended if r.state == "completed"]
    step_runs = runs[:STEP_SAMPLE]
    step_span = window(step_runs, sampled or len(runs) > STEP_SAMPLE)
    per_step: dict[str, dict[str, Any]] = {}
    for st in store.stats.step_spans([r.run_id for r in step_runs]):
        entry = per_step.setdefault(st.step, {"attempts": 0, "failed": 0, "durations": []})
        entry["attempts"] += 1
        if st.status == "failed":
            entry["failed"] += 1
        elif st.status == "completed" and st.duration is not None:
            entry["durations"].append(st.duration)
    shown = ended[::-1]
    if len(shown) > POINTS:  # evenly thinned: the chart's shape, not every dot
        shown = [shown[i * len(shown) // POINTS] for i in range(POINTS)]
    return WorkflowPerf(
        workflow=workflow,
        runs=len(runs),
        by_state=by_state,
        per_hour=round(len(ended) * 3600 / span, 3),
        window_seconds=round(span, 3),
        sampled=sampled,
        duration=_quantiles(done),
        steps=[
            StepPerf(
                step=name,
                attempts=e["attempts"],
                failed=e["failed"],
                per_hour=round(len(e["durations"]) * 3600 / step_span, 3),
                duration=_quantiles(e["durations"]),
            )
            for name, e in per_step.items()
        ],
        points=[
            DurationPoint(
                run_id=r.run_id,
                start_time=r.start_time or 0.0,
                state=cast(State, r.state),
                duration_seconds=round(_took(r), 3),
            )
            for r in shown
        ],
    )


async def get_performance(request: Request, st: ServerContext) -> Response:
    now = time.time()
    since = time_param(request, "since", now)
    until = time_param(request, "until", now)
    since = now - 86400 if since is None else since
    until = now if until is None else until
    workflow = text_param(request, "workflow")
    if until <= since:  # an empty range: nothing started in it
        return json(PerfPage(since=since, until=until, workflows=[]))

    def work() -> PerfPage:
        names = [workflow] if workflow else st.store.runs.workflows()[:TREND_WORKFLOWS]
        rows = [workflow_perf(st.store, name, since, until) for name in names]
        return PerfPage(since=since, until=until, workflows=[r for r in rows if r.runs or workflow])

    return json(await asyncio.to_thread(work))


def routes() -> list[Route]:
    return [
        route("/api/v1/overview", GET=("read", get_overview)),
        route("/api/v1/performance", GET=("read", get_performance)),
    ]
