"""``POST /api/v1/alerts`` and ``/api/v1/silences`` against a real server, on
both stores: their bodies go through the ingest's reader (content type, size
and count limits, gzip, malformed or too deep JSON), a mixed alerts batch is
answered alert by alert and keeps the good ones, a link is http(s) only, a
silence cannot outlast the last time kept, and a silence id with a NUL is
a 404 (not a 503 on PostgreSQL)."""

from __future__ import annotations

import gzip
import json
import socket
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.sdk.serving import wait_until
from tests.server.conftest import Server, flowsight, sql_rows, start_server

MAX_ITEMS, MAX_BODY = 20, 4096
JSON = {"content-type": "application/json"}
GZIP = {**JSON, "content-encoding": "gzip"}
SILENCE = {"matchers": ["workflow=etl"], "duration": "1h", "comment": "maintenance"}


@pytest.fixture(scope="module")
def limited(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(
        module_store_url,
        "--max-events",
        str(MAX_ITEMS),
        "--max-body",
        str(MAX_BODY),
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    yield s
    assert s.stop() == 0, s.output()
    assert "Traceback" not in s.output(), s.output()


@pytest.fixture
def client(limited: Server) -> httpx.Client:
    return limited.client()


def alerts(n: int, name: str = "Disk") -> bytes:
    return json.dumps([{"labels": {"alertname": name, "n": str(i)}} for i in range(n)]).encode()


# ---- one reader for every write route ------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/alerts", "/api/v1/silences"])
@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        # a "simple" cross-site POST from a web page: the browser sends it without asking the server first
        ({"content-type": "text/plain"}, json.dumps(SILENCE).encode(), 415, "send application/json"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"a=b", 415, "send application/json"),
        ({"content-type": "multipart/form-data; boundary=x"}, b"--x--", 415, "send application/json"),
        ({}, json.dumps(SILENCE).encode(), 415, "'(none)'"),
        ({**JSON, "content-encoding": "br"}, json.dumps(SILENCE).encode(), 415, "send gzip or none"),
        (JSON, b" " * (MAX_BODY + 1), 413, f"over the limit of {MAX_BODY}"),
        (GZIP, gzip.compress(b" " * 3_000_000 + b"{}", mtime=0), 413, "inflates past the limit"),
        (GZIP, b"not gzip at all", 400, "not valid gzip"),
        (JSON, b'{"labels": ', 400, "malformed JSON"),
        (JSON, b"[" * 1500 + b"]" * 1500, 400, "JSON nested deeper than 64 levels (at byte 64)"),
    ],
)
def test_a_write_body_refused_as_a_whole_says_why(
    client: httpx.Client, path: str, headers: dict[str, str], body: bytes, status: int, says: str
) -> None:
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert says in r.json()["error"], r.text
    assert set(r.json()) == {"error"}


