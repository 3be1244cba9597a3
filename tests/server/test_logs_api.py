"""``POST /api/v1/logs`` and ``GET /api/v1/logs`` against a real server:
a partly bad batch keeps its good entries and names each bad field, raw
lines are parsed, retries count once, bodies refused as a whole say why,
filters and cursors; the ``on_logs`` hook and retention in the app.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.server.app import create_app
from flowsight.store import open_store
from flowsight.store.logs import LogRecord, StoredLog
from tests.server.conftest import Server, free_port, sql_rows, start_server


def post_logs(c: httpx.Client, body: Any) -> dict[str, Any]:
    r = c.post("/api/v1/logs", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def messages(c: httpx.Client, path: str = "/api/v1/logs", **params: Any) -> list[str]:
    r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return [e["message"] for e in r.json()["logs"]]


GOOD = {"id": "g0", "message": "starting", "run_id": "r1", "workflow": "etl", "step": "extract"}
BATCH: list[tuple[Any, str | None]] = [  # (item, the field its error names; None: accepted or duplicate)
    (GOOD, None),
    ({"run_id": "r1"}, "message"),
    ({"message": "x", "level": "loud"}, "level"),
    ({"message": "x", "ts": "yesterday"}, "ts"),
    ({"message": "x", "ts": -1}, "ts"),
    ({"message": "x", "colour": "red"}, "colour"),
    ({"message": "x", "line": "y"}, "line"),
    ({"line": "y", "level": "error"}, "level"),
    ({"message": "x", "run_id": "r\x00"}, "run_id"),
    ({"message": "x", "id": "i" * 200}, "id"),
    ({"message": "x", "fields": [1]}, "fields"),
    (
        {
            "id": "g11",
            "message": "disk low",
            "level": "WARNING",
            "run_id": "r1",
            "fields": {"free": 3, "nested": {"a": 1}},
        },
        None,
    ),
    (GOOD, None),  # the same id again in the same batch: a duplicate
    ({"id": "g13", "message": "nul \x00 in text", "run_id": "r1"}, "message"),
    (5, None),
]


def test_a_partly_bad_batch_keeps_the_good_entries_and_names_each_bad_field(server: Server, store_url: str) -> None:
    c = server.client()
    body = [item for item, _ in BATCH]
    out = post_logs(c, body)
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (2, 1, 12)
    assert [r["index"] for r in out["results"]] == list(range(len(BATCH)))
    for res, (item, field) in zip(out["results"], BATCH):
        if field is not None:
            assert res["status"] == "rejected" and res["field"] == field, res
            assert res["error"].startswith(f"log {res['index']}: field '{field}'"), res
    assert [out["results"][i]["status"] for i in (0, 11, 12)] == ["accepted", "accepted", "duplicate"]
    assert "expected an object, got int" in out["results"][14]["error"]
    assert "'loud' is not a level" in out["results"][2]["error"]
    assert "NUL" in out["results"][8]["error"] and "NUL" in out["results"][13]["error"]

    assert sorted(r[0] for r in sql_rows(store_url, "SELECT id FROM logs")) == ["g0", "g11"]
    logs = {e["id"]: e for e in c.get("/api/v1/logs").json()["logs"]}
    assert logs["g11"]["level"] == "warn" and logs["g11"]["fields"] == {"free": 3, "nested": '{"a":1}'}
    assert logs["g0"]["source"] == "http" and logs["g0"]["step"] == "extract"

    again = post_logs(c, body)  # the client retries the whole batch: nothing is stored twice
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 3, 12)
    assert len(sql_rows(store_url, "SELECT id FROM logs")) == 2


def test_raw_lines_are_parsed_for_level_time_and_run(server: Server) -> None:
    c = server.client()
    out = post_logs(
        c,
        [
            {
                "id": "l1",
                "line": "2024-05-01 12:00:00,250 ERROR [main] db: connection refused\n",
                "run_id": "r1",
                "source": "app.log",
            },
            {"id": "l2", "line": '{"level": "warn", "msg": "slow query", "run_id": "r7", "step": "load", "ms": 950}'},
            {"id": "l3", "line": "no structure at all", "ts": 1700000000.5, "run_id": "r1"},
            {"id": "l4", "line": '{"level": "debug", "msg": "mine", "run_id": "theirs"}', "run_id": "r1"},
        ],
    )
    assert out["accepted"] == 4, out
    got = {e["id"]: e for e in c.get("/api/v1/logs").json()["logs"]}
    assert got["l1"]["level"] == "error" and "connection refused" in got["l1"]["message"]
    assert got["l1"]["ts"] == datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone.utc).timestamp()
    assert got["l1"]["source"] == "app.log" and got["l1"]["run_id"] == "r1"
    assert (got["l2"]["level"], got["l2"]["message"], got["l2"]["run_id"], got["l2"]["step"]) == (
        "warn",
        "slow query",
        "r7",
        "load",
    )
    assert got["l2"]["fields"]["ms"] == 950
    assert (got["l3"]["level"], got["l3"]["ts"], got["l3"]["message"]) == ("info", 1700000000.5, "no structure at all")
    assert got["l4"]["run_id"] == "r1"  # what the sender says wins over what the line says


def test_one_entry_without_an_id_gets_a_time_sortable_one(server: Server) -> None:
    c = server.client()
    out = post_logs(c, {"message": "alone", "ts": 1700000000.0})
    (res,) = out["results"]
    assert res["status"] == "accepted" and len(res["id"]) == 26
    from flowsight.model.runs.ids import id_time_ms

    assert id_time_ms(res["id"]) == 1700000000000


# ---- queries over one seeded server per store ---------------------------------
T0 = 1_700_000_000.0
SEED = [
    {
        "id": "s1",
        "ts": T0 + 1,
        "level": "info",
        "message": "extract started",
        "run_id": "run-a",
        "workflow": "etl",
        "step": "extract",
    },
    {
        "id": "s2",
        "ts": T0 + 2,
        "level": "warn",
        "message": "Disk 95% full",
        "run_id": "run-a",
        "workflow": "etl",
        "step": "extract",
    },
    {
        "id": "s3",
        "ts": T0 + 3,
        "level": "error",
        "message": "Connection refused",
        "run_id": "run-a",
        "workflow": "etl",
        "step": "load",
    },
    {
        "id": "s4",
        "ts": T0 + 4,
        "level": "debug",
        "message": "retrying\nattempt 2",
        "run_id": "run-a",
        "workflow": "etl",
        "step": "load",
    },
    {
        "id": "s5",
        "ts": T0 + 5,
        "level": "fatal",
        "message": "connection REFUSED again",
        "run_id": "run-a",
        "workflow": "etl",
        "step": "load",
    },
    {"id": "s6", "ts": T0 + 6, "level": "error", "message": "other run", "run_id": "run/b", "workflow": "report"},
    {"id": "s7", "ts": T0 + 7, "level": "trace", "message": "no run at all"},
]


@pytest.fixture(scope="module")
def seeded(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    s = start_server(module_store_url, log_dir=tmp_path_factory.mktemp("logs"))
    c = s.client()
    assert post_logs(c, SEED)["accepted"] == len(SEED)
    with open_store(module_store_url) as store:
        rows = store.logs.query_logs(text="refused")
        store.logs.set_log_templates([(r.seq, "conn-refused") for r in rows])
    yield c
    assert s.stop() == 0, s.output()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["s1", "s2", "s3", "s4", "s5", "s6", "s7"]),
        ({"run_id": "run-a"}, ["s1", "s2", "s3", "s4", "s5"]),
        ({"run_id": "run/b"}, ["s6"]),
        ({"workflow": "report"}, ["s6"]),
        ({"run_id": "run-a", "step": "load"}, ["s3", "s4", "s5"]),
        ({"level": "error"}, ["s3", "s5", "s6"]),
        ({"level": "WARNING"}, ["s2", "s3", "s5", "s6"]),  # level words in any case
        ({"template": "conn-refused"}, ["s3", "s5"]),
        ({"q": "connection refused"}, ["s3", "s5"]),
        ({"q": "95%"}, ["s2"]),
        ({"since": T0 + 2, "until": T0 + 4}, ["s2", "s3"]),
        ({"since": "2023-11-14T22:13:22Z", "until": "2023-11-14T23:13:24+01:00"}, ["s2", "s3"]),  # T0+2, T0+4
        ({"since": "2h"}, []),  # the seeded lines say they are from 2023
        ({"until": "1h"}, ["s1", "s2", "s3", "s4", "s5", "s6", "s7"]),
        ({"order": "desc", "limit": 2}, ["s7", "s6"]),
        ({"level": "error", "run_id": "run-a", "q": "again"}, ["s5"]),
    ],
)
def test_each_filter_selects_what_it_says(seeded: httpx.Client, params: dict[str, Any], expected: list[str]) -> None:
    r = seeded.get("/api/v1/logs", params=params)
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()["logs"]] == expected


def test_a_runs_logs_are_at_its_own_path(seeded: httpx.Client) -> None:
    assert messages(seeded, "/api/v1/runs/run-a/logs", level="fatal") == ["connection REFUSED again"]
    assert messages(seeded, "/api/v1/runs/run%2Fb/logs") == ["other run"]
    r = seeded.get("/api/v1/runs/no-such-run/logs")
    assert r.status_code == 200 and r.json() == {"logs": [], "cursor": None}  # logs may come before events


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_a_cursor_pages_through_every_entry_once(seeded: httpx.Client, order: str) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"order": order, "limit": 2, "run_id": "run-a"}
    for _ in range(10):
        page = seeded.get("/api/v1/logs", params=params).json()
        seen += [e["id"] for e in page["logs"]]
        if page["cursor"] is None:
            break
        params = {"cursor": page["cursor"], "limit": 2, "run_id": "run-a"}
    expected = ["s1", "s2", "s3", "s4", "s5"]
    assert seen == (expected if order == "asc" else expected[::-1])


def test_after_follows_from_the_last_seq_seen(seeded: httpx.Client) -> None:
    logs = seeded.get("/api/v1/logs").json()["logs"]
    assert [e["id"] for e in seeded.get("/api/v1/logs", params={"after": logs[4]["seq"]}).json()["logs"]] == [
        "s6",
        "s7",
    ]
    assert seeded.get("/api/v1/logs", params={"after": logs[-1]["seq"]}).json() == {"logs": [], "cursor": None}


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"level": "loud"}, "'level': 'loud' is not a level"),
        ({"cursor": "bm9wZQ=="}, "'cursor'"),
        ({"cursor": "%%%"}, "'cursor'"),
        ({"order": "sideways"}, "'order'"),
        ({"limit": "0"}, "'limit'"),
        ({"limit": "many"}, "'limit'"),
        (
            {"since": "yesterday"},
            "query parameter 'since': 'yesterday' is not a time; write a duration ago (2h, 30m, "
            "7d), an RFC 3339 time (2024-05-01T12:00:00Z) or epoch seconds",
        ),
        ({"until": "2024-13-01T00:00:00Z"}, "query parameter 'until': '2024-13-01T00:00:00Z' is not a valid RFC 3339"),
        ({"after": "-3"}, "'after'"),
        ({"run_id": "a\x00b"}, "'run_id'"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(
    seeded: httpx.Client, params: dict[str, str], says: str
) -> None:
    r = seeded.get("/api/v1/logs", params=params)
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]


def test_the_readmes_lines_are_found_by_since_and_counted_by_template(server: Server) -> None:
    """The curl example in docs/logs.md (Over HTTP): lines that say no time
    are stamped with their arrival, so ``since=2h`` finds them and the
    template counts (by each line's own time) hold them; a line dated 2024
    is found at its date."""
    c = server.client()
    out = post_logs(
        c,
        [
            {"id": "deploy-42-l1", "message": "build started", "level": "info", "run_id": "deploy-42", "step": "build"},
            {"id": "deploy-42-l2", "line": "ERROR:db:connection refused", "run_id": "deploy-42"},
            {
                "id": "deploy-42-old",
                "line": "2024-05-01 12:00:00,250 ERROR [main] db: connection refused",
                "run_id": "deploy-42",
            },
        ],
    )
    assert out["accepted"] == 3, out
    r = c.get("/api/v1/logs", params={"run_id": "deploy-42", "since": "2h"})
    assert r.status_code == 200, r.text
    assert [(e["level"], e["message"]) for e in r.json()["logs"]] == [
        ("info", "build started"),
        ("error", "connection refused"),
    ]
    dated = c.get(
        "/api/v1/logs", params={"run_id": "deploy-42", "since": "2024-05-01T00:00:00Z", "until": "2024-05-02T00:00:00Z"}
    ).json()["logs"]
    assert [e["id"] for e in dated] == ["deploy-42-old"]
    deadline = time.monotonic() + 20  # the server's analyzer counts them within a second or two
    while True:
        r = c.get("/api/v1/logs/templates", params={"since": "24h"})
        assert r.status_code == 200, r.text
        counts = {t["template"]: t["count"] for t in r.json()["templates"]}
        if counts == {"build started": 1, "connection refused": 1}:
            break
        assert time.monotonic() < deadline, counts
        time.sleep(0.1)


# ---- bodies refused as a whole ---------------------------------------------------
MAX_ITEMS, MAX_BODY = 5, 4096
JSON = {"content-type": "application/json"}
GZIP = {**JSON, "content-encoding": "gzip"}


def entries(n: int) -> bytes:
    return json.dumps([{"message": f"m{i}", "run_id": "big"} for i in range(n)]).encode()


@pytest.fixture(scope="module")
def limited_url(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store of `limited`'s server: a server of its own beside `seeded`'s, so on SQLite a file of its own (one server a file)."""
    if module_store_url.startswith("postgresql://"):
        return module_store_url
    return str(tmp_path_factory.mktemp("limited") / "flowsight.db")


@pytest.fixture(scope="module")
def limited(limited_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    s = start_server(
        limited_url,
        "--max-events",
        str(MAX_ITEMS),
        "--max-body",
        str(MAX_BODY),
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    yield s.client()
    assert s.stop() == 0, s.output()


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({"content-type": "text/plain"}, entries(1), 415, "send application/json"),
        ({}, entries(1), 415, "'(none)'"),
        ({**JSON, "content-encoding": "br"}, entries(1), 415, "send gzip or none"),
        (JSON, b'{"message": ', 400, "malformed JSON"),
        (JSON, b"[1, 2", 400, "the end of the body"),
        (JSON, b'"a line"', 400, "must be a log object or an array of them, got str"),
        (JSON, b"[]", 200, '"accepted":0'),
        (JSON, entries(MAX_ITEMS), 200, f'"accepted":{MAX_ITEMS}'),
        (JSON, entries(MAX_ITEMS + 1), 413, f"6 log entries in one request; the limit is {MAX_ITEMS}"),
        (JSON, b" " * (MAX_BODY + 1), 413, f"over the limit of {MAX_BODY}"),
        (GZIP, gzip.compress(entries(3), mtime=0), 200, '"accepted":3'),
        (GZIP, gzip.compress(b" " * 3_000_000 + b"[]", mtime=0), 413, "inflates past the limit"),
        (GZIP, b"not gzip at all", 400, "not valid gzip"),
    ],
)
def test_a_body_refused_as_a_whole_says_why(
    limited: httpx.Client, headers: dict[str, str], body: bytes, status: int, says: str
) -> None:
    r = limited.post("/api/v1/logs", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert says in r.text
    if status != 200:
        assert set(r.json()) == {"error"}


# ---- bad items on the limited server (after the seeded queries: the same store) ----------
NUL, HALF = "NUL character", "lone UTF-16 surrogate"


@pytest.mark.parametrize(
    ("bad", "field", "says"),
    [
        ({"message": "half \ud800 pair"}, "message", HALF),
        ({"message": "nul \x00 byte"}, "message", NUL),
        ({"line": "2024-05-01 12:00:00 ERROR half \udfff"}, "line", HALF),
        ({"line": '{"msg": "escaped \\u0000 in the line"}'}, "line", NUL),  # read out of the line
        ({"message": "m", "source": "app\x00.log"}, "source", NUL),
        ({"message": "m", "level": "warn\ud83d"}, "level", HALF),
        ({"message": "m", "run_id": "r\udc00"}, "run_id", HALF),
        ({"message": "m", "id": "i\ud800"}, "id", HALF),
        ({"message": "m", "fields": {"who": "a\x00b"}}, "fields.who", NUL),
        ({"message": "m", "fields": {"deep": [{"x": "\ud800"}]}}, "fields.deep", HALF),
        ({"message": "m", "fields": {"k\x00": 1}}, "fields", NUL),
    ],
)
def test_an_entry_with_a_nul_or_a_lone_surrogate_is_rejected_alone(
    limited: httpx.Client, limited_url: str, bad: dict[str, Any], field: str, says: str
) -> None:
    """One rule for events and log entries: text no store keeps exactly is
    refused, naming the field (in logs it was silently replaced by U+FFFD)."""
    good = f"kept-{field}-{says[:3]}-{len(bad)}"
    out = post_logs(limited, [{"id": good, "message": "pair \U0001f600"}, bad])
    assert [r["status"] for r in out["results"]] == ["accepted", "rejected"], out
    assert out["results"][1]["field"] == field and says in out["results"][1]["error"], out
    assert sql_rows(limited_url, f"SELECT message FROM logs WHERE id = '{good}'") == [("pair \U0001f600",)]


def test_a_time_no_clock_reads_is_refused_or_not_taken_from_the_line(limited: httpx.Client) -> None:
    """A JSON line's ``"ts": 1e300`` was stored as 2001 (divided by 1000 until
    it looked like seconds), and an entry dated 9999 outlived every retention."""
    now = time.time()
    out = post_logs(
        limited,
        [
            {"id": "t-huge", "line": '{"ts": 1e300, "msg": "from nowhere"}'},
            {"id": "t-9999", "line": '{"ts": "9999-12-31T23:59:59Z", "msg": "from the far future"}'},
            {"id": "t-ms", "line": '{"ts": 1700000000123, "msg": "epoch ms"}'},
            {"id": "t-given", "line": "2099-01-01 00:00:00 WARN late", "ts": 1_700_000_000.0},
        ],
    )
    assert [r["status"] for r in out["results"]] == ["accepted"] * 4, out
    out = post_logs(
        limited,
        [
            {"id": "t-field", "message": "structured", "ts": "9999-12-31T23:59:59Z"},
            {"id": "t-inf", "message": "structured", "ts": 1e300},
        ],
    )
    assert [r["status"] for r in out["results"]] == ["rejected"] * 2, out
    assert out["results"][0]["field"] == "ts" and "ahead of the server's clock" in out["results"][0]["error"]
    assert out["results"][1]["field"] == "ts" and "not a timestamp" in out["results"][1]["error"]
    got = {
        e["id"]: e
        for e in limited.get("/api/v1/logs", params={"limit": 1000}).json()["logs"]
        if e["id"].startswith("t-")
    }
    for eid in ("t-huge", "t-9999"):  # the line is kept, with its arrival time, its text whole
        assert now <= got[eid]["ts"] <= time.time(), got[eid]
    assert got["t-huge"]["fields"]["ts"] == 1e300
    assert got["t-ms"]["ts"] == 1700000000.123
    assert got["t-given"]["ts"] == 1_700_000_000.0  # the time given for a line whose own time is not taken


def test_a_number_no_float_holds_costs_only_its_entry(limited: httpx.Client) -> None:
    body = (
        '[{"id": "n-ok", "message": "kept"}, {"id": "n-ts", "message": "x", "ts": 1e999}, '
        '{"id": "n-field", "message": "x", "fields": {"size": -1e999}}]'
    )
    r = limited.post("/api/v1/logs", content=body, headers=JSON)
    assert r.status_code == 200, r.text
    assert [(x["status"], x.get("field")) for x in r.json()["results"]] == [
        ("accepted", None),
        ("rejected", "ts"),
        ("rejected", "fields.size"),
    ]
    assert "no NaN or infinity" in r.json()["results"][2]["error"]


def test_fields_nested_too_deep_cost_their_entry_and_a_body_too_deep_to_read_is_named(limited: httpx.Client) -> None:
    deep: Any = "bottom"
    for _ in range(70):
        deep = [deep]
    out = post_logs(limited, [{"id": "d-ok", "message": "kept"}, {"message": "x", "fields": {"deep": deep}}])
    assert [(x["status"], x.get("field")) for x in out["results"]] == [("accepted", None), ("rejected", "fields.deep")]
    assert "nested deeper than 64 levels" in out["results"][1]["error"]
    head = '[{"message": "x", "fields": {"deep": '  # 3 levels
    r = limited.post("/api/v1/logs", content=head + "[" * 1500 + "]" * 1500 + "}}]", headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(f"JSON nested deeper than 64 levels (at byte {len(head) + 61})"), r.text


# ---- the app in this process: the on_logs hook and retention ----------------------
class InProcess:
    """``create_app(...)`` under a real uvicorn on 127.0.0.1, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)


def test_the_hook_is_told_of_each_newly_stored_entry_once_after_the_commit(tmp_path: Path) -> None:
    told: list[list[StoredLog]] = []
    counted_when_told: list[int] = []
    with open_store(str(tmp_path / "f.db")) as store:

        async def on_logs(stored: Sequence[StoredLog]) -> None:
            counted_when_told.append(store.logs.count_logs())  # committed before the hook hears of it
            told.append(list(stored))

        with InProcess(create_app(store, on_logs=on_logs, log_retention=None)) as c:
            first = post_logs(
                c,
                [
                    {"id": "a", "message": "one"},
                    {"id": "b", "level": "err", "message": "two"},
                    {"message": "bad", "level": "?"},
                ],
            )
            again = post_logs(c, [{"id": "b", "message": "two"}, {"id": "c", "message": "three"}])
            post_logs(c, [{"id": "a", "message": "one"}])  # nothing new: the hook is not called
        assert (first["accepted"], again["accepted"], again["duplicates"]) == (2, 1, 1)
        assert [[s.id for s in batch] for batch in told] == [["a", "b"], ["c"]]
        assert told[0][1].entry.level is LogLevel.ERROR and told[0][1].seq > told[0][0].seq
        assert counted_when_told == [2, 3]


def test_a_failing_hook_does_not_cost_the_acknowledgement(tmp_path: Path) -> None:
    def on_logs(stored: Sequence[StoredLog]) -> None:
        raise RuntimeError("analyzer bug")

    with open_store(str(tmp_path / "f.db")) as store:
        with InProcess(create_app(store, on_logs=on_logs, log_retention=None)) as c:
            assert post_logs(c, {"id": "a", "message": "kept"})["accepted"] == 1
        assert store.logs.count_logs() == 1


def test_the_server_purges_logs_older_than_the_retention(store_url: str) -> None:
    now = time.time()
    with open_store(store_url) as store:
        store.logs.save_logs(
            [LogRecord(f"old-{i}", LogEntry(now - 3 * 86400 - i, LogLevel.INFO, "old", "test")) for i in range(50)]
            + [LogRecord("new", LogEntry(now - 60, LogLevel.INFO, "new", "test"))]
        )
        app = create_app(store, log_retention=86400.0, log_purge_interval=0.05)
        with InProcess(app) as c:
            deadline = time.monotonic() + 20
            while store.logs.count_logs() > 1:
                assert time.monotonic() < deadline, "old entries were not purged"
                time.sleep(0.05)
            assert messages(c) == ["new"]
        retention = app.state.flowsight.log_retention
        assert retention.purged == 50 and retention.rounds >= 1 and retention.failed_rounds == 0
