"""Schedules over HTTP: ``GET /api/v1/schedules`` (each scheduled workflow's
last slots, next expected start, streak), ``GET``/``PUT``/``DELETE
/api/v1/schedules/{workflow}`` (expectations set through the API; those of
``flowsight.toml`` are changed there), and the pings:

``POST /api/v1/ping/{workflow}[/start|/success|/fail|/EXIT_CODE]``
    What a shell script, a crontab line or a Kubernetes CronJob sends with
    ``curl`` (Healthchecks' form): ``start`` starts a run; ``success``
    (also the bare path) and exit code ``0`` complete it, ``fail`` and a
    non-zero exit code fail it. ``?run_id=`` names the run (a retried ping
    with it counts once); without it, an end completes the workflow's latest
    run started by a ping, or, when there is none, is a run of its own whose
    start is not known (never judged too short). ``?manual=1`` marks a run
    started by hand: it is not counted against a slot. The body (up to 100
    KiB; the rest is cut) is kept as the run's log, a line per entry, each
    line's level read from its text. Authenticated as ``POST
    /api/v1/events`` is (scope ``ingest``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight.errors import FlowsightError, HttpError
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.logs.parse import parse_line
from flowsight.logs.records import LogRecord
from flowsight.model.runs.events import NAME_LIMIT, Event, EventKind, text_problem
from flowsight.model.runs.ids import fact_id, new_id
from flowsight.model.runs.state import WorkflowState
from flowsight.model.schedules import ExpectationError, make_expectations
from flowsight.server import schemas as S
from flowsight.server.http import json, route
from flowsight.server.logs_api import store_logs
from flowsight.server.params import int_param
from flowsight.server.views import schedule_list, schedule_out

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext

#: a ping's body kept as the run's log, at most (Healthchecks keeps 100 KB too)
PING_BODY_LIMIT = 100 * 1024
_ACTIONS = {"start": EventKind.STARTED, "success": EventKind.COMPLETED, "fail": EventKind.FAILED}


# ---- reading -----------------------------------------------------------------------
async def get_schedules(request: Request, st: ServerContext) -> Response:
    slots = int_param(request, "slots", 20, 0, 50)
    states = await asyncio.to_thread(st.alerting.schedules.snapshot)
    return json(schedule_list(states, slots))


async def get_schedule(request: Request, st: ServerContext) -> Response:
    workflow = request.path_params["workflow"]
    slots = int_param(request, "slots", 50, 0, 50)
    found = next(iter(await asyncio.to_thread(st.alerting.schedules.snapshot, workflow)), None)
    if found is None:
        raise HttpError(404, f"workflow {workflow!r} has no expectations (GET /api/v1/schedules lists those that do)")
    return json(schedule_out(found, slots))


# ---- setting ------------------------------------------------------------------------
async def put_schedule(request: Request, st: ServerContext) -> Response:
    workflow = _workflow(request)
    body = await request.body()
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise FlowsightError(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FlowsightError("expected a JSON object of expectations (schedule, every, timezone, start_grace, ...)")
    _not_configured(st, workflow)
    try:
        exp = make_expectations(workflow, doc)
    except ExpectationError as exc:
        raise HttpError(422, str(exc)) from None
    since = await asyncio.to_thread(st.store.schedules.set_expectation, workflow, exp.to_doc(), "api", time.time())
    await asyncio.to_thread(st.alerting.schedules.set_expectations, workflow, exp, since)
    return json(S.ExpectationsOut(workflow=workflow, expectations=exp.to_doc(), schedule=exp.describe()))


async def delete_schedule(request: Request, st: ServerContext) -> Response:
    workflow = _workflow(request)
    _not_configured(st, workflow)
    if not await asyncio.to_thread(st.store.schedules.remove_expectation, workflow):
        raise HttpError(404, f"workflow {workflow!r} has no expectations set through the API")
    await asyncio.to_thread(st.alerting.schedules.set_expectations, workflow, None)
    return json(S.ExpectationsOut(workflow=workflow, expectations={}, schedule="not scheduled"))


def _workflow(request: Request) -> str:
    workflow: str = request.path_params["workflow"]
    _name("workflow", workflow)
    return workflow


def _name(what: str, value: str) -> None:
    """A name as the events' checks take it (1 to NAME_LIMIT characters, no NUL, no lone surrogate)."""
    problem = text_problem(value) if value else "must not be empty"
    if problem is None and len(value) > NAME_LIMIT:
        problem = f"longer than {NAME_LIMIT} characters"
    if problem is not None:
        raise FlowsightError(f"{what}: {problem}")


def _not_configured(st: ServerContext, workflow: str) -> None:
    if workflow in st.alerting.config.expectations:
        raise HttpError(
            409,
            f"workflow {workflow!r} has its expectations in {st.alerting.config.file or 'flowsight.toml'}: change them there",
        )


