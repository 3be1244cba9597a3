"""Events in through ``POST /api/v1/events``, runs out through the query API,
against a real server on each store."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.conftest import Server, event, post, sql_rows, start_server


def history_runs(now: float) -> list[dict[str, Any]]:
    """etl: two completed runs (30 s and 40 s), one failed, one running, one
    stuck in 'load' for 500 s; report: nothing yet (it comes as one object)."""
    out: list[dict[str, Any]] = []
    for run, t, load in (("done-1", now - 1000, 20), ("done-2", now - 900, 30)):
        evs = [
            event("started", "etl", run, ts=t, total_steps=2),
            event("step_started", "etl", run, "extract", ts=t),
            event("step_completed", "etl", run, "extract", ts=t + 10),
            event("step_started", "etl", run, "load", ts=t + 10),
            event("step_completed", "etl", run, "load", ts=t + 10 + load),
            event("completed", "etl", run, ts=t + 10 + load),
        ]
        out += [{**e, "id": f"{run}-{i}"} for i, e in enumerate(evs)]
    out += [
        event("started", "etl", "fail-1", ts=now - 800, id="fail-1-0"),
        event("failed", "etl", "fail-1", ts=now - 790, id="fail-1-1", error="disk full", error_type="OSError"),
        event("started", "etl", "stuck-1", ts=now - 500, id="stuck-1-0", total_steps=2),
        event("step_started", "etl", "stuck-1", "load", ts=now - 499, id="stuck-1-1"),
        event("started", "etl", "live-1", ts=now - 5, id="live-1-0", total_steps=2),
        event("step_started", "etl", "live-1", "extract", ts=now - 4, id="live-1-1"),
    ]
    return out


NEWEST_FIRST = ["rep-1", "live-1", "stuck-1", "fail-1", "done-2", "done-1"]


@pytest.fixture(scope="module")
def seeded_server(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, float]]:
    """One server per store for this module's tests, which only read."""
    now = time.time()
    server = start_server(module_store_url, log_dir=tmp_path_factory.mktemp("logs"))
    c = server.client()
    evs = history_runs(now)
    first = post(c, evs[:6])  # one run as an array
    rest = post(c, evs[6:])  # several runs in one array
    one = post(c, event("started", "report", "rep-1", ts=now - 3, id="rep-1-0"))  # a single object
    assert (first["accepted"], rest["accepted"], one["accepted"]) == (6, len(evs) - 6, 1)
    assert one["results"] == [{"index": 0, "status": "accepted", "id": "rep-1-0"}]
    yield server, now
    assert server.stop() == 0, server.output()


@pytest.fixture
def seeded(seeded_server: tuple[Server, float]) -> tuple[httpx.Client, float]:
    return seeded_server[0].clients[0], seeded_server[1]


def run_ids(c: httpx.Client, **params: Any) -> list[str]:
    r = c.get("/api/v1/runs", params=params)
    assert r.status_code == 200, r.text
    return [run["run_id"] for run in r.json()["runs"]]


def test_every_posted_event_is_in_the_store_once(seeded: tuple[httpx.Client, float], module_store_url: str) -> None:
    rows = sql_rows(module_store_url, "SELECT id FROM events")
    assert sorted(r[0] for r in rows) == sorted([e["id"] for e in history_runs(0)] + ["rep-1-0"])


def test_runs_are_listed_newest_first_and_filtered(seeded: tuple[httpx.Client, float]) -> None:
    c, now = seeded
    assert run_ids(c) == NEWEST_FIRST
    assert run_ids(c, workflow="report") == ["rep-1"]
    assert run_ids(c, workflow="nope") == []
    assert run_ids(c, state=["completed", "failed"]) == ["fail-1", "done-2", "done-1"]
    assert run_ids(c, state="running") == ["rep-1", "live-1", "stuck-1"]
    assert run_ids(c, since=now - 600) == ["rep-1", "live-1", "stuck-1"]
    assert run_ids(c, until=now - 600) == ["fail-1", "done-2", "done-1"]
    assert run_ids(c, since=now - 950, until=now - 100) == ["stuck-1", "fail-1", "done-2"]
    assert run_ids(c, workflow="etl", state="running", since=now - 100) == ["live-1"]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("disk", ["fail-1"]),  # the error
        ("STUCK", ["stuck-1"]),  # the run id, case-insensitively
        ("repo", ["rep-1"]),  # the workflow
        ("extract", ["live-1"]),  # the current step
        ("100%", []),  # LIKE wildcards are text
        ("_", []),
    ],
)
def test_text_search_matches_id_workflow_step_and_error(
    seeded: tuple[httpx.Client, float], q: str, expected: list[str]
) -> None:
    assert run_ids(seeded[0], q=q) == expected


