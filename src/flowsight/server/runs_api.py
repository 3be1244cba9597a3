"""Events in, runs out: ``POST /api/v1/events``, ``/api/v1/runs`` (pages of
runs, one run, its events), ``/api/v1/workflows`` and ``/api/v1/stream``
(the live events, as server-sent events)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight.errors import FlowsightError, StoreError
from flowsight.model.runs.state import WorkflowState
from flowsight.monitors.channel import EventFilter
from flowsight.query import Views
from flowsight.server import schemas as S
from flowsight.server.http import error, json, route
from flowsight.server.ingest import answer, decode_batch, decode_off_loop, read_json_body, write_answer
from flowsight.server.params import float_param as _float
from flowsight.server.params import int_param as _int
from flowsight.server.params import text_param as _text
from flowsight.server.stream import EventStreamResponse, event_stream
from flowsight.server.views import run_detail_out, run_out
from flowsight.store.runs import decode_cursor

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext


# ---- ingest ---------------------------------------------------------------
async def post_events(request: Request, st: ServerContext) -> Response:
    body = await read_json_body(request, st.limits)
    items = await decode_off_loop(body, lambda raw: decode_batch(raw, st.limits))
    valid = [it for it in items if not isinstance(it, Exception)]
    result = await st.committer.submit(valid)
    out = answer(items, result)
    st.events_rejected += out.rejected
    return json(*write_answer(body, items, out))


# ---- queries --------------------------------------------------------------
def _states(request: Request) -> list[WorkflowState] | None:
    raw = request.query_params.getlist("state")
    try:
        return [WorkflowState(s) for s in raw] or None
    except ValueError:
        allowed = ", ".join(s.value for s in WorkflowState)
        raise FlowsightError(f"query parameter 'state': {raw!r} has an unknown state; use {allowed}") from None


async def get_runs(request: Request, st: ServerContext) -> Response:
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

    def work() -> S.RunPage:
        page = st.store.runs.list_runs(
            workflow=workflow, states=states, since=since, until=until, text=text, limit=limit, cursor=cursor
        )
        views = Views(st.store, time.time(), stall_timeout=st.stall_timeout).views(page.runs)
        return S.RunPage(runs=[run_out(v) for v in views], cursor=page.cursor)

    return json(await asyncio.to_thread(work))


async def get_run(request: Request, st: ServerContext) -> Response:
    run_id = request.path_params["run_id"]
    if "\x00" in run_id:  # no run has one (ingest refuses it), and PostgreSQL cannot look it up
        return error(404, f"no run {run_id!r}")

    def work() -> S.RunDetailOut | None:
        run = st.store.runs.get_run(run_id)
        if run is None:
            return None
        return run_detail_out(Views(st.store, time.time(), stall_timeout=st.stall_timeout).detail(run))

    detail = await asyncio.to_thread(work)
    return json(detail) if detail is not None else error(404, f"no run {run_id!r}")


async def get_run_events(request: Request, st: ServerContext) -> Response:
    run_id = request.path_params["run_id"]
    if "\x00" in run_id:
        return error(404, f"no run {run_id!r}")
    after = _int(request, "after", 0, 0, 2**62)
    limit = _int(request, "limit", 1000, 1, 10_000)

    def work() -> S.EventPage | None:
        if st.store.runs.get_run(run_id) is None:
            return None
        rows = st.store.runs.events_after(after, run_id=run_id, limit=limit)
        events = [S.EventOut(**msgspec.structs.asdict(ev), seq=seq) for seq, ev in rows]
        return S.EventPage(events=events, next_after=rows[-1][0] if len(rows) == limit else None)

    page = await asyncio.to_thread(work)
    return json(page) if page is not None else error(404, f"no run {run_id!r}")


async def get_workflows(request: Request, st: ServerContext) -> Response:
    stats = await asyncio.to_thread(st.store.stats.workflow_stats)
    return json(S.WorkflowList(workflows=[S.WorkflowOut(**w) for w in stats]))


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


async def get_stream(request: Request, st: ServerContext) -> Response:
    last_seq = _last_event_id(request.headers.get("last-event-id"))
    flt = EventFilter(workflow=_text(request, "workflow"), run_id=_text(request, "run_id"))
    return EventStreamResponse(
        event_stream(st.hub, flt, last_seq, streams=st.streams, client=request.client),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def routes() -> list[Route]:
    return [
        route("/api/v1/events", POST=("ingest", post_events)),
        route("/api/v1/runs", GET=("read", get_runs)),
        # ':path': a run id may hold a '/' (sent as %2F, which routing sees decoded);
        # a run whose id ends in '/events' or '/logs' is then reached through that route only
        route("/api/v1/runs/{run_id:path}/events", GET=("read", get_run_events)),
        route("/api/v1/runs/{run_id:path}", GET=("read", get_run)),
        route("/api/v1/workflows", GET=("read", get_workflows)),
        route("/api/v1/stream", GET=("read", get_stream)),
    ]
