"""``POST /api/v1/lineage``: OpenLineage run events (the path OpenLineage's
HTTP transport posts to by default), one event or an array of them, JSON,
gzip or not. Each is read into ``openlineage-python``'s models and mapped by
:mod:`flowsight.integrations.openlineage`; the answer is the one ``POST
/api/v1/events`` gives (each item accepted, a duplicate, or rejected with
the reason; one event sent alone and refused is a 400). An event that
changes no state (``RUNNING``, ``OTHER``) is accepted with a warning saying
so; one for a job or a dataset alone (no run) too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowsight.errors import EventError
from flowsight.integrations.openlineage import lineage_event, read_run_event
from flowsight.model.runs.events import Event
from flowsight.server import schemas as S
from flowsight.server.http import json, route
from flowsight.server.ingest import decode_any, decode_off_loop, read_json_body, rejected, tally, write_answer

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext

NO_STATE = "stored nothing: this event changes no run's state"


def _read(item: object, i: int) -> Event | EventError | None:
    try:
        if not isinstance(item, dict):
            raise EventError(f"expected an OpenLineage event object, got {type(item).__name__}")
        if "run" not in item and ("job" in item or "dataset" in item):
            return None  # a JobEvent or a DatasetEvent: no run to show
        return lineage_event(read_run_event(item))
    except EventError as exc:
        return exc.in_batch("event", i)


async def post_lineage(request: Request, st: ServerContext) -> Response:
    body = await read_json_body(request, st.limits)
    data = await decode_off_loop(body, decode_any)
    items = data if isinstance(data, list) else [data]
    if len(items) > st.limits.max_events:
        return json(S.Error(error=f"{len(items)} events in one request; the limit is {st.limits.max_events}"), 413)
    read = [_read(item, i) for i, item in enumerate(items)]
    events = [ev for ev in read if isinstance(ev, Event)]
    result = await st.committer.submit(events)
    accepted = set(result.seqs)
    results: list[S.ItemResult] = []
    for i, ev in enumerate(read):
        if isinstance(ev, EventError):
            results.append(rejected(i, ev))
        elif ev is None:
            results.append(S.ItemResult(index=i, status="accepted", warning=NO_STATE))
        elif ev.id in accepted:
            accepted.discard(ev.id)
            results.append(S.ItemResult(index=i, status="accepted", id=ev.id))
        else:
            results.append(S.ItemResult(index=i, status="duplicate", id=ev.id))
    out = tally(results)
    st.events_rejected += out.rejected
    return json(*write_answer(body, read, out))


def routes() -> list[Route]:
    return [route("/api/v1/lineage", POST=("ingest", post_lineage))]