def test_cursor_pages_through_every_run_once(seeded: tuple[httpx.Client, float]) -> None:
    c, _ = seeded
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = c.get("/api/v1/runs", params=params).json()
        seen += [r["run_id"] for r in page["runs"]]
        pages += 1
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen == NEWEST_FIRST and pages == 3
    # a cursor keeps its filters' meaning: the second page of completed runs
    first = c.get("/api/v1/runs", params={"state": "completed", "limit": 1}).json()
    second = c.get("/api/v1/runs", params={"state": "completed", "limit": 1, "cursor": first["cursor"]}).json()
    assert [r["run_id"] for r in first["runs"] + second["runs"]] == ["done-2", "done-1"]
    assert second["cursor"] is None


def test_one_run_has_steps_history_eta_and_stall_flag(seeded: tuple[httpx.Client, float]) -> None:
    c, now = seeded
    done = c.get("/api/v1/runs/done-1").json()
    assert done["state"] == "completed" and done["duration_seconds"] == pytest.approx(30, abs=0.01)
    assert done["eta"] is None and done["stalled"] is False
    assert [(s["step"], s["status"], s["duration_seconds"]) for s in done["steps"]] == [
        ("extract", "completed", pytest.approx(10, abs=0.01)),
        ("load", "completed", pytest.approx(20, abs=0.01)),
    ]
    assert [(t["old_state"], t["new_state"], t["applied"]) for t in done["transitions"]] == [
        ("pending", "running", True),
        ("running", "completed", True),
    ]

    live = c.get("/api/v1/runs/live-1").json()
    assert live["state"] == "running" and live["current_step"] == "extract" and not live["stalled"]
    assert live["eta"]["basis"] == "history"
    # extract takes 10 s (4 s gone), load 25 s by the median: about 31 s left
    assert 20 < live["eta"]["seconds"] < 40
    assert [s["status"] for s in live["steps"]] == ["running"]

    stuck = c.get("/api/v1/runs/stuck-1").json()
    assert stuck["stalled"] is True and stuck["idle_seconds"] > 400
    assert stuck["idle_seconds"] > stuck["stall_bound_seconds"]

    failed = c.get("/api/v1/runs/fail-1").json()
    assert failed["state"] == "failed" and failed["error"] == "OSError: disk full"


def test_a_runs_events_page_with_after_and_limit(seeded: tuple[httpx.Client, float]) -> None:
    c, _ = seeded
    got: list[dict[str, Any]] = []
    after, pages = 0, 0
    while True:
        page = c.get("/api/v1/runs/done-1/events", params={"after": after, "limit": 4}).json()
        got += page["events"]
        pages += 1
        if page["next_after"] is None:
            break
        after = page["next_after"]
        assert after == got[-1]["seq"]
    assert pages == 2
    assert [e["id"] for e in got] == [f"done-1-{i}" for i in range(6)]
    assert [e["kind"] for e in got] == [
        "started",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "completed",
    ]
    assert got[0]["attrs"] == {"total_steps": 2} and got[1]["step"] == "extract"
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert c.get("/api/v1/runs/done-1/events", params={"after": seqs[-1]}).json() == {"events": [], "next_after": None}


