"""Log entries, kept per run and step (migration 4): :class:`Logs`.

A write is one transaction, its rows inserted in one statement (SQLite:
``executemany``; PostgreSQL: ``unnest``) with the entry's id as the
idempotency key: an id stored before is a duplicate and changes nothing.
Each stored entry gets ``seq``, its place in the store's order, which only
grows and is never reused (SQLite: ``AUTOINCREMENT``; PostgreSQL: an
identity), so a reader's cursor stays good across purges.

On PostgreSQL, writers of logs take turns (a transaction-scoped advisory
lock), so entries commit in ``seq`` order: a reader going forward by seq
(:meth:`Logs.logs_after`) never sees a gap that fills in later and never
skips an entry. (SQLite has one writer at a time anyway.)

Text: NUL characters in the message, source and names are replaced by
U+FFFD on both backends (PostgreSQL text cannot hold NUL; one such line must
not cost the batch), and so are lone surrogates, which no database encoding
takes (a tailer reading undecodable bytes with ``surrogateescape`` makes
them). ``fields`` are JSON text, kept exactly. The search (``text``) is a
case-insensitive substring of the message: ``LIKE`` on SQLite (which folds
ASCII letters only), ``ILIKE`` on PostgreSQL; ``%`` and ``_`` match themselves.

Raises (every method):
    StoreError: the database failed; nothing of the call was written.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import msgspec

from flowsight.logs.records import LogRecord, StoredLog
from flowsight.logs.entries import FieldValue, LogEntry, LogLevel
from flowsight.store.database import Database
from flowsight.store.dialect import like_containing

__all__ = ["LogRecord", "Logs", "StoredLog"]

#: the columns of a log entry as written (``seq`` is the store's)
LOG_COLUMNS = "id, ts, level, message, source, workflow, run_id, step, template_id, fields"
_COLUMNS = "seq, " + LOG_COLUMNS
_BY_RANK = list(LogLevel)
_RANK = {level: level.rank for level in LogLevel}
_SURROGATE = re.compile("[\ud800-\udfff]")
_NO_FIELDS: MappingProxyType[str, FieldValue] = MappingProxyType({})
_fields_enc = msgspec.json.Encoder()
_fields_dec = msgspec.json.Decoder(dict[str, str | int | float | bool | None])


def _clean(text: str, surrogates: bool) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return _SURROGATE.sub("\ufffd", text) if surrogates else text


def _clean_opt(text: str | None, surrogates: bool) -> str | None:
    return None if text is None else _clean(text, surrogates)


def _storable(rec: LogRecord, surrogates: bool) -> LogRecord:
    """``rec`` as the store keeps it (itself when nothing needs replacing)."""
    e = rec.entry
    if (
        not surrogates
        and "\x00" not in e.message
        and "\x00" not in e.source
        and "\x00" not in rec.id
        and not (
            (e.run_id and "\x00" in e.run_id)
            or (e.workflow and "\x00" in e.workflow)
            or (e.step and "\x00" in e.step)
            or (rec.template_id and "\x00" in rec.template_id)
        )
    ):
        return rec
    entry = replace(
        e,
        message=_clean(e.message, surrogates),
        source=_clean(e.source, surrogates),
        workflow=_clean_opt(e.workflow, surrogates),
        run_id=_clean_opt(e.run_id, surrogates),
        step=_clean_opt(e.step, surrogates),
    )
    if surrogates and e.fields:
        entry = replace(
            entry, fields={_clean(k, True): _clean(v, True) if isinstance(v, str) else v for k, v in e.fields.items()}
        )
    return LogRecord(_clean(rec.id, surrogates), entry, _clean_opt(rec.template_id, surrogates))


def _row(rec: LogRecord) -> tuple[Any, ...]:
    e = rec.entry
    fields = e.fields
    return (
        rec.id,
        e.timestamp,
        _RANK[e.level],
        e.message,
        e.source,
        e.workflow,
        e.run_id,
        e.step,
        rec.template_id,
        _fields_enc.encode(fields if type(fields) is dict else dict(fields)).decode() if fields else "{}",
    )


def row_to_stored(r: Sequence[Any]) -> StoredLog:
    """A ``logs`` row (columns as ``_COLUMNS``) as a :class:`StoredLog`."""
    fields = _NO_FIELDS if r[10] == "{}" else _fields_dec.decode(r[10])
    entry = LogEntry(float(r[2]), _BY_RANK[r[3]], r[4], r[5], r[6], r[7], r[8], fields)
    return StoredLog(int(r[0]), LogRecord(r[1], entry, r[9]))


class Logs:
    """The log entries of a store (``store.logs``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- writes ----------------------------------------------------------
    def write_logs(self, items: Sequence[LogRecord]) -> list[StoredLog | None]:
        """Store ``items`` in one transaction. Per item, in order: the
        stored entry with its seq, or None when its id was stored before
        (a retry; also the second of two items with one id in ``items``).
        The stored entry has NUL and lone surrogates replaced (see the module
        docstring); otherwise it is the item given."""
        if not items:
            return []
        try:
            records = [_storable(r, False) for r in items]
            rows = [_row(r) for r in records]
            seqs = self._insert_logs(rows)
        except UnicodeEncodeError:  # a lone surrogate somewhere (rare): clean every text and try again
            records = [_storable(r, True) for r in items]
            rows = [_row(r) for r in records]
            seqs = self._insert_logs(rows)
        out: list[StoredLog | None] = []
        for rec in records:
            seq = seqs.pop(rec.id, None)  # popped: a second item with the same id is a duplicate
            out.append(None if seq is None else StoredLog(seq, rec))
        return out

    def save_logs(self, items: Sequence[LogRecord]) -> list[bool]:
        """Store ``items`` in one transaction; per item: True = stored,
        False = a duplicate id. See :meth:`write_logs`."""
        return [s is not None for s in self.write_logs(items)]

    def _insert_logs(self, rows: list[tuple[Any, ...]]) -> dict[str, int]:
        """Insert, skipping ids stored before; the inserted ids with their seq."""
        with self._db.txn("write of logs") as cur:
            return self._db.dialect.insert_logs(cur, rows)

    def set_log_templates(self, pairs: Sequence[tuple[int, str]]) -> None:
        """Give the entries at these seqs these template ids (one transaction;
        a seq no longer stored is skipped)."""
        if not pairs:
            return
        with self._db.txn("write of log templates") as cur:
            self._db.dialect.set_log_templates(cur, [(int(s), _clean(t, True)) for s, t in pairs])

    def purge_logs(self, before_ts: float, *, chunk: int = 5000, stop: threading.Event | None = None) -> int:
        """Delete the entries with ``ts`` before ``before_ts`` (retention);
        returns how many. Deletes ``chunk`` rows per transaction, so writers
        wait for one chunk at most; ``stop`` set ends it between chunks."""
        total = 0
        sql = self._db.sql("DELETE FROM logs WHERE seq IN (SELECT seq FROM logs WHERE ts < ? ORDER BY ts LIMIT ?)")
        while stop is None or not stop.is_set():
            with self._db.txn("purge of logs") as cur:
                cur.execute(sql, (before_ts, chunk))
                n = int(cur.rowcount or 0)
            total += n
            if n < chunk:
                break
        return total

    # ---- reads -----------------------------------------------------------
    def query_logs(
        self,
        *,
        run_id: str | None = None,
        workflow: str | None = None,
        step: str | None = None,
        min_level: LogLevel | None = None,
        template_id: str | None = None,
        text: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_seq: int | None = None,
        before_seq: int | None = None,
        newest_first: bool = False,
        limit: int = 100,
    ) -> list[StoredLog]:
        """Entries matching every filter given, at most ``limit``.

        ``min_level``: that level or above; ``text``: a case-insensitive
        substring of the message; ``since``/``until``: ``since <= ts < until``.
        Order and cursor: by seq, ascending from ``after_seq`` (exclusive);
        descending ("latest first") from ``before_seq`` (exclusive) or with
        ``newest_first``. Both seqs given: the entries between them, ascending
        unless ``newest_first``.
        """
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("run_id", run_id), ("workflow", workflow), ("step", step), ("template_id", template_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(_clean(value, True))
        if min_level is not None and min_level is not LogLevel.TRACE:
            where.append("level >= ?")
            params.append(_RANK[LogLevel(min_level)])
        if text:
            op = self._db.dialect.ilike
            where.append(f"message {op} ? ESCAPE '\\'")
            params.append(like_containing(_clean(text, True)))
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if until is not None:
            where.append("ts < ?")
            params.append(until)
        if after_seq is not None:
            where.append("seq > ?")
            params.append(after_seq)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        descending = newest_first or (before_seq is not None and after_seq is None)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._db.read(
            f"SELECT {_COLUMNS} FROM logs {clause}ORDER BY seq {'DESC' if descending else 'ASC'} LIMIT ?",
            [*params, max(0, limit)],
        )
        return [row_to_stored(r) for r in rows]

    def find_log_runs(self, prefix: str, limit: int = 10) -> list[str]:
        """Run ids in the logs that start with ``prefix``, in order, at most
        ``limit`` (for short ids typed at the CLI: a run may have log lines
        and no events). Each id is one index seek (``run_id >= prefix AND
        run_id < prefix + U+10FFFF``, the next id after the last found), so
        a run with millions of lines costs what one with one line does.
        Under a linguistic collation (PostgreSQL) the range may hold ids that
        merely sort near the prefix; those are skipped."""
        prefix = _clean(prefix, True)
        high = prefix + "\U0010ffff"  # above every id that starts with the prefix
        # the MIN of a range is the first entry of the index on run_id; the
        # partial index (run_id IS NOT NULL) applies, as a range implies it
        next_id = "SELECT MIN(run_id) FROM logs WHERE run_id {} ? AND run_id < ?"
        found: list[str] = []
        low, op = prefix, ">="
        while len(found) < limit:
            row = self._db.read(next_id.format(op), [low, high])
            run_id = row[0][0] if row else None
            if run_id is None:
                break
            if run_id.startswith(prefix):
                found.append(run_id)
            low, op = run_id, ">"
        return found

    def logs_after(self, seq: int, limit: int = 1000) -> list[StoredLog]:
        """Entries stored after ``seq``, in store order (for readers of what
        others wrote, e.g. a server-side analyzer). See the module docstring:
        on PostgreSQL no entry commits below a seq already visible."""
        return self.query_logs(after_seq=seq, limit=limit)

    def unanalyzed_logs(self, limit: int = 1000) -> list[StoredLog]:
        """The oldest ``limit`` entries that have no template yet (the
        server's analyzer gives every entry one, whoever wrote it)."""
        rows = self._db.read(
            f"SELECT {_COLUMNS} FROM logs WHERE template_id IS NULL ORDER BY seq LIMIT ?", [max(0, limit)]
        )
        return [row_to_stored(r) for r in rows]

    def count_logs(self) -> int:
        return int(self._db.read("SELECT COUNT(*) FROM logs")[0][0])

    def last_log_seq(self) -> int:
        """The highest seq stored (0: none)."""
        return int(self._db.read("SELECT COALESCE(MAX(seq), 0) FROM logs")[0][0])
