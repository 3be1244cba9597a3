"""Log entries as they are kept and sent: :class:`LogRecord` (an entry with
its id, the dedupe key, and its template), :class:`StoredLog` (a record with
its place in the store), and the wire form of ``POST /api/v1/logs``. No I/O.

An item on the wire is either structured::

    {"id"?, "ts"?, "level"?, "message", "source"?, "workflow"?, "run_id"?, "step"?, "fields"?}

or a raw line, read with :func:`flowsight.logs.parse.parse_line` (level,
time and structure come from the text)::

    {"id"?, "line", "ts"?, "source"?, "workflow"?, "run_id"?, "step"?}

``ts`` of a raw line is the time given to a line whose text holds none (default:
when it arrived); ``workflow``/``run_id``/``step`` given with it win over what
the line says. Level words are read case-insensitively
(:func:`flowsight.logs.entries.level_from_word`: ``warning``, ``ERR``, ``E``...).

Text that no store keeps exactly (a NUL character, a lone UTF-16 surrogate:
:func:`flowsight.model.runs.events.text_problem`) is refused, in any field
(``fields`` keys and values too, as an event's ``attrs``): the entry is
rejected naming the field, the rest of its batch kept. ``fields`` nest
:data:`~flowsight.model.runs.events.MAX_DEPTH` levels at most. ``ts`` is refused
before 1970 or more than :data:`~flowsight.logs.parse.MAX_AHEAD` ahead of
the server's clock (an entry dated 9999 would outlive every retention); a
raw line's own time out of that range is not taken (the line keeps ``ts``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec

from flowsight.errors import LogEntryError
from flowsight.model.runs.events import (
    ID_LIMIT,
    MAX_TS,
    NAME_LIMIT,
    before_epoch_in_1970,
    check_attrs,
    explain,
    text_problem,
)
from flowsight.model.runs.ids import new_id
from flowsight.logs.parse import MAX_AHEAD, parse_line
from flowsight.logs.entries import FieldValue, LogEntry, LogLevel, level_from_word

#: where entries sent over HTTP come from, unless they say
HTTP_SOURCE = "http"
_LEVELS = ", ".join(level.value for level in LogLevel)
_ALLOWED = "id, ts, level, message, line, source, workflow, run_id, step, fields"
_NAME_LIMITS = (("id", ID_LIMIT), ("workflow", NAME_LIMIT), ("run_id", NAME_LIMIT), ("step", NAME_LIMIT))
_TEXTS = ("level", "message", "line", "source")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A log entry as the store keeps it. ``id``: unique, the dedupe key (an
    entry whose id is stored already is a retry); ``template_id``: the
    template the analyzer gave the message, if it has one yet."""

    id: str
    entry: LogEntry
    template_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoredLog:
    """A stored record and ``seq``, its place in the store's order (only
    grows, never reused: the cursor of readers)."""

    seq: int
    record: LogRecord

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def entry(self) -> LogEntry:
        return self.record.entry

    @property
    def template_id(self) -> str | None:
        return self.record.template_id


