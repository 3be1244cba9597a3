"""The dashboard as the server ships it: the page at ``/`` and at each of its
routes, its assets with their content types, and the read endpoints made for
it (``/api/v1/overview``, ``/api/v1/performance``) on real data in SQLite and
PostgreSQL. (The pages in a real browser: test_dashboard_browser.py.)"""

from __future__ import annotations

import fnmatch
import re
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowsight.server.app import create_app
from flowsight.server.pages import ROOT
from flowsight.store.sql import SqlStore
from tests.server.conftest import event, post
from tests.server.test_logs_api import InProcess as LogsInProcess

REPO = Path(__file__).resolve().parents[2]


class InProcess(LogsInProcess):
    """``create_app(store)`` under a real uvicorn on 127.0.0.1, in a thread."""

    def __init__(self, store: SqlStore, **kwargs: Any) -> None:
        super().__init__(create_app(store, log_retention=None, **kwargs))


@pytest.fixture
def client(store: SqlStore) -> Iterator[httpx.Client]:
    with InProcess(store, stall_timeout=60.0) as c:
        yield c


@pytest.fixture
def sqlite_client(sqlite_store: SqlStore) -> Iterator[httpx.Client]:
    with InProcess(sqlite_store) as c:
        yield c


# ---- the page and its assets ------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/", "/alerts", "/faults", "/performance", "/runs/etl-1", "/runs/a%2Fb", "/?workflow=etl&state=failed"]
)
def test_every_route_of_the_dashboard_answers_its_page(sqlite_client: httpx.Client, path: str) -> None:
    r = sqlite_client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/ui/js/main.js"></script>' in r.text
    assert 'data-testid="theme-toggle"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]


def test_every_asset_is_served_with_its_content_type(sqlite_client: httpx.Client) -> None:
    types = {
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".html": "text/html; charset=utf-8",
        ".svg": "image/svg+xml",
    }
    files = [p for p in ROOT.rglob("*") if p.is_file()]
    assert {"index.html", "app.css", "js/main.js", "js/api.js", "js/overview.js", "js/run.js"} <= {
        p.relative_to(ROOT).as_posix() for p in files
    }
    for p in files:
        r = sqlite_client.get(f"/ui/{p.relative_to(ROOT).as_posix()}")
        assert r.status_code == 200, p
        assert r.headers["content-type"] == types[p.suffix], p
        assert r.content == p.read_bytes()
        assert r.headers["x-content-type-options"] == "nosniff"


def test_an_unchanged_asset_is_answered_304_to_its_etag(sqlite_client: httpx.Client) -> None:
    first = sqlite_client.get("/ui/js/main.js")
    again = sqlite_client.get("/ui/js/main.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert sqlite_client.get("/ui/js/main.js", headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    "path", ["/ui/nope.js", "/ui/../app.py", "/ui/%2e%2e/app.py", "/ui/js", "/ui/", "/ui/js/../../pages.py"]
)
def test_only_the_dashboard_files_are_served(sqlite_client: httpx.Client, path: str) -> None:
    r = sqlite_client.get(path)
    assert r.status_code == 404
    assert "error" in r.json()


def test_the_scripts_import_only_our_own_modules() -> None:
    """No third-party front-end code: every import is a file of the dashboard."""
    for js in (ROOT / "js").glob("*.js"):
        for target in re.findall(r"""^import .*? from ['"]([^'"]+)['"];""", js.read_text(), flags=re.M):
            assert target.startswith("./"), (js.name, target)
            assert (js.parent / target).is_file(), (js.name, target)
        assert len(js.read_text().splitlines()) < 600, js.name


def test_every_dashboard_file_is_shipped_as_package_data() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["flowsight"]
    package = REPO / "src" / "flowsight"
    for p in ROOT.rglob("*"):
        if p.is_file():
            name = p.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(name, pattern) for pattern in data), name


