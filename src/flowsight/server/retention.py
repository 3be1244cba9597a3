"""Log retention in a server: entries older than ``retention`` seconds are
purged at start and every ``interval`` after (hourly by default).

The purge runs in a worker thread, in chunks of a few thousand rows per
transaction (:meth:`flowsight.store.logs.Logs.purge_logs`), so neither
the event loop nor the writers wait on it for long; ``stop()`` ends it
between two chunks. Several servers on one PostgreSQL may each purge: a
delete of rows already deleted by another deletes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from flowsight.store.interface import Store
from flowsight.store.spans import PARKED_FOR

log = logging.getLogger("flowsight.logs")

DEFAULT_RETENTION = 14 * 86400.0
DEFAULT_INTERVAL = 3600.0


class LogRetention:
    """The purge loop (``start()`` on the running loop, ``await stop()``)."""

    def __init__(
        self,
        store: Store,
        retention: float,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retention = retention
        self.interval = interval
        self.clock = clock
        self.purged = 0  # entries deleted since start
        self.rounds = 0
        self.failed_rounds = 0
        self._stop = threading.Event()  # also seen by the purge between its chunks
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def purge(self) -> int:
        """One purge now (blocking; the loop runs it in a thread). Returns the entries deleted."""
        cutoff = self.clock() - self.retention
        n = self.store.logs.purge_logs(cutoff, stop=self._stop)
        # spans' runs kept as long as the log records that may name them; a record a day without its span
        self.store.spans.purge(cutoff, parked_before=self.clock() - PARKED_FOR)
        self.store.exports.purge(cutoff)
        self.purged += n
        self.rounds += 1
        if n:
            log.info("log retention: purged %d entries older than %gs", n, self.retention)
        return n

    async def start(self) -> None:
        self._stop.clear()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="flowsight-log-retention")

    async def stop(self) -> None:
        """End the purge in progress after its current chunk, then stop."""
        if self._task is None:
            return
        self._stop.set()
        self._wake.set()
        await self._task
        self._task = None

    async def _run(self) -> None:
        last_said = ""
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.purge)
                last_said = ""
            except Exception as exc:  # a store that is down: say so once, try again next round
                self.failed_rounds += 1
                if str(exc) != last_said:
                    log.warning("log retention: purge failed (next try in %gs): %s", self.interval, exc)
                    last_said = str(exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