class WireLog(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One log entry as sent: either ``message`` (with ``level``, default info;
    ``ts``, default now; ``fields``) or a raw ``line`` whose level, time and
    fields are read from its text (``ts``: the time of a line that holds
    none). Send an ``id`` with each: a retry then counts once."""

    id: str | None = None
    ts: float | datetime | None = None
    level: str | None = None
    message: str | None = None
    line: str | None = None
    source: str | None = None
    workflow: str | None = None
    run_id: str | None = None
    step: str | None = None
    fields: dict[str, Any] = {}


_encoder = msgspec.json.Encoder()


def finish_wire_log(wire: WireLog, now: float) -> LogRecord:
    """Check what the schema alone cannot, parse a raw line, fill the
    defaults (time: ``now``; level: info; source: ``http``; id: a new
    time-sortable one).

    Raises:
        LogEntryError: naming the field that is wrong.
    """
    names = _names(wire)
    _check_texts(wire)
    if wire.line is not None:
        if wire.message is not None:
            raise LogEntryError("field 'line': send 'message' or 'line', not both", field="line")
        for name in ("level", "fields"):
            if getattr(wire, name):
                raise LogEntryError(
                    f"field '{name}': not with 'line': a raw line's {name} is read from its text", field=name
                )
        at = None if wire.ts is None else _timestamp(wire.ts, now)
        entry = parse_line(wire.line, source=wire.source or HTTP_SOURCE, now=now, default_ts=at)
        _check_read(entry)
        workflow, run_id, step = names
        entry = LogEntry(
            entry.timestamp,
            entry.level,
            entry.message,
            entry.source,
            workflow if workflow is not None else entry.workflow,
            run_id if run_id is not None else entry.run_id,
            step if step is not None else entry.step,
            entry.fields,
            entry.raw,
        )
    elif wire.message is None:
        raise LogEntryError("field 'message': missing (required; or send the raw text as 'line')", field="message")
    else:
        level = LogLevel.INFO
        if wire.level is not None:
            found = level_from_word(wire.level)
            if found is None:
                raise LogEntryError(
                    f"field 'level': {wire.level!r} is not a level; use one of {_LEVELS} "
                    "(any case; warning, err, critical... are read too)",
                    field="level",
                )
            level = found
        if wire.fields:
            check_attrs(wire.fields, field="fields", error=LogEntryError)
        entry = LogEntry(
            now if wire.ts is None else _timestamp(wire.ts, now),
            level,
            wire.message,
            wire.source or HTTP_SOURCE,
            *names,
            _fields(wire.fields),
        )
    return LogRecord(wire.id or new_id(int(entry.timestamp * 1e9)), entry)


def _names(wire: WireLog) -> tuple[str | None, str | None, str | None]:
    """workflow, run_id, step (empty: not given), after checking every name."""
    for name, limit in _NAME_LIMITS:
        value = getattr(wire, name)
        if value is not None and len(value) > limit:
            raise LogEntryError(f"field '{name}': longer than {limit} characters", field=name)
        problem = None if value is None else text_problem(value)
        if problem is not None:
            raise LogEntryError(f"field '{name}': {problem}", field=name)
    return wire.workflow or None, wire.run_id or None, wire.step or None


def _check_texts(wire: WireLog) -> None:
    """Refuse free text that no store keeps exactly, as the names and as events do."""
    for name in _TEXTS:
        value = getattr(wire, name)
        problem = None if value is None else text_problem(value)
        if problem is not None:
            raise LogEntryError(f"field '{name}': {problem}", field=name)


def _check_read(entry: LogEntry) -> None:
    """The same rule for what was read out of a raw line (a JSON line can
    write a NUL as ``\\u0000``)."""
    for text in (
        entry.message,
        entry.workflow,
        entry.run_id,
        entry.step,
        *entry.fields.keys(),
        *(v for v in entry.fields.values() if isinstance(v, str)),
    ):
        problem = None if not text else text_problem(text)
        if problem is not None:
            raise LogEntryError(f"field 'line': a value read from it {problem}", field="line", rule=True)


def _timestamp(ts: float | datetime, now: float) -> float:
    if isinstance(ts, datetime):
        ts_f = (ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)).timestamp()
    else:
        ts_f = float(ts)
    if not (math.isfinite(ts_f) and 0 <= ts_f < MAX_TS):
        raise LogEntryError(
            f"field 'ts': not a timestamp: {ts!r} (seconds since 1970 up to the year 10889, or RFC 3339 text)",
            field="ts",
            rule=before_epoch_in_1970(ts),
        )
    if ts_f > now + MAX_AHEAD:
        raise LogEntryError(
            f"field 'ts': {ts!r} is more than a day ahead of the server's clock; an entry's time "
            "is when it was written (an entry from the future would outlive every retention)",
            field="ts",
            rule=True,
        )
    return ts_f


def _fields(fields: dict[str, Any]) -> Mapping[str, FieldValue]:
    """Flat values as they are; a nested object or array as its JSON text
    (as :func:`~flowsight.logs.parse.parse_line` keeps them)."""
    if not fields:
        return {}
    out: dict[str, FieldValue] = {}
    for key, value in fields.items():
        out[key] = _encoder.encode(value).decode() if isinstance(value, (dict, list)) else value
    return out


def translate(exc: msgspec.ValidationError, index: int | None = None) -> LogEntryError:
    """msgspec's message as one a person reads, naming the field."""
    text, field = explain(exc, _ALLOWED)
    where = f"log {index}: " if index is not None else ""
    name = f"field '{field}': " if field else ""
    return LogEntryError(f"{where}{name}{text}", field=field, index=index)


def parse_log_items(items: list[Any], now: float) -> list[LogRecord | LogEntryError]:
    """Validate a batch item by item: a bad item never costs the good ones."""
    out: list[LogRecord | LogEntryError] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise LogEntryError(f"log {i}: expected an object, got {type(item).__name__}", index=i)
            try:
                wire = msgspec.convert(item, WireLog)
            except msgspec.ValidationError as exc:
                raise translate(exc, i) from None
            out.append(finish_wire_log(wire, now))
        except LogEntryError as exc:
            if exc.index is None:
                exc = exc.in_batch("log", i)
            out.append(exc)
    return out
