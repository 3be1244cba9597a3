"""One object sent alone to a write route is one request: refused, it is a
400 (not as the OpenAPI document describes it) or a 422 (as described, but
refused by a rule the document states in words: the server's clock, a
nesting depth, a silence's end), with the same per-item answer a batch gets.
In an array, the same object costs only itself (200, answered per item), as
before. Against a real server, on both stores."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flowsight.logs.entries import LogLevel, level_from_word
from tests.server.conftest import Server, event, sql_rows, start_server
from tests.server.test_ingest_errors import BAD_BATCH

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(module_store_url, log_dir=tmp_path_factory.mktemp("logs"))
    yield s
    assert s.stop() == 0, s.output()
    assert "Traceback" not in s.output(), s.output()


@pytest.fixture
def client(server: Server) -> httpx.Client:
    return server.client()


def send(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    return client.post(path, content=json.dumps(body), headers=JSON)


@pytest.mark.parametrize(
    ("n", "item", "field"), [(n, item, field) for n, (item, field) in enumerate(BAD_BATCH) if field is not None]
)
def test_a_bad_event_alone_is_a_400_with_its_answer_and_in_an_array_costs_only_itself(
    client: httpx.Client, module_store_url: str, n: int, item: dict[str, Any], field: str
) -> None:
    r = send(client, "/api/v1/events", item)
    assert r.status_code == 400, r.text
    out = r.json()
    assert out["field"] == field and out["error"].startswith(f"event 0: field '{field}'"), out
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (0, 0, 1)
    assert out["results"] == [{"index": 0, "status": "rejected", "error": out["error"], "field": field}]

    good = event("started", "single", f"kept-{n}")
    r = send(client, "/api/v1/events", [item, good])
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["rejected", "accepted"]
    assert sql_rows(module_store_url, f"SELECT count(*) FROM events WHERE run_id = 'kept-{n}'") == [(1,)]


def test_a_good_event_alone_is_taken_and_a_retry_is_a_duplicate(client: httpx.Client) -> None:
    item = event("started", "single", "alone-1", id="single-e1")
    first, again = send(client, "/api/v1/events", item), send(client, "/api/v1/events", item)
    assert (first.status_code, again.status_code) == (200, 200)
    assert [first.json()["accepted"], again.json()["duplicates"]] == [1, 1]


@pytest.mark.parametrize(
    ("path", "item", "field", "says"),
    [
        # as the document describes it, but nested deeper than the 64 levels no schema can state
        (
            "/api/v1/events",
            {**event("heartbeat", "single", "deep"), "attrs": {"x": json.loads("[" * 70 + "]" * 70)}},
            "attrs.x",
            "nested deeper than 64 levels",
        ),
        # a number JSON writes but no float holds
        ("/api/v1/events", "INFINITE", "attrs.n", "no NaN or infinity"),
        # an entry dated more than a day ahead of the server's clock
        ("/api/v1/logs", {"message": "from the future", "ts": time.time() + 3 * 86400}, "ts", "more than a day ahead"),
        # a value read out of a raw line with a NUL written as \u0000
        ("/api/v1/logs", {"line": '{"msg": "a\\u0000b", "level": "info"}'}, "line", "NUL"),
    ],
)
def test_an_item_the_document_allows_but_a_stated_rule_refuses_is_a_422(
    client: httpx.Client, path: str, item: Any, field: str, says: str
) -> None:
    if item == "INFINITE":
        body = '{"kind": "heartbeat", "workflow": "single", "run_id": "inf", "attrs": {"n": 1e999}}'
    else:
        body = json.dumps(item)
    r = client.post(path, content=body, headers=JSON)
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["field"] == field and says in out["error"] and out["rejected"] == 1, out
    r = client.post(path, content=f"[{body}]", headers=JSON)
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "rejected", r.text


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"message": "hi", "colour": "red"}, "colour"),
        ({"message": "hi", "level": "loud"}, "level"),
        ({"message": "hi", "level": "\ufb01ne"}, "level"),  # "ﬁne".upper() is "FINE"; a level word is ASCII
        ({"line": "INFO hi", "message": "hi"}, "line"),
        ({"line": "INFO hi", "level": "warn"}, "level"),
        ({}, "message"),
    ],
)
def test_a_bad_log_entry_alone_is_a_400(client: httpx.Client, item: dict[str, Any], field: str) -> None:
    r = send(client, "/api/v1/logs", item)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field and r.json()["results"][0]["status"] == "rejected", r.text


def test_level_words_are_ascii_in_any_case() -> None:
    assert level_from_word("WaRnInG") is LogLevel.WARN and level_from_word("ERR") is LogLevel.ERROR
    assert level_from_word("\ufb01ne") is None and level_from_word("\u0131nfo") is None  # ﬁne, ınfo


def test_a_bad_alert_alone_is_a_400_and_a_good_one_a_200(client: httpx.Client) -> None:
    r = send(client, "/api/v1/alerts", {"labels": {"alertname": "Single"}, "colour": "red"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "colour" and r.json()["fingerprints"] == [], r.text
    r = send(client, "/api/v1/alerts", {"labels": {"alertname": "Single"}})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


@pytest.mark.parametrize(
    ("extra", "status", "says"),
    [
        ({"ends_at": 1.0}, 422, "it must end after it starts"),
        ({"starts_at": 10.0, "ends_at": 20.0}, 422, "which has passed: it would mute nothing"),
        ({"starts_at": 2e9, "ends_at": 1.9e9}, 422, "it must end after it starts"),
        ({"duration": "0s"}, 422, "it must end after it starts"),
        ({}, 400, "say how long"),
    ],
)
def test_a_silence_that_would_mute_nothing_is_a_422_and_one_without_an_end_a_400(
    client: httpx.Client, extra: dict[str, Any], status: int, says: str
) -> None:
    before = client.get("/api/v1/silences", params={"all": "true"}).json()["silences"]
    r = send(client, "/api/v1/silences", {"matchers": ["workflow=etl"], "comment": "maintenance", **extra})
    assert r.status_code == status, r.text
    assert says in r.json()["error"], r.text
    assert client.get("/api/v1/silences", params={"all": "true"}).json()["silences"] == before


def test_a_regex_re2_cannot_compile_is_a_422(client: httpx.Client) -> None:
    r = send(client, "/api/v1/silences", {"matchers": ["alertname=~(unclosed"], "comment": "x", "duration": "1h"})
    assert r.status_code == 422, r.text


def test_the_document_says_which_answers_a_single_item_gets(server: Server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    paths = doc["paths"]
    for path in ("/api/v1/events", "/api/v1/logs"):
        responses = paths[path]["post"]["responses"]
        assert {"200", "400", "422"} <= set(responses), path
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        [array] = [o for o in body["anyOf"] if o.get("type") == "array"]
        assert array["items"] == {} and "answered by itself" in array["description"]
    assert "422" in paths["/api/v1/silences"]["post"]["responses"]
    schemas = doc["components"]["schemas"]
    assert schemas["WireEvent"]["properties"]["run_id"]["minLength"] == 1
    assert schemas["WireEvent"]["properties"]["workflow"]["maxLength"] == 512
    assert "JsonValue" in schemas and schemas["WireLog"]["anyOf"]
    link = paths["/api/v1/silences"]["post"]["responses"]["201"]["links"]["EndSilence"]
    assert link == {
        "operationId": "delete_/api/v1/silences/{silence_id}",
        "parameters": {"silence_id": "$response.body#/id"},
    }
    assert "FirstFault" in paths["/api/v1/faults"]["get"]["responses"]["200"]["links"]
    assert "FirstRun" in paths["/api/v1/runs"]["get"]["responses"]["200"]["links"]


@pytest.mark.parametrize(
    ("attrs", "field"),
    [
        ({"size": 3.402823466e38}, "attrs.size"),  # was taken, and then PostgreSQL's BIGINT failed the whole commit
        ({"size": 2**63}, "attrs.size"),
        ({"size": 1.5}, "attrs.size"),
        ({"mtime": 1e300}, "attrs.mtime"),
    ],
)
def test_an_output_events_size_and_mtime_are_what_both_stores_keep(
    client: httpx.Client, module_store_url: str, attrs: dict[str, Any], field: str
) -> None:
    output = {
        **event("output", "single", "out-1", "write"),
        "attrs": {"path": "/data/out.csv", "sha256": "0" * 64, **attrs},
    }
    r = send(client, "/api/v1/events", output)
    assert r.status_code == 400 and r.json()["field"] == field, r.text
    fine = {**output, "attrs": {"path": "/data/fine.csv", "sha256": "1" * 64, "size": 1024.0, "mtime": 1.7e9}}
    r = send(client, "/api/v1/events", [output, fine])
    assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == ["rejected", "accepted"], r.text
    assert sql_rows(module_store_url, "SELECT size FROM outputs WHERE path = '/data/fine.csv'") == [(1024,)]
