"""Prefect runs from a Prefect server's event stream:
``flowsight prefect watch --api URL``, with no flow edited.

The server sends each state a flow run or task run enters as an event
(``prefect.flow-run.Running``, ``prefect.task-run.Failed``, ...), the task
runs' as the flow's process reported them. The watcher follows the stream
(Prefect's own subscriber), and on every (re)connect asks for the events
since the last one it saw (at the start: ``since`` back, at most the 15
minutes the server replays). Each fact's id is made of the fact, so what is
replayed twice is stored once.

A server writes events to its database in batches, so an event it received
just before a connection dropped can be in neither the replay nor the live
stream. The watcher therefore also reads the current state of every run it
has open (and of their task runs) from the server's REST API after each
connect and every ``reconcile`` seconds: an end it missed is still said.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import httpx

from flowsight.integrations.adapter import EngineAdapter
from flowsight.integrations.prefect import StateFact, report, step_name

log = logging.getLogger("flowsight.prefect")
FLOW_RUN, TASK_RUN = "prefect.flow-run.", "prefect.task-run."
ENDED = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
#: the most a Prefect server replays on a (re)connect
MAX_REPLAY = 900.0
#: a connection is made again this long after each (re)connect, replaying the last minute: the
#: events the server received just before the first had not reached its database (written every 5 s
#: by default) and were in neither that replay nor the live stream
CATCH_UP = 10.0
ENDED_KEPT = 10_000


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _related(ev: Mapping[str, Any], role: str) -> Mapping[str, Any] | None:
    for r in ev.get("related") or ():
        if r.get("prefect.resource.role") == role:
            return r  # type: ignore[no-any-return]
    return None


def fact_of(ev: Mapping[str, Any]) -> StateFact | None:
    """The state fact of one Prefect event (its JSON form), or None for an
    event that is no flow run's or task run's state (a heartbeat, a flow made)."""
    res = ev.get("resource") or {}
    rid, type_ = str(res.get("prefect.resource.id", "")), res.get("prefect.state-type")
    if not type_:
        return None
    flow = _related(ev, "flow")
    task_run_id = None
    if rid.startswith(FLOW_RUN):
        run_id, task = rid[len(FLOW_RUN) :], None
    elif rid.startswith(TASK_RUN):
        parent = _related(ev, "flow-run")
        if parent is None:
            return None  # a task run outside any flow
        run_id, task_run_id = str(parent["prefect.resource.id"])[len(FLOW_RUN) :], rid[len(TASK_RUN) :]
        task = step_name(str(res.get("prefect.resource.name")), task_run_id)
    else:
        return None
    initial = (ev.get("payload") or {}).get("initial_state") or {}
    return StateFact(
        run_id=run_id,
        workflow=str(flow.get("prefect.resource.name")) if flow else "prefect-flow",
        task=task,
        type=str(type_),
        name=str(res.get("prefect.state-name") or type_),
        message=str(res.get("prefect.state-message") or ""),
        run_count=int(res.get("prefect.run-count") or 0),
        ts=_ts(ev.get("occurred")),
        previous=initial.get("type"),
        task_run_id=task_run_id,
    )


class PrefectMapper:
    """Events of a Prefect server as the adapter's facts, keeping which
    flow runs are open (for :meth:`reconcile`)."""

    def __init__(self, adapter: EngineAdapter, *, stall_timeout: float | None = None) -> None:
        self.adapter = adapter
        self.stall_timeout = stall_timeout
        self.open: dict[str, str] = {}  # flow run id -> its flow's name
        self.suspended: set[str] = set()  # flow runs paused or suspended now
        # flow runs seen ending, the latest ENDED_KEPT (a late task state does not reopen them)
        self.ended: dict[str, None] = {}
        self.last_seen: float | None = None  # the latest event's time

    def on_event(self, ev: Mapping[str, Any]) -> None:
        """One event; one this watcher cannot read is logged and passed over (never a reason to
        reconnect and replay it again)."""
        try:
            f = fact_of(ev)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("prefect watch: passing over event %s, which cannot be read: %r", ev.get("id"), exc)
            return
        if f is None:
            return
        self.on_fact(f)
        self.last_seen = f.ts if self.last_seen is None else max(self.last_seen, f.ts)

    def on_fact(self, f: StateFact) -> None:
        if f.task is None and f.type == "RUNNING" and f.run_id in self.suspended:
            # a Suspended run resumes through Scheduled and Pending: its Running left no PAUSED
            f = dataclasses.replace(f, previous="PAUSED")
        if f.task is None and f.type == "PAUSED":
            self.suspended.add(f.run_id)
        elif f.task is None and (f.type == "RUNNING" or f.type in ENDED):
            self.suspended.discard(f.run_id)
        report(self.adapter, f, self.stall_timeout)
        if f.task is None and f.type in ENDED:
            self.open.pop(f.run_id, None)
            self.ended[f.run_id] = None
            if len(self.ended) > ENDED_KEPT:
                del self.ended[next(iter(self.ended))]
        elif f.run_id not in self.ended:  # a task's state opens its run too (the run's own may be unseen)
            self.open[f.run_id] = f.workflow

    async def reconcile(self, http: httpx.AsyncClient) -> None:
        """Say the current state of each open flow run and of its task runs,
        as the server's REST API has them."""
        for run_id, workflow in list(self.open.items()):
            try:
                r = await http.get(f"flow_runs/{run_id}")
                if r.status_code == 404:
                    self.open.pop(run_id, None)
                    continue
                r.raise_for_status()
                tasks = await _task_runs(http, run_id)
            except httpx.HTTPError as exc:
                log.warning("prefect watch: could not read flow run %s (%s)", run_id, exc)
                return
            try:
                self._say_now(run_id, workflow, r.json(), tasks)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("prefect watch: passing over flow run %s, whose state cannot be read: %r", run_id, exc)

    def _say_now(self, run_id: str, workflow: str, flow_run: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        """The current states of a flow run and of its task runs, as facts."""
        for t in tasks:
            if t.get("state"):
                self.on_fact(_rest_fact(run_id, workflow, t, t))
        if flow_run.get("start_time"):  # it started (the same fact again, in case its Running was unseen)
            started = {**flow_run, "state": {"type": "RUNNING", "name": "Running", "timestamp": flow_run["start_time"]}}
            report(self.adapter, _rest_fact(run_id, workflow, None, started), self.stall_timeout)
        if flow_run.get("state"):
            self.on_fact(_rest_fact(run_id, workflow, None, flow_run))


#: task runs read a page at a time (Prefect's filter endpoints answer at most its default limit, 200)
PAGE = 200


async def _task_runs(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    """Every task run of a flow run, page after page."""
    found: list[dict[str, Any]] = []
    while True:
        body = {"flow_runs": {"id": {"any_": [run_id]}}, "sort": "ID_DESC", "limit": PAGE}
        r = await http.post("task_runs/filter", json={**body, "offset": len(found)})
        r.raise_for_status()
        page = r.json()
        found.extend(page)
        if len(page) < PAGE:
            return found


def auth_headers() -> dict[str, str]:
    """What Prefect's own clients send to its API: ``PREFECT_API_KEY`` as a
    bearer token (Prefect Cloud), ``PREFECT_API_AUTH_STRING`` (``user:pass``)
    as basic auth (a server behind ``server.api.auth_string``)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    key, auth = PREFECT_API_KEY.value(), PREFECT_API_AUTH_STRING.value()
    if key:
        return {"Authorization": f"Bearer {key}"}
    if auth:
        return {"Authorization": "Basic " + base64.b64encode(str(auth).encode()).decode()}
    return {}


def _rest_fact(run_id: str, workflow: str, task_run: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> StateFact:
    """The state fact of a flow run (``task_run`` None) or task run, as the REST API has it."""
    st = obj["state"]
    return StateFact(
        run_id=run_id,
        workflow=workflow,
        task=None if task_run is None else step_name(str(task_run["name"]), str(task_run["id"])),
        task_run_id=None if task_run is None else str(task_run["id"]),
        type=str(st["type"]),
        name=str(st.get("name") or st["type"]),
        message=str(st.get("message") or ""),
        run_count=int(obj.get("run_count") or 0),
        ts=_ts(st.get("timestamp") or datetime.now(timezone.utc)),
    )


async def follow(
    api_url: str,
    mapper: PrefectMapper,
    *,
    since: float = MAX_REPLAY,
    reconcile_every: float = 60.0,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Follow ``api_url``'s flow-run and task-run events into ``mapper``
    until ``stop()``; reconnects (replaying what it missed) when the server
    goes away."""
    from prefect.events.clients import PrefectEventSubscriber
    from prefect.events.filters import EventFilter, EventNameFilter

    base = api_url.rstrip("/") + "/"
    start_from = time.time() - min(since, MAX_REPLAY)
    said = False
    catch_up = True  # the next connection is the short one that follows a (re)connect
    async with httpx.AsyncClient(base_url=base, timeout=10.0, headers=auth_headers()) as http:
        while not stop():
            flt = EventFilter(event=EventNameFilter(prefix=[FLOW_RUN, TASK_RUN]))
            sub = PrefectEventSubscriber(api_url=api_url, filter=flt, reconnection_attempts=0)
            # replay from the last event seen (less a minute: Prefect's own margin), not only the last minute
            seen = mapper.last_seen
            sub._backfill_since = datetime.fromtimestamp(  # noqa: SLF001 - Prefect's replay start: no public setter
                (seen - 60.0) if seen is not None else start_from, timezone.utc
            )
            try:
                async with sub:
                    if said:
                        log.warning("prefect watch: %s answers again", api_url)
                    said = False
                    await mapper.reconcile(http)
                    await _consume(sub, mapper, http, reconcile_every, stop, CATCH_UP if catch_up else None)
                catch_up = not catch_up
            except Exception as exc:  # noqa: BLE001 - the server away (websockets', OS errors): try again
                catch_up = True
                if not said:
                    log.warning("prefect watch: the server %s is not answering (%s); retrying", api_url, exc)
                    said = True
                await asyncio.sleep(1.0)


async def _consume(
    sub: Any,
    mapper: PrefectMapper,
    http: httpx.AsyncClient,
    reconcile_every: float,
    stop: Callable[[], bool],
    for_seconds: float | None,
) -> None:
    """Hand ``sub``'s events to ``mapper`` until ``stop()`` (or for ``for_seconds``), reconciling
    every ``reconcile_every`` seconds."""
    now = time.monotonic()
    next_check = now + reconcile_every
    until = None if for_seconds is None else now + for_seconds
    it = sub.__aiter__()
    pending: asyncio.Task[Any] | None = None
    try:
        while not stop() and (until is None or time.monotonic() < until):
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=1.0)
            if done:
                ev, pending = pending.result(), None
                mapper.on_event(ev.model_dump(mode="json"))
            if time.monotonic() >= next_check:
                await mapper.reconcile(http)
                next_check = time.monotonic() + reconcile_every
    finally:
        if pending is not None:
            pending.cancel()