def test_nothing_of_a_refused_cross_site_post_is_kept(client: httpx.Client) -> None:
    before = client.get("/api/v1/silences").json()["silences"]
    for path, body in (
        ("/api/v1/silences", {**SILENCE, "duration": "100w"}),
        ("/api/v1/alerts", {"labels": {"alertname": "FromAPage"}}),
    ):
        assert client.post(path, content=json.dumps(body), headers={"content-type": "text/plain"}).status_code == 415
    assert client.get("/api/v1/silences").json()["silences"] == before
    assert not [a for a in client.get("/api/v1/alerts").json()["alerts"] if a["labels"]["alertname"] == "FromAPage"]


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(limited: Server) -> None:
    """200 MB announced, none sent: the 413 comes at once, nothing is read."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200000000\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_alerts_are_counted_against_max_events_and_gzip_is_read(client: httpx.Client) -> None:
    r = client.post("/api/v1/alerts", content=alerts(MAX_ITEMS + 1), headers=JSON)
    assert r.status_code == 413, r.text
    assert f"{MAX_ITEMS + 1} alerts in one request; the limit is {MAX_ITEMS}" in r.json()["error"]
    r = client.post("/api/v1/alerts", content=gzip.compress(alerts(3, "Gzipped"), mtime=0), headers=GZIP)
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text


# ---- answered alert by alert ----------------------------------------------------------
BATCH: list[tuple[Any, str | None]] = [  # (item, the field its error names; None: accepted)
    ({"labels": {"alertname": "Good0"}, "link": "https://ci.example.com/job/7"}, None),
    ({"labels": {}}, "labels"),
    ({"labels": {"alertname": "X"}, "link": "javascript:alert(document.cookie)"}, "link"),
    ({"labels": {"alertname": "X"}, "link": "JavaScript:alert(1)//http://x"}, "link"),
    ({"labels": {"alertname": "X"}, "link": "data:text/html,<script>alert(1)</script>"}, "link"),
    ({"labels": {"alertname": "X"}, "link": "/runs/r1"}, "link"),
    ({"labels": {"alertname": "X"}, "link": "http://"}, "link"),
    ({"labels": {"alertname": "X"}, "severity": "loud"}, "severity"),
    ({"labels": {"1st": "x"}}, "labels"),
    ({"labels": {"alertname": "X\u0000"}}, "labels"),
    ({"labels": {"alertname": "X\ud800"}}, "labels"),
    ({"labels": {"alertname": "X"}, "colour": "red"}, "colour"),
    ({"labels": {"alertname": "X"}, "starts_at": -1}, "starts_at"),
    ("an alert", None),
    ({"labels": {"alertname": "Good14"}, "link": "HTTP://grafana.local:3000/d/x?var=1#panel"}, None),
]


def test_a_mixed_alerts_batch_keeps_the_good_ones_and_names_each_bad_field(
    client: httpx.Client, module_store_url: str
) -> None:
    r = client.post("/api/v1/alerts", content=json.dumps([item for item, _ in BATCH]), headers=JSON)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["accepted"], out["rejected"]) == (2, len(BATCH) - 2)
    assert [res["index"] for res in out["results"]] == list(range(len(BATCH)))
    for res, (_, field) in zip(out["results"], BATCH):
        if field is not None:
            assert res["status"] == "rejected" and res["field"] == field, res
            assert res["error"].startswith(f"alert {res['index']}: field '{field}': "), res
    assert "expected an object, got str" in out["results"][13]["error"]
    assert "http:// or https://" in out["results"][2]["error"]
    assert "NUL" in out["results"][9]["error"] and "surrogate" in out["results"][10]["error"]
    good = [res for res in out["results"] if res["status"] == "accepted"]
    assert [res["index"] for res in good] == [0, 14]
    assert out["fingerprints"] == [res["fingerprint"] for res in good]

    listed = {a["fingerprint"]: a for a in client.get("/api/v1/alerts").json()["alerts"]}
    assert {listed[fp]["labels"]["alertname"] for fp in out["fingerprints"]} == {"Good0", "Good14"}
    assert listed[out["fingerprints"][0]]["link"] == "https://ci.example.com/job/7"
    assert not any(a["link"] and not a["link"].lower().startswith("http") for a in listed.values())
    wait_until(
        lambda: (
            {row[0] for row in sql_rows(module_store_url, "SELECT fingerprint FROM alerts")} >= set(out["fingerprints"])
        ),
        timeout=30,
        what="the good alerts in the store",
    )


@pytest.mark.parametrize(
    ("bad", "field", "says"),
    [
        (
            '{"labels": {"alertname": "Deep"}, "annotations": {"a": ' + "[" * 1500 + "]" * 1500 + "}}",
            None,
            "JSON nested deeper than 64 levels",
        ),
        ('{"labels": {"alertname": "Huge"}, "starts_at": 1e999}', "starts_at", "starts_at"),
        ('{"labels": {"alertname": "Half"}, "annotations": {"summary": "\\ud800"}}', "annotations", "surrogate"),
    ],
)
def test_a_bad_number_or_text_costs_only_its_alert(
    client: httpx.Client, bad: str, field: str | None, says: str
) -> None:
    body = '[{"labels": {"alertname": "Kept"}}, ' + bad + "]"
    r = client.post("/api/v1/alerts", content=body, headers=JSON)
    if field is None:  # nested too deep to read at all: refused whole, naming where
        assert r.status_code == 400 and says in r.json()["error"], r.text
        return
    assert r.status_code == 200, r.text
    assert [res["status"] for res in r.json()["results"]] == ["accepted", "rejected"]
    assert r.json()["results"][1]["field"] == field and says in r.json()["results"][1]["error"]


# ---- silences ---------------------------------------------------------------------------
def silence(**fields: Any) -> str:
    return json.dumps({**SILENCE, **fields})


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        # as the document describes a silence, but past the last time kept: a rule it states in words (422)
        (silence(duration="99999999999999999999w"), 422, "silence: it would end at 6.048e+25, past the year 10889"),
        (silence(duration="30000000w"), 422, "past the year 10889"),
        (silence(duration="1" * 400 + "w"), 422, "past the year 10889"),  # no float holds it: infinity
        (
            json.dumps(
                {
                    "matchers": ["workflow=etl"],
                    "starts_at": 281474976709.0,
                    "ends_at": 281474976710.0,
                    "comment": "the last hour there is",
                }
            ),
            201,
            "",
        ),
        (silence(comment="why\u0000"), 400, "field 'comment'"),
        (silence(matchers=["workflow=etl\ud800"]), 400, "field 'matchers': contains a NUL character or a lone"),
        (silence()[:-1] + ', "starts_at": 1e999}', 400, "field 'starts_at'"),
        (silence()[:-1] + ', "created_by": ' + "[" * 1500 + "]" * 1500 + "}", 400, "JSON nested deeper than 64 levels"),
    ],
)
def test_a_silence_cannot_end_past_the_last_time_kept_nor_hold_what_no_store_keeps(
    client: httpx.Client, module_store_url: str, body: str, status: int, says: str
) -> None:
    """``99999999999999999999w`` was taken, and then ``flowsight silence ls`` crashed on it."""
    r = client.post("/api/v1/silences", content=body, headers=JSON)
    assert r.status_code == status, r.text
    assert says in r.text
    listed = flowsight("silence", "ls", "--all", db=module_store_url)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr


def set_silence_end(db: str, sid: str, ends_at: float) -> None:
    """As an older flowsight let it be stored."""
    if db.startswith("postgresql://"):
        with psycopg.connect(db, autocommit=True) as pg:
            pg.execute("UPDATE silences SET ends_at = %s WHERE id = %s", (ends_at, sid))
        return
    lite = sqlite3.connect(db)
    try:
        with lite:
            lite.execute("UPDATE silences SET ends_at = ? WHERE id = ?", (ends_at, sid))
    finally:
        lite.close()


def test_silence_ls_lists_a_silence_stored_before_ends_were_capped(client: httpx.Client, module_store_url: str) -> None:
    made = flowsight("silence", "add", "workflow=legacy", "--for", "1h", "-c", "old", db=module_store_url)
    assert made.returncode == 0, made.stderr
    sid = made.stdout.split()[1]
    set_silence_end(module_store_url, sid, 6.048e25)
    listed = flowsight("silence", "ls", db=module_store_url)
    assert listed.returncode == 0, listed.stderr
    assert sid in listed.stdout and "6.048e+25" in listed.stdout
    assert client.get("/api/v1/silences").status_code == 200


@pytest.mark.parametrize("sid", ["a%00b", "%00", "nope"])
def test_expiring_a_silence_id_no_silence_has_is_a_404(client: httpx.Client, sid: str) -> None:
    r = client.delete(f"/api/v1/silences/{sid}")
    assert r.status_code == 404, r.text
    assert "no silence" in r.json()["error"]
    assert client.get("/healthz").status_code == 200
