"""Shared fixtures: a fresh store on each backend.

PostgreSQL tests use the real server (``FLOWSIGHT_TEST_PG_DSN``, default
``postgresql://postgres@127.0.0.1:5432/test``), each in a schema of its own
that is dropped afterwards. Without a server they skip with one line of
reason, except under ``CI=true``, where a missing server fails the run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from flowsight.store import SqlStore, open_store
from tests.helpers import Recorder, recording, unavailable

# The command line's tables are as wide as COLUMNS says when printed to a pipe
# (160 without it): the tests' subprocesses get a fixed width, whatever the
# terminal or harness that runs them exports; a test of another width sets its own.
os.environ["COLUMNS"] = "160"

PG_DSN = os.environ.get("FLOWSIGHT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_pg_error: str | None = None


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    global _pg_error
    if _pg_error is None:
        try:
            with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_error = ""
        except psycopg.Error as exc:
            _pg_error = f"PostgreSQL not reachable at {PG_DSN}: {str(exc).strip().splitlines()[0]}"
    return _pg_error or None


def require_postgres() -> None:
    why = _pg_available()
    if why:
        unavailable(why)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema name, dropped after the test."""
    require_postgres()
    name = f"fs_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    """A DSN whose search_path is a fresh schema (for subprocesses and the CLI)."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {pg_schema}")
    sep = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{sep}options=-csearch_path%3D{pg_schema}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for a fresh store on each backend (for code that opens its own)."""
    if request.param == "sqlite":
        return str(tmp_path / "flowsight.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """A fresh, migrated store on each backend."""
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(str(tmp_path / "flowsight.db"))
    yield s
    s.close()


@pytest.fixture
def receiver() -> Iterator[Recorder]:
    """A real webhook receiver on 127.0.0.1 that records what it is sent."""
    with recording() as srv:
        yield srv


@pytest.fixture(params=["asyncio", "uvloop"])
def any_loop(request: pytest.FixtureRequest) -> Iterator[str]:
    """``asyncio.run`` on each event loop flowsight runs on: the standard
    library's (the CLI) and uvloop (``flowsight serve``, through uvicorn)."""
    if request.param == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield str(request.param)
    finally:
        asyncio.set_event_loop_policy(None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """What a test captured may hold lone surrogates (the log tests' undecodable bytes, kept by
    ``surrogateescape``): escaped here, so pytest-xdist can send the report to its controller."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [(key, _sendable(text)) for key, text in report.sections]
    if isinstance(report.longrepr, str):
        report.longrepr = _sendable(report.longrepr)


def _sendable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
