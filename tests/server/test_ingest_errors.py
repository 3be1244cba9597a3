"""What ``POST /api/v1/events`` does with bad input: a partly bad batch is
answered event by event; a body refused as a whole gets the right status and
a message that says what to fix."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flowsight.server.ingest import INLINE_BODY, decode_off_loop
from tests.server.conftest import Server, event, post, sql_rows, start_server

GOOD = event("started", "etl", "r1", id="e0")
BAD_BATCH: list[tuple[Any, str | None]] = [  # (item, the field its error names; None: accepted or duplicate)
    (GOOD, None),
    ({"kind": "started", "workflow": "etl"}, "run_id"),
    (event("exploded", "etl", "r1"), "kind"),
    ({**event("heartbeat", "etl", "r1"), "ts": "yesterday"}, "ts"),
    ({**event("heartbeat", "etl", "r1"), "attrs": [1, 2]}, "attrs"),
    (event("step_completed", "etl", "r1"), "step"),
    ({**event("heartbeat", "etl", "r1"), "colour": "red"}, "colour"),
    (event("step_started", "etl", "r1", "extract", id="e7"), None),
    (GOOD, None),  # the same id again in the same batch: a duplicate
    (event("started", "", "r9"), "workflow"),
    (event("started", "etl", "r9", id="x" * 200), "id"),
    (event("started", "etl", "r9", ts=-5), "ts"),
    ({**event("heartbeat", "etl", "r1", id="e12"), "attrs": {"nested": {"deep": [1, {"x": None}]}, "n": 1.5}}, None),
]


def test_a_partly_bad_batch_stores_the_good_events_and_names_each_bad_field(server: Server, store_url: str) -> None:
    c = server.client()
    body = [item for item, _ in BAD_BATCH]
    out = post(c, body)
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (3, 1, 9)
    assert [r["index"] for r in out["results"]] == list(range(len(BAD_BATCH)))
    for res, (item, field) in zip(out["results"], BAD_BATCH):
        if field is None:
            continue
        assert res["status"] == "rejected", res
        assert res["field"] == field, res
        assert res["error"].startswith(f"event {res['index']}: field '{field}'"), res
    assert [r["status"] for r in out["results"][:1] + out["results"][7:9]] == ["accepted", "accepted", "duplicate"]
    assert out["results"][8]["id"] == "e0"
    kind_error = out["results"][2]["error"]
    assert "'exploded'" in kind_error and "step_completed" in kind_error  # what was wrong, and what is allowed

    stored = sorted(r[0] for r in sql_rows(store_url, "SELECT id FROM events"))
    assert stored == ["e0", "e12", "e7"]

    # the client retries the whole batch: nothing is stored twice
    again = post(c, body)
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 4, 9)
    assert len(sql_rows(store_url, "SELECT id FROM events")) == 3


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (event("started", "etl\x00", "r1"), "workflow"),
        (event("started", "etl", "r\x00"), "run_id"),
        (event("step_started", "etl", "r1", "s\x00"), "step"),
        (event("started", "etl", "r1", id="e\x00"), "id"),
        (event("started", "etl", "r1", note="a\x00b"), "attrs.note"),
        (event("started", "etl", "r1", deep={"x": ["\x00"]}), "attrs.deep"),
        ({**event("started", "etl", "r1"), "attrs": {"k\x00": 1}}, "attrs"),
    ],
)
def test_an_event_with_a_nul_character_is_rejected_alone(
    limited: httpx.Client, module_store_url: str, bad: dict[str, Any], field: str
) -> None:
    """PostgreSQL keeps no NUL in text or jsonb: such an event once failed
    its whole batch with a 503; now it is refused, and only it, on both stores."""
    before = len(sql_rows(module_store_url, "SELECT id FROM events"))
    good = f"good-{field}"
    out = post(limited, [event("started", "etl", "good", id=good), bad])
    assert [r["status"] for r in out["results"]] == ["accepted", "rejected"]
    assert out["results"][1]["field"] == field and "NUL character" in out["results"][1]["error"]
    assert len(sql_rows(module_store_url, "SELECT id FROM events")) == before + 1
    assert sql_rows(module_store_url, f"SELECT id FROM events WHERE id = '{good}'") == [(good,)]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (event("started", "etl\ud800", "r1"), "workflow"),
        (event("started", "etl", "r1", id="e\udfff"), "id"),
        (event("started", "etl", "r1", note="half a pair \ud83d"), "attrs.note"),
        ({**event("started", "etl", "r1"), "attrs": {"k\udc00": [1]}}, "attrs"),
    ],
)
def test_an_event_with_a_lone_surrogate_is_rejected_alone(
    limited: httpx.Client, module_store_url: str, bad: dict[str, Any], field: str
) -> None:
    """JSON can escape half a UTF-16 pair (``"\\ud800"``), which is no
    character: the batch it came in once got a 400 "truncated"; now only that
    event is refused, and a good pair beside it is kept."""
    good = f"pair-{field}"
    out = post(limited, [event("started", "etl", good, id=good, emoji="\U0001f600"), bad])
    assert [r["status"] for r in out["results"]] == ["accepted", "rejected"]
    assert out["results"][1]["field"] == field and "lone UTF-16 surrogate" in out["results"][1]["error"]
    assert sql_rows(module_store_url, f"SELECT id FROM events WHERE id = '{good}'") == [(good,)]
    (stored,) = limited.get(f"/api/v1/runs/{good}/events").json()["events"]
    assert stored["attrs"] == {"emoji": "\U0001f600"}


def test_an_item_that_is_not_an_object_is_rejected_alone(server: Server) -> None:
    out = post(server.client(), [5, GOOD, "text", None])
    assert [r["status"] for r in out["results"]] == ["rejected", "accepted", "rejected", "rejected"]
    assert "expected an object, got int" in out["results"][0]["error"]


def test_a_refused_transition_is_stored_with_a_warning(server: Server, store_url: str) -> None:
    c = server.client()
    post(c, [event("started", "etl", "r2", id="t1", ts=100.0), event("completed", "etl", "r2", id="t2", ts=110.0)])
    out = post(c, event("started", "etl", "r2", id="t3", ts=120.0))
    (res,) = out["results"]
    assert res["status"] == "accepted" and res["id"] == "t3"
    assert "completed -> running" in res["warning"] and "not applied" in res["warning"]
    run = c.get("/api/v1/runs/r2").json()
    assert run["state"] == "completed"
    assert [(t["old_state"], t["new_state"], t["applied"]) for t in run["transitions"]] == [
        ("pending", "running", True),
        ("running", "completed", True),
        ("completed", "running", False),
    ]
    assert {r[0] for r in sql_rows(store_url, "SELECT id FROM events")} == {"t1", "t2", "t3"}


# ---- bodies refused as a whole (one server per store, with small limits) ----
MAX_EVENTS, MAX_BODY = 5, 4096


@pytest.fixture(scope="module")
def limited(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    s = start_server(
        module_store_url,
        "--max-events",
        str(MAX_EVENTS),
        "--max-body",
        str(MAX_BODY),
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    yield s.client()
    assert s.stop() == 0, s.output()


JSON = {"content-type": "application/json"}
GZIP = {**JSON, "content-encoding": "gzip"}


def events(n: int) -> bytes:
    return json.dumps([event("heartbeat", "etl", f"b{i}") for i in range(n)]).encode()


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({"content-type": "text/plain"}, events(1), 415, "send application/json"),
        ({}, events(1), 415, "'(none)'"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"a=b", 415, "send application/json"),
        ({"content-type": "application/json; charset=utf-8"}, events(1), 200, '"accepted":1'),
        ({"content-type": "Application/JSON"}, events(1), 200, '"accepted":1'),
        ({**JSON, "content-encoding": "br"}, events(1), 415, "send gzip or none"),
        (JSON, b'{"kind": "started", ', 400, "malformed JSON"),
        (JSON, b'{"kind": "started"} trailing', 400, "malformed JSON"),
        (JSON, b"[1, 2", 400, "(at byte 5, the end of the body)"),  # a bad item first, then truncated
        (JSON, b'[{"kind": 1}, {]', 400, "malformed JSON"),
        (JSON, b"\xff\xfe", 400, "malformed JSON"),
        (JSON, b"", 400, "malformed JSON"),
        (JSON, b'"an event"', 400, "must be an event object or an array of them, got str"),
        (JSON, b"42", 400, "got int"),
        (JSON, b"null", 400, "got NoneType"),
        (JSON, b"true", 400, "got bool"),
        (JSON, b"[]", 200, '"accepted":0'),
        (JSON, events(MAX_EVENTS), 200, f'"accepted":{MAX_EVENTS}'),
        (JSON, events(MAX_EVENTS + 1), 413, f"6 events in one request; the limit is {MAX_EVENTS}"),
        (JSON, b"[" + b"1," * (MAX_EVENTS + 1) + b"1]", 413, "the limit is 5"),  # bad items count too
        (JSON, b" " * (MAX_BODY + 1), 413, f"over the limit of {MAX_BODY}"),
        (GZIP, gzip.compress(events(3), mtime=0), 200, '"accepted":3'),
        (GZIP, gzip.compress(b" " * 3_000_000 + b"[]", mtime=0), 413, "inflates past the limit"),  # 3 MB from ~3 KB
        (GZIP, gzip.compress(events(MAX_EVENTS + 1), mtime=0), 413, "the limit is 5"),
        (GZIP, b"not gzip at all", 400, "not valid gzip"),
        (GZIP, gzip.compress(b"[1, 2", mtime=0), 400, "malformed JSON"),
    ],
)
def test_a_body_refused_as_a_whole_says_why(
    limited: httpx.Client, headers: dict[str, str], body: bytes, status: int, says: str
) -> None:
    r = limited.post("/api/v1/events", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert says in r.text
    if status != 200:
        assert set(r.json()) == {"error"}


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(limited: httpx.Client) -> None:
    body = json.dumps([event("heartbeat", "etl", "big", pad="x" * 1000) for _ in range(5)]).encode()
    assert len(body) > MAX_BODY
    r = limited.post("/api/v1/events", content=chunks(body), headers=JSON)  # chunked: no content-length
    assert r.status_code == 413 and f"over the limit of {MAX_BODY} bytes" in r.json()["error"]
    # and the server is fine afterwards
    assert limited.post("/api/v1/events", content=events(1), headers=JSON).status_code == 200


# ---- numbers no float holds, JSON too deep to read ------------------------------------
@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ('{"kind": "started", "workflow": "etl", "run_id": "r1", "ts": 1e999}', "ts"),
        ('{"kind": "started", "workflow": "etl", "run_id": "r1", "attrs": {"size": -1e999}}', "attrs.size"),
        ('{"kind": "started", "workflow": "etl", "run_id": "r1", "attrs": {"deep": [[1e400]]}}', "attrs.deep"),
    ],
)
def test_a_number_no_float_holds_costs_only_its_event(
    limited: httpx.Client, module_store_url: str, bad: str, field: str
) -> None:
    """``1e999`` once refused the whole batch as malformed JSON."""
    good = f"big-{field}"
    r = limited.post(
        "/api/v1/events", content=f"[{json.dumps(event('started', 'etl', good, id=good))}, {bad}]", headers=JSON
    )
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "rejected"]
    assert r.json()["results"][1]["field"] == field
    assert sql_rows(module_store_url, f"SELECT id FROM events WHERE id = '{good}'") == [(good,)]


def test_attrs_nested_deeper_than_64_levels_cost_only_their_event(limited: httpx.Client) -> None:
    deep: Any = 1
    for _ in range(70):
        deep = {"d": deep}
    out = post(limited, [event("started", "etl", "shallow", id="shallow"), event("started", "etl", "r1", x=deep)])
    assert [x["status"] for x in out["results"]] == ["accepted", "rejected"]
    assert "nested deeper than 64 levels" in out["results"][1]["error"]


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        ('[{"kind": "started", "workflow": "etl", "run_id": "r1", "attrs": {"a": ', "}}]"),
        ("", ""),
        ('{"kind": "started", "workflow": "etl", "run_id": "r1", "attrs": {"a": {"b": ', "}}}"),
    ],
)
def test_a_body_nested_too_deep_to_read_is_a_400_naming_where(limited: httpx.Client, head: str, tail: str) -> None:
    """Nested ~1000 deep, a body was a bare 500 with a traceback each time."""
    body = head + "[" * 1500 + "]" * 1500 + tail
    levels = head.count("[") + head.count("{")
    r = limited.post("/api/v1/events", content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": f"JSON nested deeper than 64 levels (at byte {len(head) + 64 - levels}); values nest 64 levels at most"
    }
    assert limited.get("/healthz").status_code == 200


def test_a_big_body_is_decoded_off_the_event_loop() -> None:
    """Other requests go on while a big batch is decoded: its decoding runs
    in a worker thread; a small one stays on the loop (no thread hop)."""
    seen: dict[int, int] = {}

    def decode(body: bytes) -> int:
        seen[len(body)] = threading.get_ident()
        return len(body)

    async def both() -> int:
        await decode_off_loop(b"x" * INLINE_BODY, decode)
        await decode_off_loop(b"x" * (INLINE_BODY + 1), decode)
        return threading.get_ident()

    loop_thread = asyncio.run(both())
    assert seen[INLINE_BODY] == loop_thread
    assert seen[INLINE_BODY + 1] != loop_thread
