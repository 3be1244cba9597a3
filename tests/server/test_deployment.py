"""Replicas as a team deploys them: three ``flowsight serve`` on the real
PostgreSQL through Debian's PgBouncer in transaction mode, behind Debian's
HAProxy; the leader killed while failures pour in through the balancer:
another replica takes every duty, nothing posted is lost, every failed run
is paged exactly once (docs/replicas.md)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import PG_DSN, require_postgres
from tests.helpers import Recorder, unavailable, wait_for
from tests.server.conftest import Server, free_port, start_server
from tests.server.test_alerting_e2e import config, failed_run

PGBOUNCER = Path("/usr/sbin/pgbouncer")
HAPROXY = Path("/usr/sbin/haproxy")
LEASE = 2.0
RUNS = 60


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    def up() -> bool:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
        try:
            with httpx.Client() as c:  # any answer (even a refusal of HTTP) means the port listens
                c.get(f"http://127.0.0.1:{port}/", timeout=1)
        except httpx.RemoteProtocolError:
            return True
        except httpx.TransportError:
            return False
        return True

    wait_for(f"{what} on port {port}", up)


@pytest.fixture
def pgbouncer() -> Iterator[str]:
    """A DSN through a real PgBouncer in transaction mode to a fresh database."""
    if not PGBOUNCER.exists():
        unavailable(f"{PGBOUNCER} is missing (Debian package 'pgbouncer'; scripts/test installs it)")
    require_postgres()
    target = conninfo_to_dict(PG_DSN)
    db = f"fs_pgb_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    where = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    user = str(target.get("user") or "postgres")
    port = free_port()
    (where / "users.txt").write_text(f'"{user}" ""\n')
    (where / "pgbouncer.ini").write_text(
        f"""[databases]
{db} = host={target.get("host", "127.0.0.1")} port={target.get("port", 5432)} dbname={db} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {where / "users.txt"}
pool_mode = transaction
default_pool_size = 8
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
"""
    )
    run_as: list[str] = []
    if os.geteuid() == 0:  # PgBouncer will not run as root
        owner = pwd.getpwnam("postgres")
        for path in (where, *where.iterdir()):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        run_as = ["-u", "postgres"]
    log = where / "pgbouncer.out"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(PGBOUNCER), *run_as, str(where / "pgbouncer.ini")], stdout=out, stderr=out)
    try:
        dsn = f"postgresql://{user}@127.0.0.1:{port}/{db}"

        def answers() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                return False

        wait_for("PgBouncer", answers)
        yield dsn
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(where, ignore_errors=True)
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def haproxy(tmp_path: Path, servers: list[Server]) -> tuple[subprocess.Popen[bytes], str]:
    """A real HAProxy balancing over ``servers`` (health-checked on /healthz); its URL."""
    if not HAPROXY.exists():
        unavailable(f"{HAPROXY} is missing (Debian package 'haproxy'; scripts/test installs it)")
    port = free_port()
    backends = "\n".join(f"    server r{i} 127.0.0.1:{s.port} check" for i, s in enumerate(servers))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"""global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend flowsight
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 300ms fall 2 rise 1
{backends}
"""
    )
    log = tmp_path / "haproxy.out"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(HAPROXY), "-f", str(cfg), "-db"], stdout=out, stderr=out)
    _wait_port(port, proc, "HAProxy", log)
    return proc, f"http://127.0.0.1:{port}"


def _cluster(url: str) -> dict[str, tuple[str, int]]:
    r = httpx.get(f"{url}/api/v1/cluster", timeout=5)
    r.raise_for_status()
    return {d["duty"]: (d["leader"], d["epoch"]) for d in r.json()["duties"]}


def test_three_replicas_through_pgbouncer_behind_haproxy_lose_nothing_and_page_once_when_the_leader_dies(
    pgbouncer: str, tmp_path: Path, receiver: Recorder
) -> None:
    cfg = config(tmp_path, receiver.server_address[1])
    replicas = {
        name: start_server(
            pgbouncer, "--replica-id", name, "--lease", f"{LEASE:g}s", "--config", str(cfg), log_dir=tmp_path
        )  # fmt: skip
        for name in ("a", "b", "c")
    }
    lb, url = haproxy(tmp_path, list(replicas.values()))
    posted: list[str] = []
    errors: list[str] = []
    try:
        assert set(_cluster(url).values()) == {("a", 1)}

        def post_all() -> None:
            with httpx.Client(base_url=url, timeout=10) as c:
                for i in range(RUNS):
                    body = failed_run(f"r{i}", f"wf{i}")
                    for _ in range(100):  # a request the balancer had sent to the killed replica is sent again
                        try:
                            if c.post("/api/v1/events", json=body).status_code == 200:
                                posted.append(f"r{i}")
                                break
                        except httpx.TransportError:
                            pass
                        time.sleep(0.1)
                    else:
                        errors.append(f"r{i} never accepted")
                    time.sleep(0.05)

        poster = threading.Thread(target=post_all)
        poster.start()
        wait_for("a third of the runs posted", lambda: len(posted) >= RUNS // 3)
        replicas["a"].stop(signal.SIGKILL)
        killed = time.monotonic()

        def new_leader() -> dict[str, tuple[str, int]] | None:
            now = _cluster(url)
            return now if {leader for leader, _ in now.values()} <= {"b", "c"} else None

        leaders = wait_for("another replica to lead every duty", new_leader, timeout=15)
        took = time.monotonic() - killed
        assert len({v for v in leaders.values()}) == 1 and next(iter(leaders.values()))[1] == 2, leaders
        assert took < 15
        poster.join(120)
        assert not errors and len(posted) == RUNS

        # nothing acknowledged lost: every run is in the store, failed
        with psycopg.connect(pgbouncer) as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall()
        assert rows == [("failed", RUNS)]

        def pages() -> dict[str, set[str]]:
            keys: dict[str, set[str]] = defaultdict(set)
            for b in list(receiver.bodies):
                if b["status"] == "firing":
                    for a in b["alerts"]:
                        if a["labels"].get("alertname") == "RunFailed":
                            keys[a["labels"]["run_id"]].add(b["idempotencyKey"])
            return keys

        wait_for("a page for every failed run", lambda: len(pages()) == RUNS, timeout=60)

        def settled() -> bool:  # every alert told, nothing left to send: no page can come after this
            with psycopg.connect(pgbouncer) as conn:
                pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE state <> 'sent'").fetchone()
                untold = conn.execute("SELECT COUNT(*) FROM alerts WHERE told = '[]'").fetchone()
            return pending == (0,) and untold == (0,)

        wait_for("the outbox to be sent and every alert told", settled)
        with psycopg.connect(pgbouncer) as conn:  # exactly once in the log: one outbox row a page
            assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone() == (RUNS,)
        keys = pages()
        twice = {run: k for run, k in keys.items() if len(k) > 1}
        assert not twice, f"paged twice (under different keys): {twice}"
        resent = len([b for b in receiver.bodies if b["status"] == "firing"]) - RUNS
        print(f"takeover {took:.1f}s; {RUNS} runs paged once each; {resent} resent under the same key")
    finally:
        lb.terminate()
        lb.wait(10)
        for s in replicas.values():
            if s.proc.poll() is None:
                assert s.stop() == 0, s.output()
