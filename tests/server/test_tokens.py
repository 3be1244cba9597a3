"""API tokens end to end: made with the CLI, checked by a real server.

No token in the store: the API is open, and only on loopback. Once one
exists: absent or wrong token -> 401, right token with the wrong scope -> 403.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import Server, Serve, create_token, event, flowsight, free_port, sql_rows, start_server

AUTH_TTL = 5.0  # the server's token cache: a change shows within this

ENDPOINTS = [  # (method, path, scope it needs; None: open to all)
    ("POST", "/api/v1/events", "ingest"),
    ("GET", "/api/v1/runs", "read"),
    ("GET", "/api/v1/runs/r1", "read"),
    ("GET", "/api/v1/runs/r1/events", "read"),
    ("POST", "/api/v1/logs", "ingest"),
    ("GET", "/api/v1/logs", "read"),
    ("GET", "/api/v1/logs/templates", "read"),
    ("GET", "/api/v1/faults", "read"),
    ("GET", "/api/v1/metrics", "read"),
    ("GET", "/api/v1/metrics/summary?scope=host:x", "read"),
    ("GET", "/api/v1/metrics/series?scope=host:x&metric=cpu_percent", "read"),
    ("GET", "/api/v1/runs/r1/logs", "read"),
    ("GET", "/api/v1/workflows", "read"),
    ("GET", "/api/v1/stream", "read"),
    ("GET", "/metrics", "read"),
    ("GET", "/healthz", None),
    ("GET", "/openapi.json", None),
]
CALLERS = ["none", "wrong", "not-bearer", "bare-bearer", "ingest", "read", "admin"]


def expected(caller: str, scope: str | None) -> int:
    if scope is None:
        return 200
    if caller in ("none", "wrong", "not-bearer", "bare-bearer"):
        return 401
    return 200 if caller in (scope, "admin") else 403


def call(c: httpx.Client, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    if method == "POST" and path == "/api/v1/logs":
        return c.post(path, json={"id": "tok-l1", "message": "hello", "run_id": "r1"}, headers=headers)
    if method == "POST":
        return c.post(path, json=event("started", "etl", "r1", id="tok-e1"), headers=headers)
    with c.stream(method, path, headers=headers) as r:  # the stream never ends: status and head only
        if r.headers.get("content-type", "").startswith("application/json"):
            r.read()
        return r


@pytest.fixture(scope="module")
def guarded(
    module_store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, dict[str, dict[str, str]]]]:
    headers = {
        "none": {},
        "wrong": {"Authorization": "Bearer fst_not-a-token-this-server-made"},
        "not-bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "bare-bearer": {"Authorization": "Bearer"},
    }
    for scope in ("ingest", "read", "admin"):
        headers[scope] = {"Authorization": f"Bearer {create_token(module_store_url, scope, f'm-{scope}')}"}
    s = start_server(module_store_url, log_dir=tmp_path_factory.mktemp("logs"))
    c = s.client()
    c.post("/api/v1/events", json=event("started", "etl", "r1", id="tok-e1"), headers=headers["admin"])
    yield c, headers
    assert s.stop() == 0, s.output()


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_each_endpoint_answers_each_caller_by_scope(
    guarded: tuple[httpx.Client, dict[str, dict[str, str]]], caller: str, method: str, path: str, scope: str | None
) -> None:
    c, headers = guarded
    r = call(c, method, path, headers[caller])
    want = expected(caller, scope)
    assert r.status_code == want, (r.status_code, r.text if want != 200 else "")
    if want == 401:
        msg = r.json()["error"]
        if caller == "wrong":
            assert msg == "unknown or revoked token"
        else:
            assert "Authorization: Bearer <token>" in msg
            assert f"flowsight token create --scope {scope} --name NAME" in msg  # the scope this endpoint needs
    if want == 403:
        assert r.json()["error"] == f"token 'm-{caller}' has scope '{caller}'; this needs '{scope}' (or admin)"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/api/v1/alerts", "read"),
        ("POST", "/api/v1/alerts", "ingest"),
        ("POST", "/api/v1/silences", "admin"),
        ("DELETE", "/api/v1/silences/s1", "admin"),
    ],
)
def test_a_call_without_a_token_is_told_how_to_make_one_with_the_scope_it_needs(
    guarded: tuple[httpx.Client, dict[str, dict[str, str]]], method: str, path: str, scope: str
) -> None:
    c, _ = guarded
    r = c.request(method, path, json={} if method == "POST" else None)
    assert r.status_code == 401
    assert r.json()["error"] == (
        "missing token: send 'Authorization: Bearer <token>' "
        f"(make one with: flowsight token create --scope {scope} --name NAME)"
    )


def test_the_api_is_open_on_loopback_until_the_first_token_exists(server: Server, store_url: str) -> None:
    c = server.client()
    assert c.post("/api/v1/events", json=event("started", "etl", "r1")).status_code == 200
    assert c.get("/api/v1/runs").status_code == 200
    token = create_token(store_url, "ingest", "ci")
    assert token.startswith("fst_") and len(token) > 40
    started = time.monotonic()
    while c.get("/api/v1/runs").status_code == 200:
        assert time.monotonic() - started < AUTH_TTL + 3, "still open after the first token was made"
        time.sleep(0.1)
    assert c.get("/api/v1/runs").status_code == 401
    assert c.post("/api/v1/events", json=event("heartbeat", "etl", "r1")).status_code == 401
    ci = server.client(token)
    assert ci.post("/api/v1/events", json=event("heartbeat", "etl", "r1")).status_code == 200
    assert ci.get("/api/v1/runs").status_code == 403


def test_a_revoked_token_stops_working_within_the_cache_ttl(serve: Serve, store_url: str) -> None:
    ci, admin = create_token(store_url, "ingest", "ci"), create_token(store_url, "admin", "me")
    server = serve()
    c = server.client(ci)
    assert c.post("/api/v1/events", json=event("started", "etl", "r1")).status_code == 200
    out = flowsight("token", "revoke", "ci", db=store_url)
    assert out.returncode == 0 and "revoked" in out.stdout
    revoked = time.monotonic()
    while (status := c.post("/api/v1/events", json=event("heartbeat", "etl", "r1")).status_code) == 200:
        assert time.monotonic() - revoked < AUTH_TTL + 2, "a revoked token still works"
        time.sleep(0.1)
    assert status == 401
    assert server.client(admin).get("/api/v1/runs").status_code == 200  # the others are untouched
    again = flowsight("token", "revoke", "ci", db=store_url)
    assert again.returncode == 2 and "no token named 'ci'" in " ".join(again.stderr.split())


def test_token_ls_shows_names_and_scopes_never_the_tokens(store_url: str) -> None:
    tokens = {name: create_token(store_url, scope, name) for name, scope in (("ci", "ingest"), ("grafana", "read"))}
    out = flowsight("token", "ls", db=store_url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["ci", "ingest"], ["grafana", "read"]]
    for token in tokens.values():
        assert token not in out.stdout + out.stderr and token[4:20] not in out.stdout


def test_only_a_hash_of_a_token_is_stored(store_url: str) -> None:
    token = create_token(store_url, "admin", "me")
    rows = sql_rows(store_url, "SELECT * FROM tokens")
    assert len(rows) == 1
    cells = [str(c) for c in rows[0]]
    secret = token.removeprefix("fst_")
    assert not any(secret[:12] in c for c in cells), cells
    assert hashlib.sha256(token.encode()).hexdigest() in cells


def test_a_token_name_is_taken_once_and_a_scope_must_exist(store_url: str) -> None:
    create_token(store_url, "read", "dash")
    dup = flowsight("token", "create", "--scope", "admin", "--name", "dash", db=store_url)
    assert dup.returncode == 2 and dup.stdout == ""
    assert "a token named 'dash' exists" in " ".join(dup.stderr.split())
    bad = flowsight("token", "create", "--scope", "root", "--name", "x", db=store_url)
    assert bad.returncode == 2 and "invalid choice: 'root'" in bad.stderr


def test_serving_beyond_loopback_with_no_token_refuses_to_start(store_url: str) -> None:
    out = flowsight("serve", "--host", "0.0.0.0", "--port", str(free_port()), db=store_url, timeout=30)
    assert out.returncode == 2
    said = " ".join(out.stderr.split())
    assert "refusing to listen on '0.0.0.0' with no API token" in said
    assert "flowsight token create --scope admin --name me" in said
    assert "Uvicorn running" not in out.stderr


def test_serving_beyond_loopback_starts_once_a_token_exists(store_url: str, tmp_path: Path) -> None:
    token = create_token(store_url, "admin", "me")
    server = start_server(store_url, log_dir=tmp_path, host="0.0.0.0")  # checked on 127.0.0.1 only
    try:
        assert server.client().get("/api/v1/runs").status_code == 401
        assert server.client(token).get("/api/v1/runs").status_code == 200
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.parametrize(
    ("host", "first_token"),
    [
        ("127.0.0.1", "before start"),
        ("0.0.0.0", "before start"),
        ("127.0.0.1", "while open"),  # open at start, closed by the first token
    ],
)
def test_revoking_the_last_token_never_opens_the_api(
    store_url: str, tmp_path: Path, host: str, first_token: str
) -> None:
    token = create_token(store_url, "admin", "me") if first_token == "before start" else ""
    server = start_server(store_url, log_dir=tmp_path, host=host)
    try:
        anyone = server.client()
        if not token:
            assert anyone.get("/api/v1/runs").status_code == 200
            token = create_token(store_url, "admin", "me")
            wait_for_status(anyone, 401, "the first token closed the API")
        me = server.client(token)
        assert me.get("/api/v1/runs").status_code == 200
        out = flowsight("token", "revoke", "me", db=store_url)
        assert out.returncode == 0, out.stderr
        assert "that was the last token" in " ".join(out.stderr.split())
        wait_for_status(me, 401, "the revoked token refused")
        assert me.get("/api/v1/runs").json()["error"] == "unknown or revoked token"
        assert anyone.get("/api/v1/runs").status_code == 401
        assert anyone.post("/api/v1/events", json=event("started", "etl", "r1")).status_code == 401
        assert anyone.post("/api/v1/silences", json={"matchers": ["alertname=X"], "duration": "1h"}).status_code == 401
        assert anyone.delete("/api/v1/silences/s1").status_code == 401
    finally:
        assert server.stop() == 0, server.output()


def wait_for_status(c: httpx.Client, status: int, what: str, timeout: float = AUTH_TTL + 25) -> None:
    """Poll ``GET /api/v1/runs`` until it answers ``status``."""
    deadline = time.monotonic() + timeout
    while (got := c.get("/api/v1/runs").status_code) != status:
        assert time.monotonic() < deadline, f"{what}: still {got} after {timeout:g} s"
        time.sleep(0.1)


def test_token_revoke_warns_when_it_takes_the_last_admin_token_and_the_last_token(store_url: str) -> None:
    for name, scope in (("me", "admin"), ("you", "admin"), ("dash", "read")):
        create_token(store_url, scope, name)
    said = []
    for name in ("me", "you", "dash"):
        out = flowsight("token", "revoke", name, db=store_url)
        assert out.returncode == 0 and f"token {name!r} revoked" in out.stdout, out.stderr
        said.append(" ".join(out.stderr.split()))
    assert said[0] == ""
    assert said[1] == (
        "flowsight: warning: that was the last admin token: nobody can add or end silences until "
        "you make one: flowsight token create --scope admin --name NAME"
    )
    assert said[2].startswith(
        "flowsight: warning: that was the last token. A running server stays closed (it never falls back to open)"
    )
    assert "flowsight token create --scope admin --name NAME" in said[2]
