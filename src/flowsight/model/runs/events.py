"""The one envelope every producer sends: :class:`Event`.

The schema is a msgspec ``Struct``; the same definition validates events from
the SDK, the HTTP API and the store, so an error message is the same wherever a
bad event comes from and always names the field.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import msgspec

from flowsight.errors import EventError
from flowsight.model.runs.ids import new_id


class EventKind(str, Enum):
    """What happened. The first four are the specification's ``ExecutionEvent``."""

    STARTED = "started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    COMPLETED = "completed"
    STEP_STARTED = "step_started"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    HEARTBEAT = "heartbeat"
    PROGRESS = "progress"
    #: a file the run wrote, registered with its sum (``Run.output``): attrs
    #: ``path`` (absolute), ``sha256`` (64 hex digits), ``size``, ``mtime``;
    #: the integrity detector checks it later (``registered = true``)
    OUTPUT = "output"

    # Enum's own __hash__ is Python code; str's is C and agrees with __eq__.
    __hash__ = str.__hash__


#: The specification's ``ExecutionEvent`` (Started, StepCompleted(step),
#: StepFailed(step, error), Completed) is this enum; step and error travel in
#: the :class:`Event` that carries the kind.
ExecutionEvent = EventKind

STEP_KINDS = frozenset({EventKind.STEP_STARTED, EventKind.STEP_COMPLETED, EventKind.STEP_FAILED})


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One thing that happened to one run of a workflow.

    ``id``: client-made, unique, time-sortable (see :mod:`flowsight.model.runs.ids`);
    a second event with an id already stored is a retry and is ignored.
    ``ts``: seconds since the epoch (the wire also accepts RFC 3339 text).
    ``step``: required for the step kinds. ``attrs``: JSON values only.
    Conventional attrs: ``total_steps`` (started), ``error``/``error_type``/
    ``traceback`` (failures), ``done``/``total`` (progress), ``reason``;
    ``ends_run_after`` (a completed step: the run completes once that many
    step completions are counted and no step is open).
    """

    id: str
    ts: float
    kind: EventKind
    workflow: str
    run_id: str
    step: str | None = None
    attrs: dict[str, Any] = {}


class WireEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str | None = None
    ts: float | datetime | None = None
    kind: EventKind
    workflow: str
    run_id: str
    step: str | None = None
    attrs: dict[str, Any] = {}


#: Ids hold 48 bits of milliseconds: the last second they can carry.
MAX_TS = 2**48 / 1000
#: The longest an event's (or a log entry's) id, and its workflow, run id and step, may be.
ID_LIMIT, NAME_LIMIT = 128, 512
#: The largest file size an ``output`` event may give (a signed 64-bit integer: both stores' BIGINT).
MAX_SIZE = 2**63 - 1
#: How deep a JSON value (an attribute, a log entry's field) may nest.
MAX_DEPTH = 64

_decoder = msgspec.json.Decoder(WireEvent)
_list_decoder = msgspec.json.Decoder(list[Any])
_encoder = msgspec.json.Encoder()
_KINDS = ", ".join(k.value for k in EventKind)


def finish_wire(wire: WireEvent) -> Event:
    """Check what the schema alone cannot, and fill the defaults (the HTTP
    ingest's hot path: one combined test for the common case)."""
    wf, rid, step, eid, ts = wire.workflow, wire.run_id, wire.step, wire.id, wire.ts
    if (
        not wf
        or not rid
        or len(wf) > NAME_LIMIT
        or len(rid) > NAME_LIMIT
        or (step is not None and len(step) > NAME_LIMIT)
        or (eid is not None and len(eid) > ID_LIMIT)
        or (not step and wire.kind in STEP_KINDS)
        or "\x00" in wf
        or "\x00" in rid
        or (step is not None and "\x00" in step)
        or (eid is not None and "\x00" in eid)
        or (
            not (wf.isascii() and rid.isascii() and (step is None or step.isascii()) and (eid is None or eid.isascii()))
            and any(text_problem(v) for v in (wf, rid, step, eid) if v)
        )
    ):
        _explain_fields(wire)
    if ts.__class__ is float and 0 <= ts < MAX_TS:
        ts_f: float = ts
    else:
        ts_f = _timestamp(ts)
    if wire.attrs:
        check_attrs(wire.attrs)
    if wire.kind is EventKind.OUTPUT:
        check_output(wire.attrs)
    return Event(
        id=eid or new_id(int(ts_f * 1e9)), ts=ts_f, kind=wire.kind, workflow=wf, run_id=rid, step=step, attrs=wire.attrs
    )


def _explain_fields(wire: WireEvent) -> None:
    """Raise the error for the first bad identifying field."""
    if not wire.run_id:
        raise EventError("field 'run_id': must not be empty", field="run_id")
    if not wire.workflow:
        raise EventError("field 'workflow': must not be empty", field="workflow")
    if wire.kind in STEP_KINDS and not wire.step:
        raise EventError(f"field 'step': required for kind {wire.kind.value!r}", field="step")
    for name, limit in (("id", ID_LIMIT), ("workflow", NAME_LIMIT), ("run_id", NAME_LIMIT), ("step", NAME_LIMIT)):
        value = getattr(wire, name)
        if value is not None and len(value) > limit:
            raise EventError(f"field '{name}': longer than {limit} characters", field=name)
        problem = None if value is None else text_problem(value)
        if problem is not None:
            raise EventError(f"field '{name}': {problem}", field=name)


def _timestamp(ts: float | datetime | None) -> float:
    """Seconds since the epoch from what the wire carried (None: now)."""
    if ts is None:
        return time.time()
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        ts_f = ts.timestamp()
    else:
        ts_f = float(ts)
    if not (math.isfinite(ts_f) and 0 <= ts_f < MAX_TS):
        raise EventError(
            f"field 'ts': not a timestamp: {ts!r} (seconds since 1970 up to the year 10889, or RFC 3339 text)",
            field="ts",
            rule=before_epoch_in_1970(ts),
        )
    return ts_f


def before_epoch_in_1970(ts: Any) -> bool:
    """An RFC 3339 time of 1970 before the epoch (``1970-01-01T00:30:00+01:00``):
    the document's pattern allows years from 1970, so its refusal is a rule."""
    return isinstance(ts, datetime) and ts.year >= 1970


def explain(exc: msgspec.ValidationError, allowed: str) -> tuple[str, str | None]:
    """msgspec's message as one a person reads, and the field it is about.
    ``allowed``: the fields to list for an unknown one."""
    text = str(exc)
    field = None
    if " - at `$." in text:
        text, _, path = text.partition(" - at `$.")
        field = path.rstrip("`")
    elif text.startswith("Object missing required field `"):
        field = text.split("`")[1]
        text = "missing (required)"
    elif text.startswith("Object contains unknown field `"):
        field = text.split("`")[1]
        text = f"unknown field (allowed: {allowed})"
    if field == "ts":
        text = f"not a timestamp ({text}); send seconds since the epoch or RFC 3339 text"
    return text, field


def _translate(exc: msgspec.ValidationError, index: int | None = None) -> EventError:
    """Turn msgspec's message into one a person reads, naming the field."""
    text, field = explain(exc, "id, ts, kind, workflow, run_id, step, attrs")
    if field is not None and field.startswith("kind") and "Invalid enum value" in text:
        text = f"{text}; expected one of: {_KINDS}"
    where = f"event {index}: " if index is not None else ""
    name = f"field '{field}': " if field else ""
    return EventError(f"{where}{name}{text}", field=field, index=index)


def parse_event(data: bytes | str | dict[str, Any]) -> Event:
    """Validate one event from JSON text or a decoded mapping.

    Raises:
        EventError: naming the field that is wrong.
    """
    try:
        if isinstance(data, dict):
            wire = msgspec.convert(data, WireEvent)
        else:
            wire = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _translate(exc) from None
    except msgspec.DecodeError as exc:
        raise EventError(f"malformed JSON: {exc}") from None
    return finish_wire(wire)


def parse_events(items: list[Any]) -> list[Event | EventError]:
    """Validate a batch item by item: a bad item never costs the good ones."""
    out: list[Event | EventError] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise EventError(f"event {i}: expected an object, got {type(item).__name__}", index=i)
            out.append(parse_event(item))
        except EventError as exc:
            if exc.index is None:
                exc = exc.in_batch("event", i)
            out.append(exc)
    return out


_HEX = frozenset("0123456789abcdef")
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def check_output(attrs: dict[str, Any]) -> None:
    """The attributes an ``output`` event must carry.

    Raises:
        EventError: naming the attribute.
    """
    path, digest = attrs.get("path"), attrs.get("sha256")
    if not isinstance(path, str) or not (path.startswith("/") or _DRIVE.match(path)):
        raise EventError(
            f"field 'attrs.path': an output event needs the absolute path of the file, got {path!r}", field="attrs.path"
        )
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
        raise EventError(
            "field 'attrs.sha256': an output event needs the file's sha256 as 64 lower-case hex "
            f"digits, got {digest!r}",
            field="attrs.sha256",
        )
    size, mtime = attrs.get("size"), attrs.get("mtime")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, (int, float)) or not (0 <= size <= MAX_SIZE) or size != int(size)
    ):
        raise EventError(
            f"field 'attrs.size': the file's size in bytes, a whole number from 0 to 2**63-1, got {size!r}",
            field="attrs.size",
        )
    if mtime is not None and (
        isinstance(mtime, bool) or not isinstance(mtime, (int, float)) or not (0 <= mtime < MAX_TS)
    ):
        raise EventError(
            f"field 'attrs.mtime': the file's modification time in seconds since 1970 (before the "
            f"year 10889), got {mtime!r}",
            field="attrs.mtime",
        )


