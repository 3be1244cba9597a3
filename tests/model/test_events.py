"""The event envelope: what parse_event / parse_events / make_event / check_attrs
accept, and how each kind of bad input is refused (always naming the field)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flowsight.errors import EventError, FlowsightError
from flowsight.model.runs.events import Event, EventKind, check_attrs, make_event, parse_event, parse_events
from flowsight.model.runs.ids import id_time_ms

_CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
BASE: dict[str, Any] = {"kind": "started", "workflow": "etl", "run_id": "run-1"}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != key}


# ---- valid events ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1_700_000_000, 1_700_000_000.0),
        (1_700_000_000.5, 1_700_000_000.5),
        (0, 0.0),
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()),
        ("2024-01-02T03:04:05.250+00:00", datetime(2024, 1, 2, 3, 4, 5, 250_000, tzinfo=timezone.utc).timestamp()),
        ("2024-01-02T05:04:05+02:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()),
        # RFC 3339 without an offset is read as UTC
        ("2024-01-02T03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()),
    ],
)
def test_ts_is_accepted_as_epoch_seconds_or_rfc3339_text(ts: Any, expected: float) -> None:
    ev = parse_event(with_(ts=ts))
    assert ev.ts == pytest.approx(expected)
    assert isinstance(ev.ts, float)


def test_ts_in_json_text_is_accepted_as_rfc3339() -> None:
    ev = parse_event(b'{"kind": "started", "workflow": "etl", "run_id": "r", "ts": "2024-01-02T03:04:05Z"}')
    assert ev.ts == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()


def test_an_event_parses_from_json_text_and_from_a_mapping_alike() -> None:
    data = with_(ts=1_700_000_000.25, id="01HF7YATFMJ5FWG4520153H7ZF", step=None, attrs={"total_steps": 3})
    from_dict = parse_event(data)
    from_text = parse_event(msgspec.json.encode(data).decode())
    from_bytes = parse_event(msgspec.json.encode(data))
    assert from_dict == from_text == from_bytes
    assert from_dict.kind is EventKind.STARTED
    assert from_dict.attrs == {"total_steps": 3}


def test_missing_ts_defaults_to_now() -> None:
    ev = parse_event(BASE)
    now = datetime.now(timezone.utc).timestamp()
    assert now - 5 < ev.ts <= now


def test_default_id_is_a_26_char_crockford_id_carrying_the_event_time() -> None:
    ev = parse_event(with_(ts=1_700_000_000.5))
    assert len(ev.id) == 26
    assert set(ev.id) <= _CROCKFORD
    assert id_time_ms(ev.id) == 1_700_000_000_500


def test_default_ids_sort_in_the_order_of_event_time() -> None:
    times = [1_700_000_000.0 + i * 0.37 for i in range(50)]
    ids = [parse_event(with_(ts=t)).id for t in reversed(times)]
    assert sorted(ids) == list(reversed(ids))


def test_given_id_is_kept() -> None:
    assert parse_event(with_(id="my-own-id")).id == "my-own-id"


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_kind_parses_with_a_step(kind: EventKind) -> None:
    attrs = {"path": "/data/out.csv", "sha256": "0" * 64} if kind is EventKind.OUTPUT else {}
    ev = parse_event(with_(kind=kind.value, step="extract", attrs=attrs))
    assert ev.kind is kind
    assert ev.step == "extract"


def test_make_event_builds_a_checked_event_with_explicit_ts_and_id() -> None:
    ev = make_event(EventKind.STEP_COMPLETED, "etl", "run-1", "load", {"rows": 10}, ts=1_700_000_001.0, event_id="e1")
    assert ev == Event(
        id="e1",
        ts=1_700_000_001.0,
        kind=EventKind.STEP_COMPLETED,
        workflow="etl",
        run_id="run-1",
        step="load",
        attrs={"rows": 10},
    )


def test_make_event_accepts_the_kind_as_text() -> None:
    assert make_event("heartbeat", "etl", "run-1").kind is EventKind.HEARTBEAT


# ---- refused events: parse_event ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        pytest.param(without("run_id"), "run_id", "missing", id="missing run_id"),
        pytest.param(without("workflow"), "workflow", "missing", id="missing workflow"),
        pytest.param(without("kind"), "kind", "missing", id="missing kind"),
        pytest.param(with_(run_id=""), "run_id", "must not be empty", id="empty run_id"),
        pytest.param(with_(workflow=""), "workflow", "must not be empty", id="empty workflow"),
        pytest.param(with_(run_id=5), "run_id", "str", id="run_id not text"),
        pytest.param(with_(kind="exploded"), "kind", "step_completed", id="unknown kind lists the kinds"),
        pytest.param(with_(kind=3), "kind", "", id="kind not text"),
        pytest.param(with_(kind="step_started"), "step", "step_started", id="step_started without step"),
        pytest.param(with_(kind="step_completed"), "step", "step_completed", id="step_completed without step"),
        pytest.param(with_(kind="step_failed", step=""), "step", "step_failed", id="step_failed with empty step"),
        pytest.param(with_(colour="blue"), "colour", "unknown field", id="unknown field"),
        pytest.param(with_(attrs=[1, 2]), "attrs", "object", id="attrs not an object"),
        pytest.param(with_(step=7), "step", "str", id="step not text"),
        # PostgreSQL keeps no NUL: refused on both stores, so one such event never fails its batch
        pytest.param(with_(workflow="e\x00tl"), "workflow", "NUL", id="NUL in workflow"),
        pytest.param(with_(run_id="\x00"), "run_id", "NUL", id="NUL in run_id"),
        pytest.param(with_(kind="step_started", step="a\x00"), "step", "NUL", id="NUL in step"),
        pytest.param(with_(id="x\x00"), "id", "NUL", id="NUL in id"),
        pytest.param(with_(attrs={"note": "a\x00b"}), "attrs.note", "NUL", id="NUL in an attr"),
        pytest.param(with_(attrs={"deep": {"k\x00": 1}}), "attrs.deep", "NUL", id="NUL in a nested key"),
        pytest.param(with_(attrs={"k\x00": 1}), "attrs", "NUL", id="NUL in an attr name"),
        # half a UTF-16 pair is no character: no store can keep it
        pytest.param(with_(workflow="e\ud800tl"), "workflow", "lone UTF-16 surrogate (\\ud800)", id="lone surrogate"),
        pytest.param(with_(id="x\udc00"), "id", "surrogate", id="lone surrogate in id"),
        pytest.param(with_(attrs={"deep": ["\udfff"]}), "attrs.deep", "surrogate", id="lone surrogate in an attr"),
        pytest.param(with_(attrs={"\ud83d": 1}), "attrs", "surrogate", id="lone surrogate in an attr name"),
    ],
)
def test_bad_event_is_refused_naming_the_field(data: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(data)
    assert info.value.field == field
    assert f"'{field}'" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param("yesterday", id="text"),
        pytest.param("", id="empty text"),
        pytest.param(True, id="bool"),
        pytest.param(False, id="bool false"),
        pytest.param(-1, id="negative"),
        pytest.param(-0.001, id="slightly negative"),
        pytest.param(float("nan"), id="NaN"),
        pytest.param(float("inf"), id="infinity"),
        pytest.param(float("-inf"), id="minus infinity"),
        pytest.param([1_700_000_000], id="list"),
        pytest.param({"s": 1}, id="object"),
        pytest.param(10**400, id="integer beyond float"),
        pytest.param("1969-12-31T00:00:00Z", id="RFC 3339 before the epoch"),
        pytest.param(
            1e300,
            id="finite but beyond any id",
        ),
    ],
)
def test_ts_that_is_not_a_timestamp_is_refused_naming_ts(ts: Any) -> None:
    with pytest.raises(EventError) as info:
        parse_event(with_(ts=ts))
    assert info.value.field == "ts"
    assert "field 'ts'" in str(info.value)
    assert "not a timestamp" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b"not json", id="not JSON"),
        pytest.param(b'{"kind": "started", "workflow": "w", "run_id": "r", "ts": NaN}', id="NaN is not JSON"),
        pytest.param(b"[]", id="array, not object"),
        pytest.param(b"", id="empty"),
    ],
)
def test_text_that_is_no_json_object_is_refused(text: bytes) -> None:
    with pytest.raises(EventError):
        parse_event(text)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        pytest.param(object(), "not JSON-serialisable", id="object()"),
        pytest.param({1, 2}, "not JSON-serialisable", id="a set"),
        pytest.param(float("nan"), "not valid JSON", id="float nan"),
        pytest.param(float("inf"), "not valid JSON", id="float inf"),
        pytest.param([1.0, float("nan")], "not valid JSON", id="nan inside a list"),
    ],
)
def test_attribute_that_json_cannot_carry_is_refused_naming_it(value: Any, words: str) -> None:
    with pytest.raises(EventError) as info:
        check_attrs({"fine": 1, "payload": value})
    assert info.value.field == "attrs.payload"
    assert "'attrs.payload'" in str(info.value)
    assert words in str(info.value)
    with pytest.raises(EventError) as info:
        make_event("started", "etl", "run-1", attrs={"payload": value})
    assert info.value.field == "attrs.payload"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(object(), id="object()"),
        pytest.param({1, 2}, id="a set"),
        pytest.param(float("nan"), id="float nan"),
    ],
)
def test_parse_event_from_a_mapping_refuses_attributes_json_cannot_carry(value: Any) -> None:
    with pytest.raises(EventError) as info:
        parse_event(with_(attrs={"payload": value}))
    assert info.value.field == "attrs.payload"


def test_attribute_with_a_non_text_key_is_refused() -> None:
    with pytest.raises(EventError) as info:
        check_attrs({1: "x"})  # type: ignore[dict-item]
    assert info.value.field == "attrs"
    assert "keys must be strings" in str(info.value)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"n": 1, "f": 1.5, "s": "x", "b": True, "none": None, "list": [1, "a"], "obj": {"k": [None]}},
        {"big": 10**30},
    ],
)
def test_attributes_json_can_carry_pass_the_check(attrs: dict[str, Any]) -> None:
    check_attrs(attrs)
    assert make_event("started", "etl", "run-1", attrs=attrs).attrs == attrs


def test_make_event_refuses_a_step_kind_without_step() -> None:
    with pytest.raises(EventError) as info:
        make_event(EventKind.STEP_STARTED, "etl", "run-1")
    assert info.value.field == "step"


def test_make_event_refuses_an_unknown_kind_with_an_event_error_naming_kind() -> None:
    with pytest.raises(EventError) as info:
        make_event("exploded", "etl", "run-1")
    assert info.value.field == "kind"
    assert "step_completed" in str(info.value)


# ---- batches --------------------------------------------------------------


def test_a_bad_item_in_a_batch_costs_only_itself() -> None:
    items: list[Any] = [
        with_(run_id="a", ts=1.0),
        without("run_id"),
        with_(run_id="c", kind="step_failed"),
        "not an object",
        with_(run_id="e", ts=2.0),
    ]
    out = parse_events(items)
    assert len(out) == 5
    good = [o for o in out if isinstance(o, Event)]
    assert [e.run_id for e in good] == ["a", "e"]
    bad = {i: o for i, o in enumerate(out) if isinstance(o, EventError)}
    assert sorted(bad) == [1, 2, 3]
    assert bad[1].index == 1 and bad[1].field == "run_id"
    assert str(bad[1]).startswith("event 1: field 'run_id'")
    assert bad[2].index == 2 and bad[2].field == "step"
    assert str(bad[2]).startswith("event 2: ")
    assert bad[3].index == 3 and "expected an object, got str" in str(bad[3])


def test_an_empty_batch_is_empty() -> None:
    assert parse_events([]) == []


# ---- property: nothing but EventError ---------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_FIELDS = ["id", "ts", "kind", "workflow", "run_id", "step", "attrs"]


def _good(field: str) -> st.SearchStrategy[Any]:
    """Values that are usually right for ``field``, so the checks past the schema run too."""
    good: dict[str, st.SearchStrategy[Any]] = {
        "id": st.text(max_size=30),
        "ts": st.floats()
        | st.floats(0, 4e9)
        | st.integers(0, 4_000_000_000)
        | st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())
        | st.text(max_size=30),
        "kind": st.sampled_from([k.value for k in EventKind]),
        "workflow": st.text(max_size=10),
        "run_id": st.text(max_size=10),
        "step": st.none() | st.text(max_size=10),
        "attrs": st.dictionaries(st.text(max_size=8), _json, max_size=4),
    }
    return good[field]


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects shaped like events: each field mostly right, sometimes absent or any JSON value."""
    obj: dict[str, Any] = {}
    for field in _FIELDS:
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue
        obj[field] = draw(_json if choice == 1 else _good(field))
    if draw(st.integers(0, 9)) == 0:
        obj.update(draw(st.dictionaries(st.text(max_size=8), _json, min_size=1, max_size=2)))
    return obj


