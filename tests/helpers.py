"""Small helpers shared by test modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

R = TypeVar("R")


def run(make: Callable[[], Awaitable[R]]) -> R:
    """Run one coroutine to completion (pytest-asyncio is not used here)."""

    async def main() -> R:
        return await make()

    return asyncio.run(main())
