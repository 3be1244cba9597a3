"""Small helpers shared by test modules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn, TypeVar

import pytest

R = TypeVar("R")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"waited {timeout}s for {what}")


def run(make: Callable[[], Awaitable[R]]) -> R:
    """Run one coroutine to completion (pytest-asyncio is not used here)."""

    async def main() -> R:
        return await make()

    return asyncio.run(main())


def wait_healthy(proc: "subprocess.Popen[bytes]", url: str, timeout: float) -> bool:
    """Poll ``url``/healthz until it answers 200 (True), the process exits or
    ``timeout`` passes (False)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


# ---- a real webhook receiver -------------------------------------------------
class Recorder(ThreadingHTTPServer):
    """An HTTP receiver on 127.0.0.1 that keeps every POSTed JSON body and its
    headers, and answers with ``status``."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.bodies: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.status = 200


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        self.server.headers_seen.append(dict(self.headers))
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(b"nope" if self.server.status >= 300 else b"ok")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def recording(port: int = 0) -> Iterator[Recorder]:
    """A :class:`Recorder` serving on 127.0.0.1 (``port`` 0: a free one) until the block ends."""
    with serving(Recorder(port)) as srv:
        yield srv


S = TypeVar("S", bound=ThreadingHTTPServer)


@contextlib.contextmanager
def serving(srv: S) -> Iterator[S]:
    """``srv`` serving in a thread until the block ends."""
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def unavailable(why: str) -> NoReturn:
    """A service or engine a test needs is missing: a skip with ``why``, or a failure under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)
