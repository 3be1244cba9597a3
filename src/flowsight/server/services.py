"""The server's background work as services the app's lifespan walks:
each ``start()``-ed in order when the app starts and ``stop()``-ed in the
reverse order when it stops (:func:`flowsight.server.app.create_app` lists them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol


class Service(Protocol):
    async def start(self) -> None:
        """Begin, on the running loop (long work goes to a task or a thread)."""

    async def stop(self) -> None:
        """Finish what is in hand and end; nothing is left running."""


class Loop:
    """A coroutine that runs until its stop event is set, as a service."""

    def __init__(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        self.name = name
        self._run = run
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._coroutine(), name=self.name)

    async def _coroutine(self) -> None:
        await self._run(self._stop)

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None


async def start_all(services: Sequence[Service]) -> list[Service]:
    """Start ``services`` in order; those started (all of them, unless one
    raised, which then stops the ones before it)."""
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
    except BaseException:
        await stop_all(started)
        raise
    return started


async def stop_all(started: Sequence[Service]) -> None:
    """Stop ``started`` in the reverse order, each one whatever the others did."""
    errors: list[BaseException] = []
    for service in reversed(started):
        try:
            await service.stop()
        except Exception as exc:  # noqa: BLE001 - the rest must still stop; raised below
            errors.append(exc)
    if errors:
        raise errors[0]
