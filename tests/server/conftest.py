"""A real ``flowsight serve``: a subprocess, as a user starts it, on a free
127.0.0.1 port, over the test's store; helpers for talking to it.

``serve(*flags)`` starts one (stopped with SIGTERM after the test) and waits
for ``/healthz``; ``flowsight(*args, db=...)`` runs any other command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import PG_DSN, require_postgres
from tests.helpers import wait_healthy

FLOWSIGHT = [sys.executable, "-m", "flowsight.cli.main"]
STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flowsight(*args: str, db: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``flowsight --db <db> <args>`` to completion."""
    return subprocess.run([*FLOWSIGHT, "--db", db, *args], capture_output=True, text=True, timeout=timeout)


def create_token(db: str, scope: str, name: str) -> str:
    """``flowsight token create``: the token it printed (its only line on stdout)."""
    out = flowsight("token", "create", "--scope", scope, "--name", name, db=db)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert len(lines) == 1, out.stdout
    return lines[0]


def sql_rows(db: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows straight from the database behind ``db`` (not through the store)."""
    if db.startswith("postgresql://"):
        with psycopg.connect(db) as pg:
            return list(pg.execute(sql).fetchall())
    lite = sqlite3.connect(db)
    try:
        return list(lite.execute(sql).fetchall())
    finally:
        lite.close()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None, timeout: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.clients.append(c)
        return c

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the server and wait; its exit code."""
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"server did not stop within {timeout}s of signal {sig}:\n{self.output()}")
        return self.proc.returncode


def start_server(db: str, *flags: str, log_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> Server:
    """Start ``flowsight serve`` and wait until ``/healthz`` answers on 127.0.0.1
    (on ``port``: a server started again where a balancer expects it; default a free one)."""
    for _ in range(3):  # the free port may be taken between finding it and binding it
        port = port or free_port()
        log = log_dir / f"serve-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*FLOWSIGHT, "--db", db, "serve", "--host", host, "--port", str(port), *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(proc, port, log)
        if wait_healthy(proc, server.url, STARTUP_SECONDS):
            return server
        if proc.poll() is None:
            server.stop(signal.SIGKILL)
            pytest.fail(f"server not up within {STARTUP_SECONDS}s:\n{server.output()}")
        if "address already in use" not in server.output().lower():
            pytest.fail(f"server exited with {proc.returncode} at startup:\n{server.output()}")
    pytest.fail("no free port after three tries")


Serve = Callable[..., Server]


@pytest.fixture
def serve(store_url: str, tmp_path: Path) -> Iterator[Serve]:
    """``serve(*flags)``: a running server over ``store_url``; stopped afterwards."""
    started: list[Server] = []

    def make(*flags: str) -> Server:
        s = start_server(store_url, *flags, log_dir=tmp_path)
        started.append(s)
        return s

    yield make
    for s in started:
        running = s.proc.poll() is None
        rc = s.stop()
        if running:
            assert rc == 0, f"SIGTERM: exit code {rc}\n{s.output()}"


@pytest.fixture
def server(serve: Serve) -> Server:
    return serve()


# ---- a store and a server shared by one module (for parametrized tables) ----
@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("store") / "flowsight.db")
        return
    require_postgres()
    schema = f"fs_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_DSN else "?"
    yield f"{PG_DSN}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def need_binary(name: str) -> str:
    """The path of a tool the test needs: missing fails under CI=true, else skips."""
    path = shutil.which(name)
    if path is None:
        why = f"{name!r} is not installed (Debian package 'prometheus'; scripts/test installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    return path


def event(
    kind: str,
    workflow: str,
    run_id: str,
    step: str | None = None,
    *,
    ts: float | None = None,
    id: str | None = None,
    **attrs: Any,
) -> dict[str, Any]:
    """One event as JSON on the wire."""
    ev: dict[str, Any] = {"kind": kind, "workflow": workflow, "run_id": run_id}
    if step is not None:
        ev["step"] = step
    if ts is not None:
        ev["ts"] = ts
    if id is not None:
        ev["id"] = id
    if attrs:
        ev["attrs"] = attrs
    return ev


def post(client: httpx.Client, body: Any) -> dict[str, Any]:
    """POST events; asserts a 200 and returns the per-event answer. (JSON
    with ASCII escapes, as most clients send it: half a UTF-16 pair can be sent.)"""
    r = client.post("/api/v1/events", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out
