"""What the write routes check of an item beyond its wire struct's types,
said in JSON Schema for the OpenAPI document (:mod:`flowsight.server.openapi`
merges these into the schemas msgspec generates from the structs).

The checks themselves stay where they run, on the ingest's hot path without
a schema validator: :func:`flowsight.model.runs.events.finish_wire`,
:func:`flowsight.logs.records.finish_wire_log` and the silence route. The
Schemathesis test (``tests/server/test_openapi.py``) holds the two together:
an item the document allows is accepted, an item it forbids is refused. What
no JSON Schema can state (a time more than a day ahead of the server's clock,
JSON nested deeper than 64 levels, a number no float holds, a silence that
ends before it starts, a regular expression RE2 cannot compile) is said in
the descriptions, and a single item refused by it is answered 422 instead of
400 (:attr:`flowsight.errors.EventError.rule`).
"""

from __future__ import annotations

from typing import Any

from flowsight.model.runs.events import ID_LIMIT, MAX_DEPTH, MAX_SIZE, MAX_TS, NAME_LIMIT, STEP_KINDS, EventKind
from flowsight.logs.parse import MAX_AHEAD
from flowsight.logs.entries import LEVEL_WORDS
from flowsight.server.schemas import KEPT_CHAR

#: a text both stores keep: no NUL, no lone UTF-16 surrogate (the document
#: shows the NUL; see flowsight.server.openapi._document_patterns)
KEPT = f"^{KEPT_CHAR}*$"
JSON_VALUE_REF = "#/components/schemas/JsonValue"


def text(
    *, min_length: int = 0, max_length: int | None = None, nullable: bool = False, pattern: str = KEPT
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "pattern": pattern}
    if min_length:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    return {"anyOf": [schema, {"type": "null"}]} if nullable else schema


#: any JSON value whose texts, keys too, both stores keep (recursive)
JSON_VALUE: dict[str, Any] = {
    "description": f"any JSON value whose texts (object keys too) hold no NUL; nested {MAX_DEPTH} levels at most, "
    "numbers within a double's range (refused otherwise, with 422: no schema states a depth)",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},
        text(),
        {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
        {"type": "object", "propertyNames": {"pattern": KEPT}, "additionalProperties": {"$ref": JSON_VALUE_REF}},
    ],
}
JSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": KEPT},
    "additionalProperties": {"$ref": JSON_VALUE_REF},
}


def timestamp(default: str) -> dict[str, Any]:
    return {
        "description": f"seconds since 1970 (before the year 10889), or RFC 3339 text from 1970 on; default: {default}",
        "anyOf": [
            {"type": "number", "minimum": 0, "exclusiveMaximum": MAX_TS},
            {"type": "string", "format": "date-time", "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-"},
            {"type": "null"},
        ],
    }


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


#: a level word, any case (flowsight.logs.entries.level_from_word)
LEVEL_PATTERN = "^(" + "|".join(_any_case(w) for w in sorted(LEVEL_WORDS, key=len, reverse=True)) + ")$"
_NAMES = {
    "workflow": text(max_length=NAME_LIMIT, nullable=True),
    "run_id": text(max_length=NAME_LIMIT, nullable=True),
    "step": text(max_length=NAME_LIMIT, nullable=True),
    "id": text(max_length=ID_LIMIT, nullable=True),
}

EVENT: dict[str, Any] = {
    "description": "An event as sent; `id` (recommended: it makes a retry safe) and `ts` are filled in when absent. "
    "Step kinds need a `step`; an `output` event carries the file's absolute `path` and `sha256`.",
    "properties": {
        **_NAMES,
        "workflow": text(min_length=1, max_length=NAME_LIMIT),
        "run_id": text(min_length=1, max_length=NAME_LIMIT),
        "ts": timestamp("when it arrives"),
        "attrs": JSON_OBJECT,
    },
    "allOf": [
        {
            "if": {"required": ["kind"], "properties": {"kind": {"enum": sorted(k.value for k in STEP_KINDS)}}},
            "then": {"required": ["step"], "properties": {"step": text(min_length=1)}},
        },
        {
            "if": {"required": ["kind"], "properties": {"kind": {"const": EventKind.OUTPUT.value}}},
            "then": {
                "required": ["attrs"],
                "properties": {
                    "attrs": {
                        "required": ["path", "sha256"],
                        "properties": {
                            "path": {"type": "string", "pattern": "^(/|[A-Za-z]:[\\\\/])"},
                            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            "size": {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
                            "mtime": {"type": "number", "minimum": 0, "exclusiveMaximum": MAX_TS},
                        },
                    }
                },
            },
        },
    ],
}

LOG: dict[str, Any] = {
    "description": "A log entry as sent: `message` (with `level`, `ts`, `fields`), or a raw `line` whose level, time "
    f"and fields are read from its text. `ts` more than {MAX_AHEAD / 3600:g} hours ahead of the "
    "server's clock is refused (422: an entry from the future would outlive every retention), as is "
    "a value read from a `line` that holds a NUL (written as \\u0000 in a JSON line).",
    "properties": {
        **_NAMES,
        "ts": timestamp("when it arrives"),
        "level": {
            "anyOf": [{"type": "string", "pattern": f"{LEVEL_PATTERN}|^$"}, {"type": "null"}],
            "description": "a level word, any case: "
            + ", ".join(w.lower() for w in LEVEL_WORDS)
            + " (default: info); empty or absent with `line`",
        },
        "message": text(nullable=True),
        "line": text(nullable=True),
        "source": text(nullable=True),
        "fields": JSON_OBJECT,
    },
    "anyOf": [
        {
            "title": "structured",
            "required": ["message"],
            "properties": {
                "message": {"type": "string"},
                "line": {"type": "null"},
                "level": {"anyOf": [{"type": "string", "pattern": LEVEL_PATTERN}, {"type": "null"}]},
            },
        },
        {
            "title": "raw line",
            "required": ["line"],
            "properties": {
                "line": {"type": "string"},
                "message": {"type": "null"},
                "level": {"enum": [None, ""]},
                "fields": {"type": "object", "maxProperties": 0},
            },
        },
    ],
}

SILENCE: dict[str, Any] = {
    "description": "`matchers` like `workflow=nightly-etl`, `severity!=info`, `alertname=~Run.*`; give `duration` "
    "(`2h`) or `ends_at`. Refused with 422: an end not after the start (`starts_at`, default now), a "
    "zero duration, a regular expression RE2 cannot compile, an end past the year 10889.",
    "anyOf": [
        {"required": ["duration"], "properties": {"duration": {"type": "string"}}},
        {"required": ["ends_at"], "properties": {"ends_at": {"type": "number"}}},
    ],
}

#: component name -> what to merge into msgspec's schema of it
REFINEMENTS: dict[str, dict[str, Any]] = {"WireEvent": EVENT, "WireLog": LOG, "SilenceIn": SILENCE}


def refine(components: dict[str, Any]) -> None:
    """Merge :data:`REFINEMENTS` into ``components`` (properties one by one) and add ``JsonValue``."""
    components["JsonValue"] = JSON_VALUE
    for name, extra in REFINEMENTS.items():
        schema = components[name]
        for key, value in extra.items():
            if key == "properties":
                schema["properties"].update(value)
            else:
                schema[key] = value