def check_attrs(attrs: dict[str, Any], *, field: str = "attrs", error: type[EventError] = EventError) -> None:
    """Refuse attributes that JSON cannot carry, naming the attribute.

    JSON values only: dict with string keys, list (or tuple), str, int, finite
    float, bool, None; nested :data:`MAX_DEPTH` levels at most; no text that
    a store cannot keep (:func:`text_problem`). ``field``: the name of the
    mapping in messages (a log entry's ``fields`` are checked alike);
    ``error``: the class raised.

    Raises:
        EventError: ``field 'attrs.<key>': not JSON-serialisable ...``.
    """
    if not isinstance(attrs, dict):
        raise error(f"field '{field}': expected an object, got {type(attrs).__name__}", field=field)
    for key, value in attrs.items():
        if not isinstance(key, str):
            raise error(f"field '{field}': keys must be strings, got {key!r}", field=field)
        problem = text_problem(key)
        if problem is not None:
            raise error(f"field '{field}': key {key!r}: {problem}", field=field)
        problem = _json_problem(value)
        if problem is not None:
            raise error(
                f"field '{field}.{key}': not JSON-serialisable ({problem})",
                field=f"{field}.{key}",
                rule=problem.startswith(_RULES),
            )


# PostgreSQL keeps no NUL in text or jsonb: refused here, so an event is the
# same on both stores and one such event never fails the batch it came in.
_NUL = "contains a NUL character (\\u0000), which the PostgreSQL store cannot keep"
# A lone UTF-16 surrogate (JSON "\\ud800" unpaired) is no Unicode character:
# no database encoding takes it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_LONE = "contains a lone UTF-16 surrogate ({}), which is not a Unicode character"


