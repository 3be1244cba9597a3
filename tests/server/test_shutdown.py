"""Stopping ``flowsight serve`` with a signal, as a process manager does:
it stops accepting, finishes what is in flight, commits, and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import event, sql_rows, start_server

POSTERS, BATCH = 3, 20
#: what uvicorn logs when the responses in flight outlast its graceful shutdown (30 s) and it cuts them
GRACE_RAN_OUT = "timeout graceful shutdown exceeded"


def test_sigterm_while_clients_post_exits_0_and_keeps_every_acknowledged_event(store_url: str, tmp_path: Path) -> None:
    server = start_server(store_url, log_dir=tmp_path)
    acked: list[str] = []
    sent: list[str] = []
    refused: list[str] = []  # how each poster's requests ended
    lock = threading.Lock()

    def poster(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(100_000):
                ids = [f"p{k}-{i}-{j}" for j in range(BATCH)]
                with lock:
                    sent.extend(ids)
                try:
                    r = c.post("/api/v1/events", json=[event("heartbeat", "etl", f"run-{k}", id=x) for x in ids])
                except httpx.TransportError as exc:  # the server has stopped accepting
                    with lock:
                        refused.append(type(exc).__name__)
                    return
                if r.status_code != 200:
                    with lock:
                        refused.append(f"HTTP {r.status_code}: {r.text}")
                    return
                assert r.json()["accepted"] == BATCH
                with lock:
                    acked.extend(ids)

    threads = [threading.Thread(target=poster, args=(k,)) for k in range(POSTERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 50 * BATCH:
        assert time.monotonic() < deadline, "the posters got too few answers"
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGTERM)
    rc = server.stop(timeout=30)
    for t in threads:
        t.join(30)
    assert rc == 0, server.output()
    assert GRACE_RAN_OUT not in server.output()  # it stopped because it was done, not at uvicorn's 30 s
    assert len(refused) == POSTERS and not any(r.startswith("HTTP") for r in refused), refused
    stored = {r[0] for r in sql_rows(store_url, "SELECT id FROM events")}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events are not in the store, e.g. {sorted(missing)[:5]}"
    assert stored <= set(sent)
    assert "Finished server process" in server.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_server_at_once_with_a_stream_client_connected(
    store_url: str, tmp_path: Path, sig: int
) -> None:
    """The stream never ends by itself, and uvicorn waits for every response
    to end: without the server ending its streams a stop took 30 s."""
    server = start_server(store_url, log_dir=tmp_path)
    with httpx.Client(base_url=server.url, timeout=10) as c, c.stream("GET", "/api/v1/stream") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        server.proc.send_signal(sig)
        rest = list(lines)  # the server ends the response cleanly
        rc = server.stop(timeout=20)
    assert rc == 0, server.output()
    assert GRACE_RAN_OUT not in server.output()  # the stream did not hold the stop for uvicorn's 30 s
    assert all(line == "" or line.startswith(":") for line in rest), rest


def test_serve_says_what_it_serves_and_a_busy_port_is_one_line(tmp_path: Path) -> None:
    """At start: the store, the config, the dashboard's address, whether tokens
    are needed; a port in use is refused in one line, before anything starts."""
    from tests.server.conftest import start_server

    db = str(tmp_path / "f.db")
    server = start_server(db, log_dir=tmp_path)
    try:
        wait = time.monotonic() + 20
        while "tokens:" not in server.output() and time.monotonic() < wait:
            time.sleep(0.05)
        out = server.output()
        assert f"store:     sqlite {db}" in out and "config:    none" in out
        assert f"dashboard: {server.url}/" in out and "tokens:    not required until the first is made" in out
        busy = subprocess.run(
            [sys.executable, "-m", "flowsight", "--db", db, "serve", "--port", str(server.url.rsplit(":", 1)[1])],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert busy.returncode == 2 and "Application startup" not in busy.stderr
        assert busy.stderr.strip().splitlines() == [
            f"flowsight: port {server.url.rsplit(':', 1)[1]} on 127.0.0.1 is in use (another flowsight serve?); "
            "stop it or choose another with --port"
        ]
    finally:
        server.stop()
    bad = subprocess.run(
        [sys.executable, "-m", "flowsight", "--db", db, "serve", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "99999 is not a port: use 1 to 65535 (0: any free port)" in bad.stderr