# ---- pings ---------------------------------------------------------------------------
async def ping(request: Request, st: ServerContext) -> Response:
    workflow = _workflow(request)
    action = request.path_params.get("action", "success")
    kind, attrs = _action(action)
    q = request.query_params
    run_id = q.get("run_id") or None
    if run_id is not None:
        _name("query parameter 'run_id'", run_id)
    flag = q.get("manual", "0")
    if flag not in ("1", "0", "true", "false"):
        raise FlowsightError(f"query parameter 'manual': expected 1, 0, true or false, got {flag!r}")
    by_hand = flag in ("1", "true")
    body = await _body(request)
    now = time.time()
    entries = _entries(workflow, body, now)
    events: list[Event] = []
    start_attrs: dict[str, Any] = {"via": "ping"}
    if by_hand:
        start_attrs["trigger"] = "manual"
    if kind is EventKind.STARTED:
        rid = run_id or new_id()
        if run_id is not None:
            await asyncio.to_thread(_run_of, st, workflow, run_id)  # another workflow's: refused
        events.append(_event(kind, workflow, rid, now, start_attrs, keyed=run_id is not None))
    else:
        rid, known = await asyncio.to_thread(_run_to_end, st, workflow, run_id)
        if not known:
            events.append(
                _event(
                    EventKind.STARTED,
                    workflow,
                    rid,
                    now,
                    {**start_attrs, "start_unknown": True},
                    keyed=run_id is not None,
                )
            )
        if kind is EventKind.FAILED:  # the error: the exit status, and what the body says went wrong
            said, line = attrs.get("error"), _error_line(entries)
            attrs["error"] = f"{said}: {line}" if said and line else said or line or "failed (ping)"
        events.append(_event(kind, workflow, rid, now, attrs, keyed=run_id is not None))
    result = await st.committer.submit(events)
    # the body's lines as the run's log: ids made of the ping's event id (a retry counts once)
    eid = events[-1].id
    lines = await store_logs(st, [LogRecord(f"{eid}-{k:05d}", replace(e, run_id=rid)) for k, e in enumerate(entries)])
    return json(
        S.PingOut(
            workflow=workflow,
            run_id=rid,
            events=[e.kind.value for e in events],
            duplicates=len(result.duplicates),
            log_lines=len(lines),
            refused=[
                f"{t.old_state.value} -> {t.new_state.value}: {t.reason or 'not allowed'}"
                for t in result.refused_transitions
            ],
        )
    )


def _action(action: str) -> tuple[EventKind, dict[str, Any]]:
    kind = _ACTIONS.get(action)
    if kind is not None:
        return kind, {}
    if action.isascii() and action.isdigit() and len(action) <= 3 and int(action) <= 255:
        code = int(action)
        if code == 0:
            return EventKind.COMPLETED, {"exit_code": 0}
        return EventKind.FAILED, {"exit_code": code, "error": f"exit status {code}"}
    raise HttpError(404, f"unknown ping {action!r}: start, success, fail or an exit code (0-255)")


async def _body(request: Request) -> str:
    raw = b""
    async for chunk in request.stream():
        if len(raw) < PING_BODY_LIMIT:
            raw += chunk
    text = raw[:PING_BODY_LIMIT].decode("utf-8", errors="replace")
    return text + ("\n[flowsight: the rest of the body was cut at 100 KiB]" if len(raw) > PING_BODY_LIMIT else "")


def _event(kind: EventKind, workflow: str, run_id: str, now: float, attrs: dict[str, Any], *, keyed: bool) -> Event:
    """With a run id given, the event's id is made of it: the same ping again is a duplicate."""
    eid = fact_id("ping", workflow, run_id, kind.value) if keyed else new_id()
    return Event(id=eid, ts=now, kind=kind, workflow=workflow, run_id=run_id, attrs=attrs)


def _run_to_end(st: ServerContext, workflow: str, run_id: str | None) -> tuple[str, bool]:
    """The run an end ping ends, and whether it is stored: ``run_id``, or
    the workflow's latest live run started by a ping; else a new one."""
    if run_id is not None:
        return run_id, _run_of(st, workflow, run_id)
    page = st.store.runs.list_runs(workflow=workflow, states=(WorkflowState.RUNNING,), limit=20)
    for m in page.runs:
        if m.attrs.get("via") == "ping":
            return m.run_id, True
    return new_id(), False


def _run_of(st: ServerContext, workflow: str, run_id: str) -> bool:
    """Whether ``run_id`` is stored, as a run of ``workflow``.

    Raises:
        HttpError: 409, it is a run of another workflow (run ids are one namespace: a
            ``run_id`` made of the time alone clashes between jobs started in the same second).
    """
    m = st.store.runs.get_run(run_id)
    if m is not None and m.workflow != workflow:
        raise HttpError(
            409,
            f"run {run_id!r} is a run of workflow {m.workflow!r}, not {workflow!r}: give each run an id "
            f"of its own (e.g. {workflow}-$(date +%s))",
        )
    return m is not None


def _entries(workflow: str, body: str, now: float) -> list[LogEntry]:
    """The body's lines, each an entry of the workflow (its level read from its text)."""
    return [
        replace(parse_line(ln, source="ping", now=now), workflow=workflow) for ln in body.splitlines() if ln.strip()
    ]


def _error_line(entries: list[LogEntry]) -> str:
    """The body's line that says what went wrong: its first at error level or
    above, else its last (where a traceback says the exception)."""
    if not entries:
        return ""
    worst = next((e for e in entries if e.level >= LogLevel.ERROR), entries[-1])
    return worst.message.strip()[:500]


def routes() -> list[Route]:
    return [
        route("/api/v1/schedules", GET=("read", get_schedules)),
        route(
            "/api/v1/schedules/{workflow}",
            GET=("read", get_schedule),
            PUT=("ingest", put_schedule),
            DELETE=("ingest", delete_schedule),
        ),
        route("/api/v1/ping/{workflow}", POST=("ingest", ping)),
        route("/api/v1/ping/{workflow}/{action}", POST=("ingest", ping)),
    ]
