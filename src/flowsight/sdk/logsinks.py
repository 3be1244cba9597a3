"""The writer's side of the SDK's log entries: what the client's log writer
(:attr:`flowsight.sdk.client.Client.log_writer`) builds and where it sends.

Each entry gets its id on the writer thread (time-sortable, from the entry's
time); batches go to the store (:func:`store_log_sink`) or to a server's
``POST /api/v1/logs`` through a disk spool of their own (:func:`server_log_sink`,
encoded by :func:`encode_logs`). :mod:`flowsight.sdk.logs` (the
``LogHandler``) re-exports these names; they live here, below both it and
the client, so that neither imports the other's module to get them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from flowsight.model.runs.events import MAX_TS
from flowsight.model.runs.ids import new_ids
from flowsight.logs.records import LogRecord
from flowsight.logs.entries import FieldValue, LogEntry
from flowsight.sdk.transport import StoreSink
from flowsight.store.interface import Store

if TYPE_CHECKING:
    import httpx

    from flowsight.sdk.http import HttpOptions, HttpSink

__all__ = ["build_log_records", "encode_logs", "server_log_sink", "store_log_sink"]


def build_log_records(entries: list[LogEntry]) -> list[LogRecord]:
    """Records with their ids, made from each entry's time (the log writer's ``build``)."""
    now = time.time_ns()
    ids = new_ids([int(e.timestamp * 1e9) if 0 <= e.timestamp < MAX_TS else now for e in entries])
    return [LogRecord(i, e) for i, e in zip(ids, entries)]


class _WireLog(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The structured item of ``POST /api/v1/logs`` (flowsight.logs.records.WireLog)."""

    id: str
    ts: float
    level: str
    message: str
    source: str
    workflow: str | None = None
    run_id: str | None = None
    step: str | None = None
    fields: dict[str, FieldValue] = {}


_enc = msgspec.json.Encoder()


def _plain(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    return fields if type(fields) is dict else dict(fields)


def encode_logs(records: list[LogRecord]) -> bytes:
    """A batch as the JSON array ``POST /api/v1/logs`` takes. Text that the
    server refuses, as no store keeps it, becomes U+FFFD rather than cost its
    entry, as the log tailers do: a NUL, a lone surrogate (text decoded with
    ``surrogateescape``: file names, bytes of a child's output; UTF-8 cannot
    carry one either)."""
    items = [
        _WireLog(
            id=r.id,
            ts=e.timestamp,
            level=e.level.value,
            message=e.message,
            source=e.source,
            workflow=e.workflow,
            run_id=e.run_id,
            step=e.step,
            fields=_plain(e.fields),
        )
        for r in records
        for e in (r.entry,)
    ]
    try:
        body = _enc.encode(items)
    except UnicodeEncodeError:  # rare: clean every text and encode again
        return _enc.encode([_cleaned(item) for item in items])
    if b"\\u0000" in body:  # rare too: a NUL (or a text that says \\u0000: cleaning changes nothing then)
        return _enc.encode([_cleaned(item) for item in items])
    return body


_UNKEPT = re.compile("[\x00\ud800-\udfff]")


def _text(value: str) -> str:
    return _UNKEPT.sub("\ufffd", value)


def _cleaned(item: _WireLog) -> _WireLog:
    return _WireLog(
        id=_text(item.id),
        ts=item.ts,
        level=item.level,
        message=_text(item.message),
        source=_text(item.source),
        workflow=None if item.workflow is None else _text(item.workflow),
        run_id=None if item.run_id is None else _text(item.run_id),
        step=None if item.step is None else _text(item.step),
        fields={_text(k): _text(v) if isinstance(v, str) else v for k, v in item.fields.items()},
    )


def _save_logs(store: Store, records: list[LogRecord]) -> object:
    return store.logs.save_logs(records)


def _purge_logs(store: Store, before: float) -> int:
    return store.logs.purge_logs(before)


def store_log_sink(db_url: str, retention: float | None) -> StoreSink[LogRecord]:
    """Log entries into the store at ``db_url`` (its own connection, opened on
    the writer thread), older than ``retention`` seconds purged."""
    from flowsight.store.opener import open_store

    return StoreSink(
        lambda: open_store(db_url), write=_save_logs, prune=_purge_logs, what="log entries", retention=retention
    )


def server_log_sink(
    url: str,
    token: str | None,
    *,
    options: HttpOptions,
    spool_root: str | os.PathLike[str] | None,
    transport: httpx.BaseTransport | None,
) -> HttpSink[LogRecord]:
    """Log entries to ``POST /api/v1/logs`` of the server at ``url``, through
    the spool directory ``<spool of url>/logs``."""
    from flowsight.sdk.http import LOGS_PATH, HttpSink, spool_key
    from flowsight.sdk.spool import Spool, log_spool_dir

    spool = Spool(
        log_spool_dir(spool_key(url), spool_root),  # below the events' spool, kept for the same servers
        max_bytes=options.spool_max_bytes,
        label=f"{url} (log entries)",
        what="log entries",
    )
    return HttpSink(
        url,
        token,
        spool=spool,
        options=options,
        transport=transport,
        path=LOGS_PATH,
        encode=encode_logs,
        what="log entries",
        thread_name="flowsight-log-sender",
    )
