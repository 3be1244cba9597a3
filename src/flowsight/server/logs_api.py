"""``POST /api/v1/logs`` (ingest) and ``GET /api/v1/logs``,
``GET /api/v1/runs/{run_id}/logs``, ``GET /api/v1/logs/templates`` (read).

A POST body goes through the same checks as events
(:func:`flowsight.server.ingest.read_json_body`, :func:`~flowsight.server.ingest.decode_items`):
415, 413 and 400 for a body refused as a whole, and an answer per entry
otherwise: accepted, duplicate (its id was stored before: a retry) or
rejected with the reason and the field. Entries are written in one
transaction and acknowledged only once it committed.

After the commit, and before the answer, the app's ``on_logs`` hook (if any)
is called with the entries newly stored (duplicates left out), in order, on
the event loop; it may return an awaitable, which is awaited. It should be
quick (hand the entries to a queue): the client waits for it. An exception
from it is logged and changes nothing of the answer: the entries are stored.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from flowsight.errors import EventError, FlowsightError, LogEntryError
from flowsight.logs.records import LogRecord, StoredLog, WireLog, finish_wire_log, parse_log_items
from flowsight.logs.entries import LogLevel, level_from_word
from flowsight.server.ingest import decode_items, decode_off_loop, read_json_body, rejected, tally, write_answer
from flowsight.server.params import int_param, text_param, time_param
from flowsight.server import schemas as S
from flowsight.server.http import json, route
from flowsight.server.views import log_out
from starlette.routing import Route

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext

log = logging.getLogger("flowsight.logs")

_fast = msgspec.json.Decoder(list[WireLog] | WireLog)
INLINE_MAX = 64  # as the hub: a store that waits on the network gets a thread for bigger batches
LEVEL_NAMES = [level.value for level in LogLevel]
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


def answer(items: Sequence[LogRecord | EventError], stored: Sequence[StoredLog | None]) -> S.IngestResponse:
    """The per-entry answer; ``stored`` holds one value per valid item, in order."""
    results: list[S.ItemResult] = []
    fates = iter(stored)
    for i, item in enumerate(items):
        if isinstance(item, EventError):
            results.append(rejected(i, item))
        else:
            status: S.ItemStatus = "accepted" if next(fates) is not None else "duplicate"
            results.append(S.ItemResult(index=i, status=status, id=item.id))
    return tally(results)


async def post_logs(request: Request, st: ServerContext) -> Response:
    body = await read_json_body(request, st.limits)
    now = time.time()

    def finish(wire: WireLog) -> LogRecord:
        return finish_wire_log(wire, now)

    def parse(data: list[Any]) -> list[LogRecord | LogEntryError]:
        return parse_log_items(data, now)

    def decode(raw: bytes) -> list[LogRecord | EventError]:
        return decode_items(raw, st.limits, fast=_fast, finish=finish, parse=parse, noun="log", plural="log entries")

    items = await decode_off_loop(body, decode)
    stored = await store_logs(st, [it for it in items if isinstance(it, LogRecord)])
    out = answer(items, stored)
    st.logs_rejected += out.rejected
    return json(*write_answer(body, items, out))


async def store_logs(st: ServerContext, records: list[LogRecord]) -> list[StoredLog | None]:
    """Store ``records`` (None for each already stored) and tell the ``on_logs`` hook of the new ones."""
    stored: list[StoredLog | None] = []
    if records:
        if st.store.writes_inline or len(records) <= INLINE_MAX:
            stored = st.store.logs.write_logs(records)
        else:
            stored = await asyncio.to_thread(st.store.logs.write_logs, records)
    new = [s for s in stored if s is not None]
    if new and st.on_logs is not None:
        try:
            pending = st.on_logs(new)
            if inspect.isawaitable(pending):
                await pending
        except Exception:  # the entries are committed: the client is told so whatever the hook did
            log.exception("the on_logs hook failed on %d stored entries", len(new))
    return stored


# ---- queries --------------------------------------------------------------
#: a page of log entries' cursor: ``a`` (oldest first) or ``d`` (newest
#: first), then the seq after which the next page starts; any text of this
#: form is a position
LOG_CURSOR_PATTERN = r"^[ad][0-9]{1,18}$"
_LOG_CURSOR = re.compile(LOG_CURSOR_PATTERN)


def encode_cursor(descending: bool, seq: int) -> str:
    return f"{'d' if descending else 'a'}{seq}"


def decode_cursor(cursor: str) -> tuple[bool, int]:
    """(descending, seq) a cursor names.

    Raises:
        FlowsightError: it is not of the cursor's form (400).
    """
    if not _LOG_CURSOR.match(cursor):
        raise FlowsightError(
            f"query parameter 'cursor': {cursor!r} is not a cursor (a or d and a seq, as a "
            "page's 'cursor' gives); start from the first page"
        )
    return cursor[0] == "d", int(cursor[1:])


def _level(request: Request) -> LogLevel | None:
    raw = request.query_params.get("level")
    if raw is None or raw == "":
        return None
    level = level_from_word(raw)
    if level is None:
        raise FlowsightError(f"query parameter 'level': {raw!r} is not a level; use one of {', '.join(LEVEL_NAMES)}")
    return level


def _page(request: Request, run_id: str | None) -> dict[str, Any]:
    """Parse the filters (raising FlowsightError for a bad one) and return the work to do."""
    q = request.query_params
    now = time.time()
    order = q.get("order", "asc")
    if order not in ("asc", "desc"):
        raise FlowsightError(f"query parameter 'order': {order!r} must be asc (oldest first) or desc (newest first)")
    descending = order == "desc"
    after = int_param(request, "after", -1, 0, 2**62)
    cursor = q.get("cursor") or None
    seq: int | None = None
    if cursor is not None:
        descending, seq = decode_cursor(cursor)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    after_seq = after if after >= 0 else None
    before_seq = None
    if seq is not None and descending:
        before_seq = seq
    elif seq is not None:
        after_seq = max(seq, after_seq or 0)
    return {
        "run_id": run_id if run_id is not None else text_param(request, "run_id"),
        "workflow": text_param(request, "workflow"),
        "step": text_param(request, "step"),
        "min_level": _level(request),
        "template_id": text_param(request, "template"),
        "text": text_param(request, "q") or None,
        "since": time_param(request, "since", now),
        "until": time_param(request, "until", now),
        "after_seq": after_seq,
        "before_seq": before_seq,
        "newest_first": descending,
        "limit": limit,
    }


async def _logs(request: Request, st: ServerContext, run_id: str | None) -> Response:
    args = _page(request, run_id)
    limit = args["limit"]
    args["limit"] = limit + 1
    rows = await asyncio.to_thread(lambda: st.store.logs.query_logs(**args))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(args["newest_first"], rows[-1].seq) if more and rows else None
    return json(S.LogPage(logs=[log_out(r) for r in rows], cursor=nxt))


async def get_logs(request: Request, st: ServerContext) -> Response:
    return await _logs(request, st, None)


async def get_run_logs(request: Request, st: ServerContext) -> Response:
    """A run's logs; an empty page (not a 404) for a run the store has no
    events of: its logs may come before its events, or without them."""
    run_id = request.path_params["run_id"]
    if "\x00" in run_id:
        raise FlowsightError(f"run id {run_id!r}: contains a NUL character, which no run id holds")
    return await _logs(request, st, run_id)


async def get_log_templates(request: Request, st: ServerContext) -> Response:
    """The templates with the most lines in a time range (default: the last
    hour), optionally of one workflow, with their counts."""
    now = time.time()
    since = time_param(request, "since", now)
    until = time_param(request, "until", now)
    since = now - 3600 if since is None else since
    workflow = text_param(request, "workflow")
    limit = int_param(request, "limit", 20, 1, MAX_LIMIT)
    top = await asyncio.to_thread(st.alerting.template_counts, limit, since=since, until=until, workflow=workflow)
    templates = [S.TemplateCountOut(template_id=t.template_id, template=t.template, count=t.count) for t in top]
    return json(S.TemplatePage(since=since, until=until, workflow=workflow, templates=templates))


def routes() -> list[Route]:
    return [
        route("/api/v1/logs", GET=("read", get_logs), POST=("ingest", post_logs)),
        route("/api/v1/logs/templates", GET=("read", get_log_templates)),
        # before /api/v1/runs/{run_id:path}, which would take it (see flowsight.server.runs_api)
        route("/api/v1/runs/{run_id:path}/logs", GET=("read", get_run_logs)),
    ]
