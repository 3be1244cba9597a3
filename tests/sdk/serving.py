"""A real ``flowsight serve`` for the SDK's HTTP tests: a subprocess on a port
the test chooses (so it can be killed and started again on the same one),
over a SQLite file, with helpers to read that file straight."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_healthy

FLOWSIGHT = [sys.executable, "-m", "flowsight.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``flowsight --db DB serve --port PORT``; :meth:`start` waits for ``/healthz``."""

    def __init__(self, db: Path, port: int | None = None, *, log_dir: Path, flags: tuple[str, ...] = ()) -> None:
        self.db = db
        self.port = port or free_port()
        self.log = log_dir / f"serve-{self.port}.log"
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*FLOWSIGHT, "--db", str(self.db), "serve", "--port", str(self.port), *self.flags],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait_healthy(self.proc, self.url, timeout):
            return self
        if self.proc.poll() is not None:
            pytest.fail(f"server exited with {self.proc.returncode}:\n{self.output()}")
        self.kill()
        pytest.fail(f"server not up within {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def token(self, scope: str, name: str) -> str:
        out = subprocess.run(
            [*FLOWSIGHT, "--db", str(self.db), "token", "create", "--scope", scope, "--name", name],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows straight from the server's database file."""
        conn = sqlite3.connect(self.db)
        try:
            return list(conn.execute(sql, params).fetchall())
        finally:
            conn.close()


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition`` (for state a background thread reaches; never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {timeout}s")
        time.sleep(0.02)
