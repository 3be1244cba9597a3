"""Small helpers shared by test modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import subprocess
from typing import TypeVar

R = TypeVar("R")


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