def text_problem(text: str) -> str | None:
    """Why neither store can keep ``text`` (a NUL, a lone surrogate), or None
    when both can. The one rule for every text of an event or a log entry:
    such an item is refused, naming the field."""
    if "\x00" in text:
        return _NUL
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found is not None:
            return _LONE.format(ascii(found.group())[1:-1])
    return None


_NOT_FINITE = "is not valid JSON: it has no NaN or infinity"
_TOO_DEEP = "nested deeper than"
#: the problems no JSON Schema states (see EventError.rule): how their messages start
_RULES = ("inf ", "-inf ", "nan ", _TOO_DEEP)


def _json_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not a plain JSON value (that both stores keep), or None when it is."""
    if isinstance(value, str):
        return text_problem(value)
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} {_NOT_FINITE}"
    if depth > MAX_DEPTH:
        return f"{_TOO_DEEP} {MAX_DEPTH} levels"
    if isinstance(value, (list, tuple)):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return f"object key {k!r} is not a string"
            problem = text_problem(k)
            if problem is not None:
                return f"object key {k!r}: {problem}"
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"{type(value).__name__} is not a JSON type"


def encode_attrs(attrs: dict[str, Any]) -> str:
    """JSON text of an attribute mapping (``{}`` for an empty one)."""
    return _encoder.encode(attrs).decode() if attrs else "{}"


_attrs_decoder = msgspec.json.Decoder(dict[str, Any])


def decode_attrs(text: str | bytes | dict[str, Any] | None) -> dict[str, Any]:
    """Inverse of :func:`encode_attrs` (PostgreSQL's jsonb may hand back a dict)."""
    if not text:
        return {}
    if isinstance(text, dict):
        return text
    return _attrs_decoder.decode(text)


def make_event(
    kind: EventKind | str,
    workflow: str,
    run_id: str,
    step: str | None = None,
    attrs: dict[str, Any] | None = None,
    *,
    ts: float | None = None,
    event_id: str | None = None,
) -> Event:
    """Build a checked event in code (tests, the CLI, monitors)."""
    try:
        kind_text = EventKind(kind).value
    except ValueError:
        raise EventError(f"field 'kind': unknown kind {kind!r}; expected one of: {_KINDS}", field="kind") from None
    data: dict[str, Any] = {"kind": kind_text, "workflow": workflow, "run_id": run_id}
    if step is not None:
        data["step"] = step
    if attrs:
        data["attrs"] = attrs
    if ts is not None:
        data["ts"] = ts
    if event_id is not None:
        data["id"] = event_id
    return parse_event(data)


def to_json(event: Event) -> bytes:
    return _encoder.encode(event)