def _only_event_errors(obj: dict[str, Any], *, ts_never_negative: bool = True) -> None:
    for data in (obj, _encode_or_none(obj)):
        if data is None:
            continue
        try:
            ev = parse_event(data)
        except EventError as exc:
            assert str(exc)
        else:
            assert ev.run_id and ev.workflow
            assert math.isfinite(ev.ts)
            if ts_never_negative:
                assert ev.ts >= 0
            assert isinstance(ev.kind, EventKind)


def _encode_or_none(obj: dict[str, Any]) -> bytes | None:
    try:
        return msgspec.json.encode(obj)
    except (TypeError, ValueError):
        return None


@settings(max_examples=200)
@example({"kind": "started", "workflow": "w", "run_id": "r", "ts": 1e300})
@example({"kind": "started", "workflow": "w", "run_id": "r", "ts": "1969-12-31T00:00:00Z"})
@given(json_objects())
def test_parse_event_raises_nothing_but_event_error_on_any_json_object(obj: dict[str, Any]) -> None:
    _only_event_errors(obj)


def test_event_error_is_a_flowsight_error_and_a_value_error() -> None:
    with pytest.raises(EventError) as info:
        parse_event(without("run_id"))
    assert isinstance(info.value, FlowsightError)
    assert isinstance(info.value, ValueError)