def test_the_page_needs_no_token_but_its_data_does(sqlite_store: SqlStore) -> None:
    token, _ = sqlite_store.tokens.create_token("dash", "read")
    with InProcess(sqlite_store) as c:
        assert c.get("/").status_code == 200
        assert c.get("/ui/js/api.js").status_code == 200
        assert c.get("/api/v1/overview").status_code == 401
        ok = c.get("/api/v1/overview", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["runs"] == 0
        assert c.get("/api/v1/performance", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# ---- /api/v1/overview -----------------------------------------------------------------
def run_events(
    workflow: str, run_id: str, start: float, seconds: float, end: str | None, steps: tuple[str, ...] = ("a",)
) -> list[dict[str, Any]]:
    """A run of ``steps`` from ``start``, ``seconds`` long, ending with ``end`` (None: still running)."""
    evs = [event("started", workflow, run_id, ts=start, id=f"{run_id}-s", total_steps=len(steps))]
    share = seconds / len(steps)
    for i, step in enumerate(steps):
        t = start + i * share
        evs.append(event("step_started", workflow, run_id, step, ts=t, id=f"{run_id}-{step}-s"))
        if end is not None or i < len(steps) - 1:
            kind = "step_failed" if end == "failed" and i == len(steps) - 1 else "step_completed"
            extra = {"error": "boom"} if kind == "step_failed" else {}
            evs.append(event(kind, workflow, run_id, step, ts=t + share, id=f"{run_id}-{step}-e", **extra))
    if end is not None:
        evs.append(
            event(
                end,
                workflow,
                run_id,
                ts=start + seconds,
                id=f"{run_id}-e",
                **({"error": "boom"} if end == "failed" else {}),
            )
        )
    return evs


def test_the_overview_counts_runs_per_state_and_gives_each_workflow_its_trend(client: httpx.Client) -> None:
    now = time.time()
    evs: list[dict[str, Any]] = []
    for i, (secs, end) in enumerate([(10, "completed"), (20, "completed"), (30, "failed"), (40, "completed")]):
        evs += run_events("etl", f"etl-{i}", now - 3000 + i * 100, secs, end, steps=("extract", "load"))
    evs += run_events("etl", "etl-live", now - 20, 100, None, steps=("extract", "load"))
    evs += run_events("sync", "sync-quiet", now - 2000, 100, None)  # quiet for 2000 s: stalled (bound 60 s)
    evs += run_events("sync", "sync-0", now - 2500, 5, "cancelled")
    out = post(client, evs)
    assert out["rejected"] == 0, out
    r = client.get("/api/v1/overview")
    assert r.status_code == 200, r.text
    o = r.json()
    assert o["runs"] == 7
    assert o["by_state"] == {"completed": 3, "failed": 1, "running": 2, "cancelled": 1}
    assert o["stalled"] == 1
    assert o["faults_open"] == 0 and isinstance(o["alerts"], dict)
    assert abs(o["now"] - time.time()) < 5
    wf = {w["workflow"]: w for w in o["workflows"]}
    assert list(wf) == ["etl", "sync"]
    etl = wf["etl"]
    assert etl["runs"] == 5 and etl["by_state"] == {"completed": 3, "failed": 1, "running": 1}
    assert etl["success_rate"] == 0.75
    assert etl["duration_p50_seconds"] == 20.0
    assert [(p["run_id"], p["state"], p["duration_seconds"]) for p in etl["trend"]] == [
        ("etl-0", "completed", 10.0),
        ("etl-1", "completed", 20.0),
        ("etl-2", "failed", 30.0),
        ("etl-3", "completed", 40.0),
    ]
    assert [p["run_id"] for p in wf["sync"]["trend"]] == ["sync-0"] and wf["sync"]["success_rate"] == 0.0
    short = client.get("/api/v1/overview", params={"trend": 2}).json()
    assert [p["run_id"] for p in short["workflows"][0]["trend"]] == ["etl-2", "etl-3"]
    assert client.get("/api/v1/overview", params={"trend": 0}).json()["workflows"][0]["trend"] == []


@pytest.mark.parametrize("query", [{"trend": "-1"}, {"trend": "201"}, {"trend": "many"}])
def test_a_bad_overview_parameter_is_a_400_naming_it(sqlite_client: httpx.Client, query: dict[str, str]) -> None:
    r = sqlite_client.get("/api/v1/overview", params=query)
    assert r.status_code == 400 and "'trend'" in r.json()["error"]


def test_the_overview_of_an_empty_store(sqlite_client: httpx.Client) -> None:
    o = sqlite_client.get("/api/v1/overview").json()
    assert (o["runs"], o["by_state"], o["stalled"], o["workflows"]) == (0, {}, 0, [])


# ---- /api/v1/performance ----------------------------------------------------------------
def test_performance_gives_each_workflow_and_step_its_rate_and_percentiles(client: httpx.Client) -> None:
    now = time.time()
    evs: list[dict[str, Any]] = []
    for i in range(10):  # in the last hour: 10 s .. 100 s, steps a and b share it
        evs += run_events(
            "etl",
            f"etl-{i}",
            now - 3000 + i * 200,
            10.0 * (i + 1),
            "failed" if i == 9 else "completed",
            steps=("a", "b"),
        )
    evs += run_events("etl", "etl-old", now - 3 * 86400, 999, "completed", steps=("a", "b"))  # out of range
    evs += run_events("other", "other-old", now - 3 * 86400, 5, "completed")
    assert post(client, evs)["rejected"] == 0
    r = client.get("/api/v1/performance", params={"since": "1h"})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["until"] - page["since"] == pytest.approx(3600, abs=5)
    assert [w["workflow"] for w in page["workflows"]] == ["etl"]  # 'other' ran nothing in the range
    etl = page["workflows"][0]
    assert etl["runs"] == 10 and etl["by_state"] == {"completed": 9, "failed": 1}
    assert etl["sampled"] is False and etl["window_seconds"] == pytest.approx(3600, abs=5)
    assert etl["per_hour"] == pytest.approx(10.0, abs=0.05)
    assert etl["duration"]["count"] == 9
    assert etl["duration"]["p50"] == 50.0 and etl["duration"]["p99"] == pytest.approx(89.2)
    steps = {s["step"]: s for s in etl["steps"]}
    assert list(steps) == ["a", "b"]
    assert (steps["a"]["attempts"], steps["a"]["failed"]) == (10, 0)
    assert (steps["b"]["attempts"], steps["b"]["failed"]) == (10, 1)
    assert steps["a"]["duration"]["count"] == 10 and steps["a"]["duration"]["p50"] == 27.5
    assert steps["b"]["duration"]["count"] == 9
    assert [p["run_id"] for p in etl["points"]] == [f"etl-{i}" for i in range(10)]
    assert etl["points"][9] == {
        "run_id": "etl-9",
        "start_time": pytest.approx(now - 1200),
        "duration_seconds": 100.0,
        "state": "failed",
    }
    week = client.get("/api/v1/performance", params={"since": "7d", "workflow": "other"}).json()
    assert [(w["workflow"], w["runs"]) for w in week["workflows"]] == [("other", 1)]
    none = client.get("/api/v1/performance", params={"since": "1h", "workflow": "nope"}).json()
    assert [(w["workflow"], w["runs"], w["duration"]["p50"]) for w in none["workflows"]] == [("nope", 0, None)]


def test_an_empty_performance_range_is_an_empty_page(sqlite_client: httpx.Client) -> None:
    """What the document allows is answered: a range in which nothing can start has no runs."""
    r = sqlite_client.get("/api/v1/performance", params={"since": "0", "until": "0"})
    assert r.status_code == 200 and r.json()["workflows"] == [], r.text
    assert sqlite_client.get("/api/v1/performance", params={"since": "1h", "until": "2h"}).json()["workflows"] == []


@pytest.mark.parametrize(
    "query, names",
    [
        ({"since": "soon"}, "'since'"),
        ({"workflow": "a\x00b"}, "'workflow'"),
    ],
)
def test_a_bad_performance_range_is_a_400_naming_it(
    sqlite_client: httpx.Client, query: dict[str, str], names: str
) -> None:
    r = sqlite_client.get("/api/v1/performance", params=query)
    assert r.status_code == 400 and names in r.json()["error"], r.text
