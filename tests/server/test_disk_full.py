"""A full disk under the store, against a real ``flowsight serve``: senders
hear it as a 503 and the server's log says it once per episode (an ERROR when
writes start failing, an INFO when one succeeds again), however many writes
fail in between.

The disk is a small tmpfs mounted for the test (root only: skipped with the
reason elsewhere, except under ``CI=true``): the SQLite file on it, or a
PostgreSQL tablespace on it that the test's schema is created in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import PG_DSN, require_postgres
from tests.server.conftest import Server, start_server

FULL = re.compile(r"^ERROR: +(\w+) store .*: the disk is full: nothing can be written until space is freed \(", re.M)
CLEARED = re.compile(r"^INFO: +(\w+) store .*: writes succeed again; the disk was full for \d+ s$", re.M)


def _cannot(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


@contextlib.contextmanager
def tiny_disk(size: str, *, owner: str | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a new directory under /tmp (world-traversable,
    so a PostgreSQL server on this machine can reach it), unmounted afterwards."""
    where = Path(tempfile.mkdtemp(prefix="flowsight-disk-", dir="/tmp"))
    where.chmod(0o755)
    options = f"size={size},mode=0755"
    if owner is not None:
        pw = pwd.getpwnam(owner)
        options += f",uid={pw.pw_uid},gid={pw.pw_gid},mode=0700"
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if out.returncode != 0:
        where.rmdir()
        _cannot(f"cannot mount a tmpfs to fill (needs root): {out.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)
        where.rmdir()


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte with a file; the file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def batch(n: int = 20) -> list[dict[str, object]]:
    """Events that take room: random padding does not compress."""
    run = uuid.uuid4().hex
    return [
        {
            "kind": "heartbeat" if i else "started",
            "workflow": "full",
            "run_id": run,
            "attrs": {"pad": os.urandom(1500).hex()},
        }
        for i in range(n)
    ]


def post_until(c: httpx.Client, status: int, what: str, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while (r := c.post("/api/v1/events", json=batch())).status_code != status:
        assert time.monotonic() < deadline, f"{what}: still {r.status_code} after {timeout:g} s: {r.text[:300]}"
        time.sleep(0.05)
    return r


def wait_for_log(server: Server, pattern: re.Pattern[str], count: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(found := pattern.findall(server.output())) < count:
        assert time.monotonic() < deadline, f"{pattern.pattern!r} {count} times: got {found}\n{server.output()}"
        time.sleep(0.1)
    return found


def episodes(server: Server, disk: Path, dialect: str) -> None:
    """Two full-disk episodes, each with many refused writes: said twice, cleared twice."""
    c = server.client(timeout=60)
    assert c.post("/api/v1/events", json=batch()).status_code == 200
    for n in (1, 2):
        filler = fill(disk)
        r = post_until(c, 503, "a write refused on the full disk")
        assert r.json()["error"].startswith(f"store unavailable: {dialect} store: ")
        for _ in range(5):  # more writes fail in the same episode
            assert c.post("/api/v1/events", json=batch()).status_code == 503
        assert wait_for_log(server, FULL, n) == [dialect] * n
        filler.unlink()
        assert post_until(c, 200, "a write accepted once space is freed").json()["accepted"] == 20
        assert wait_for_log(server, CLEARED, n) == [dialect] * n
        assert len(FULL.findall(server.output())) == n, server.output()  # once per episode, not per write
    assert "Traceback" not in server.output()  # no background loop says it again, round after round


def test_a_full_disk_under_a_sqlite_store_is_said_once_per_episode_and_when_it_clears(tmp_path: Path) -> None:
    with tiny_disk("4m") as disk:
        server = start_server(str(disk / "flowsight.db"), log_dir=tmp_path)
        try:
            episodes(server, disk, "sqlite")
        finally:
            assert server.stop() == 0, server.output()


@pytest.fixture
def pg_on_tiny_disk(pg_schema: str) -> Iterator[tuple[str, Path]]:
    """A store URL whose schema's tables live in a tablespace on a tiny disk; the disk."""
    require_postgres()
    if shutil.which("mount") is None or os.geteuid() != 0:
        _cannot("filling a PostgreSQL tablespace needs root (to mount a tmpfs for it)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _cannot("no 'postgres' user here to own the tablespace (is PostgreSQL on this machine?)")
    tablespace = f"fs_full_{uuid.uuid4().hex[:10]}"
    with tiny_disk("8m", owner="postgres") as disk:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            try:
                conn.execute(f"CREATE TABLESPACE {tablespace} LOCATION '{disk}'")
            except psycopg.Error as exc:
                pytest.skip(
                    f"PostgreSQL at {PG_DSN} cannot make a tablespace on this machine's {disk} "
                    f"(not on this machine, or not a superuser): {str(exc).strip()}"
                )
            conn.execute(f"CREATE SCHEMA {pg_schema}")
        sep = "&" if "?" in PG_DSN else "?"
        try:
            yield f"{PG_DSN}{sep}options=-csearch_path%3D{pg_schema}%20-cdefault_tablespace%3D{tablespace}", disk
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE")
                conn.execute(f"DROP TABLESPACE IF EXISTS {tablespace}")


# The teardown's DROP TABLESPACE makes PostgreSQL checkpoint the whole cluster (the dropped
# tables' files linger until one): 40 s on a quiet machine, 90 to over 120 s with the suite
# writing to the same server under two CPU burners. Cleanup, not the behaviour under test.
@pytest.mark.timeout(600)
def test_a_full_disk_under_a_postgresql_store_is_said_once_per_episode_and_when_it_clears(
    pg_on_tiny_disk: tuple[str, Path], tmp_path: Path
) -> None:
    url, disk = pg_on_tiny_disk
    server = start_server(url, log_dir=tmp_path)
    try:
        episodes(server, disk, "postgresql")
    finally:
        assert server.stop() == 0, server.output()