def test_workflows_have_counts_success_rate_and_duration_percentiles(seeded: tuple[httpx.Client, float]) -> None:
    c, now = seeded
    wfs = {w["workflow"]: w for w in c.get("/api/v1/workflows").json()["workflows"]}
    assert list(wfs) == ["etl", "report"]
    etl = wfs["etl"]
    assert etl["runs"] == 5 and etl["by_state"] == {"completed": 2, "failed": 1, "running": 2}
    assert etl["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert etl["duration_p50_seconds"] == pytest.approx(35, abs=0.01)
    assert etl["duration_p95_seconds"] == pytest.approx(39.5, abs=0.01)
    assert etl["last_run_at"] == pytest.approx(now - 5, abs=0.01)
    report = wfs["report"]
    assert report["by_state"] == {"running": 1} and report["success_rate"] is None
    assert report["duration_p50_seconds"] is None and report["duration_p95_seconds"] is None


def test_unknown_runs_and_paths_are_404(seeded: tuple[httpx.Client, float]) -> None:
    c = seeded[0]
    for path in ("/api/v1/runs/nope", "/api/v1/runs/nope/events"):
        r = c.get(path)
        assert r.status_code == 404 and r.json() == {"error": "no run 'nope'"}
    r = c.get("/api/v1/nothing")
    assert r.status_code == 404 and "no such path '/api/v1/nothing'" in r.json()["error"]
    r = c.get("/api/v1/events")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "method GET" in r.json()["error"]
    r = c.get("/api/v1/runs/a%00b")  # no run has a NUL in its id: ingest refuses one
    assert r.status_code == 404 and r.json() == {"error": "no run 'a\\x00b'"}
    assert c.get("/api/v1/runs/a%00b/events").status_code == 404


def test_an_empty_store_has_no_runs_and_no_workflows(server: Server) -> None:
    c = server.client()
    assert c.get("/api/v1/workflows").json() == {"workflows": []}
    assert c.get("/api/v1/runs").json() == {"runs": [], "cursor": None}


def test_any_text_of_the_cursors_form_is_a_position(seeded: tuple[httpx.Client, float]) -> None:
    """A cursor names a position (a creation time and a run id), so one made
    elsewhere, or by hand, pages from there; its form is in the document."""
    c, _ = seeded
    everything = [r["run_id"] for r in c.get("/api/v1/runs", params={"limit": 1000}).json()["runs"]]
    after_all = c.get("/api/v1/runs", params={"cursor": "0-00"})  # before every run: a NUL id is no run's
    assert after_all.status_code == 200 and after_all.json()["runs"] == []
    from_the_top = c.get("/api/v1/runs", params={"cursor": "99999999999-" + "ff" * 4})
    assert from_the_top.status_code == 200 and [r["run_id"] for r in from_the_top.json()["runs"]] == everything
    doc = c.get("/openapi.json").json()
    [cursor] = [p for p in doc["paths"]["/api/v1/runs"]["get"]["parameters"] if p["name"] == "cursor"]
    assert re.fullmatch(cursor["schema"]["pattern"].strip("^$"), "0-00")


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"state": "bogus"}, "'state'"),
        ({"workflow": "etl\x00"}, "'workflow': contains a NUL"),
        ({"q": "\x00"}, "'q': contains a NUL"),
        ({"cursor": "MS4wfGEAYg=="}, "cursor"),  # '1.0|a\0b': shaped like a cursor, but with a NUL
        ({"since": "yesterday"}, "'since'"),
        ({"until": "nan"}, "'until'"),
        ({"limit": "0"}, "'limit'"),
        ({"limit": "ten"}, "'limit'"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "Zm9vfGJhcg"}, "cursor"),  # base64, but not a cursor this store made
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(
    seeded: tuple[httpx.Client, float], params: dict[str, str], names: str
) -> None:
    r = seeded[0].get("/api/v1/runs", params=params)
    assert r.status_code == 400, r.text
    assert names in r.json()["error"]


@pytest.mark.parametrize("params", [{"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "10001"}])
def test_bad_paging_of_a_runs_events_is_400(seeded: tuple[httpx.Client, float], params: dict[str, str]) -> None:
    r = seeded[0].get("/api/v1/runs/done-1/events", params=params)
    assert r.status_code == 400 and list(params)[0] in r.json()["error"]


def test_a_run_id_with_a_slash_is_reached_percent_encoded(server: Server) -> None:
    c = server.client()
    post(c, [event("started", "etl", "nightly/42", id="s1"), event("heartbeat", "etl", "nightly/42", id="s2")])
    run = c.get("/api/v1/runs/nightly%2F42")
    assert run.status_code == 200 and run.json()["run_id"] == "nightly/42"
    events = c.get("/api/v1/runs/nightly%2F42/events").json()["events"]
    assert [e["id"] for e in events] == ["s1", "s2"]
