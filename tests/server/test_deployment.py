"""Replicas as a team deploys them: three ``flowsight serve`` on the real
PostgreSQL behind Debian's HAProxy, directly and through Debian's PgBouncer in
transaction mode. Failures, then their resolutions, pour in through the
balancer while the leader is killed (kill -9) and started again, twice:
another replica takes every duty, nothing posted is lost, every firing and
every resolution is paged exactly once, one outbox row each (docs/replicas.md)."""

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
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import PG_DSN, require_postgres
from tests.helpers import Recorder, unavailable, wait_for
from tests.server.conftest import Server, event, free_port, start_server
from tests.server.test_alerting_e2e import config, failed_run

PGBOUNCER = Path("/usr/sbin/pgbouncer")
HAPROXY = Path("/usr/sbin/haproxy")
LEASE = 10.0  # flowsight serve's default


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


class Team:
    """Three replicas behind HAProxy, each restarted where the balancer expects it."""

    def __init__(self, dsn: str, tmp_path: Path, cfg: Path, lease: float) -> None:
        self.dsn, self.tmp_path, self.cfg, self.lease = dsn, tmp_path, cfg, lease
        self.replicas = {name: self._start(name) for name in ("a", "b", "c")}
        self.lb, self.url = haproxy(tmp_path, list(self.replicas.values()))
        self.takeovers: list[float] = []

    def _start(self, name: str, port: int | None = None) -> Server:
        return start_server(
            self.dsn, "--replica-id", name, "--lease", f"{self.lease:g}s", "--config", str(self.cfg),
            log_dir=self.tmp_path, port=port,
        )  # fmt: skip

    def leaders(self) -> dict[str, tuple[str, int]]:
        return _cluster(self.url)

    def kill_the_leader(self) -> None:
        """kill -9 the replica leading every duty; wait for another to lead them all; start it again."""
        before = self.leaders()
        (leader, epoch), *_ = set(before.values())
        assert set(before.values()) == {(leader, epoch)}, before
        killed = self.replicas[leader]
        killed.stop(signal.SIGKILL)
        t0 = time.monotonic()

        def taken() -> bool:
            now = self.leaders()
            return len(set(now.values())) == 1 and all(who != leader and e > epoch for who, e in now.values())

        wait_for(f"another replica to take every duty from {leader}", taken, timeout=15)  # lease + renewal
        self.takeovers.append(time.monotonic() - t0)
        self.replicas[leader] = self._start(leader, killed.port)

    def post(self, bodies: list[list[dict[str, object]]], halfway: Callable[[], None]) -> None:
        """POST each body through the balancer (a refused or broken request is sent again: its ids make
        it count once); ``halfway`` is called a third of the way."""
        errors: list[str] = []
        done = threading.Event()

        def post_all() -> None:
            with httpx.Client(base_url=self.url, timeout=10) as c:
                for n, body in enumerate(bodies):
                    if n == len(bodies) // 3:
                        done.set()
                    for _ in range(200):
                        try:
                            if c.post("/api/v1/events", json=body).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        time.sleep(0.1)
                    else:
                        errors.append(f"body {n} never accepted")
            done.set()

        poster = threading.Thread(target=post_all)
        poster.start()
        done.wait(120)
        halfway()
        poster.join(300)
        assert not errors

    def stop(self) -> None:
        self.lb.terminate()
        self.lb.wait(10)
        for s in self.replicas.values():
            if s.proc.poll() is None:
                assert s.stop() == 0, s.output()


def _pages(receiver: Recorder, status: str) -> dict[str, set[str]]:
    """Workflow -> the idempotency keys of the RunFailed notifications of ``status`` it was in."""
    keys: dict[str, set[str]] = defaultdict(set)
    for b in list(receiver.bodies):
        if b["status"] == status:
            for a in b["alerts"]:
                if a["labels"].get("alertname") == "RunFailed":
                    keys[a["labels"]["workflow"]].add(b["idempotencyKey"])
    return keys


def _settled(dsn: str) -> bool:
    """Nothing left to send and every alert told as it stands: no page can come after this."""
    with psycopg.connect(dsn) as conn:
        pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE state <> 'sent'").fetchone()
        untold = conn.execute(
            "SELECT COUNT(*) FROM alerts WHERE (status = 'firing' AND told = '[]') OR (status = 'resolved' AND told <> '[]')"
        ).fetchone()
    return pending == (0,) and untold == (0,)


def _fire_and_resolve(dsn: str, tmp_path: Path, receiver: Recorder, workflows: int, lease: float) -> str:
    """``workflows`` failed runs posted through the balancer while the leader
    is killed and started again, then a completed run each (the failure
    resolves) while the next leader is: every alert told fired once and
    resolved once, under one key each; nothing posted lost. Its figures."""
    team = Team(dsn, tmp_path, config(tmp_path, receiver.server_address[1]), lease)
    try:
        assert set(team.leaders().values()) == {("a", 1)}
        names = [f"wf{i}" for i in range(workflows)]
        team.post([failed_run(f"{w}-bad", w) for w in names], team.kill_the_leader)
        wait_for("a firing page for every workflow", lambda: len(_pages(receiver, "firing")) == workflows, 120)
        wait_for("the firing pages settled", lambda: _settled(dsn), 60)
        team.post(
            [[event("started", w, f"{w}-ok"), event("completed", w, f"{w}-ok")] for w in names],
            team.kill_the_leader,
        )
        wait_for("a resolved page for every workflow", lambda: len(_pages(receiver, "resolved")) == workflows, 120)
        wait_for("the resolved pages settled", lambda: _settled(dsn), 60)

        with psycopg.connect(dsn) as conn:  # nothing acknowledged lost
            rows = conn.execute("SELECT state, COUNT(*) FROM runs GROUP BY state ORDER BY state").fetchall()
            outbox = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        assert rows == [("completed", workflows), ("failed", workflows)]
        assert outbox == (2 * workflows,)  # exactly once in the log: a row a page
        for status in ("firing", "resolved"):
            pages = _pages(receiver, status)
            assert len(pages) == workflows  # none missing
            twice = {w: k for w, k in pages.items() if len(k) > 1}
            assert not twice, f"{status} paged twice under different keys: {twice}"
        resent = len(receiver.bodies) - 2 * workflows
        return (
            f"{2 * workflows} notifications, 0 duplicate, 0 missing, {resent} resent under the same key; "
            f"takeovers after kill -9: {', '.join(f'{t:.1f}s' for t in team.takeovers)}"
        )
    finally:
        team.stop()


# 1,000 notifications and two takeovers: about 30 s on a quiet machine, over the suite's 120 s per test on a loaded one
@pytest.mark.timeout(900)
def test_three_replicas_behind_haproxy_page_each_firing_and_resolution_once_while_leaders_are_killed(
    pg_url: str, tmp_path: Path, receiver: Recorder
) -> None:
    print(_fire_and_resolve(pg_url, tmp_path, receiver, workflows=500, lease=2.0))


@pytest.mark.timeout(900)
def test_the_same_through_pgbouncer_in_transaction_mode(pgbouncer: str, tmp_path: Path, receiver: Recorder) -> None:
    # the default lease (10 s): a killed leader's duties are taken within 15 s
    print(_fire_and_resolve(pgbouncer, tmp_path, receiver, workflows=60, lease=LEASE))
