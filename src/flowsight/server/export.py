"""``[export.otlp]`` in a server: each run that ends is handed to the OTLP
exporter through the outbox, then sent by a dispatcher of its own.

Every ``interval`` seconds the feeder reads the transitions committed since
the last it read (by any process: the SDK writing to the store, another
replica), and hands the runs that ended to the exporter
(:meth:`flowsight.store.exports.Exports.hand_over`: one outbox item per
round, due ``delay`` seconds later, so the run's last log lines are in; a
run handed over once is never handed again). Where it had read up to is
kept in the store, so a restart resumes there. On PostgreSQL a transition
may commit after a later one was read: the feeder reads again, each round,
from the last id it read :data:`SETTLE` seconds ago (a run found twice is
handed over once).

The items are sent by their own :class:`~flowsight.alerting.delivery.Dispatcher`
(retried with backoff while the endpoint is down, never given up), so a
slow collector holds back no alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from flowsight.alerting.delivery import DeliveryWorker, Dispatcher
from flowsight.config.otlp import OtlpExport
from flowsight.integrations.otlp_export import EXPORTER, OtlpExporter
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.server")

#: where the feeder had read up to (store.kept)
CURSOR = "export.otlp.cursor"
#: how long a transition read may still be joined by one with a lower id (PostgreSQL)
SETTLE = 10.0


#: ended runs in one outbox item at most (sent a run at a time: its spans, then its log records)
RUNS_PER_ITEM = 50
#: how long one item may take in all (each of its requests has the configured timeout)
ITEM_TIMEOUT = 3600.0


class ExportService:
    """The feeder and the exporter's dispatcher (``start()`` on the running loop, ``await stop()``)."""

    def __init__(
        self,
        store: Store,
        config: OtlpExport,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        on_broken: Callable[[str, str], None] | None = None,
        on_recovered: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.interval = interval
        self.clock = clock
        self.exporter = OtlpExporter(
            store, config.endpoint, headers=config.headers, timeout=config.timeout, logs=config.logs
        )
        # an item is many requests, each bounded by the configured timeout; the item's bound only
        # catches what no request's timeout does
        self.dispatcher = Dispatcher(
            store,
            {},
            exporters={EXPORTER: self.exporter},
            clock=clock,
            on_broken=on_broken,
            on_recovered=on_recovered,
            send_timeout=ITEM_TIMEOUT,
        )
        self.worker = DeliveryWorker(self.dispatcher, interval)
        self.handed = 0  # runs handed over since start
        self._read = -1  # the last transition id read (-1: not yet known)
        self._safe = 0  # the id up to which every transition was read (kept in the store)
        self._reads: deque[tuple[float, int]] = deque()  # (when, last id read) of recent rounds
        self._recent: dict[str, float] = {}  # runs handed over lately (read again on PostgreSQL)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="flowsight-export")
        self.worker.start()

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None
        await self.worker.stop()
        self.dispatcher.close()

    def _begin(self) -> None:
        kept = self.store.kept.load(CURSOR)
        # first turned on: the runs that end from now on
        self._safe = self._read = int(kept) if isinstance(kept, int) else self.store.exports.last_transition()
        if kept is None:
            self.store.kept.save(CURSOR, self._safe)

    def feed(self) -> int:
        """One round (blocking; the loop runs it in a thread): hand the runs
        that ended since the last round over; how many were.

        On SQLite transitions commit in the order of their ids: each round
        reads on from the last id read. On PostgreSQL one may commit after a
        higher one was read: each round reads again from the last id every
        transition up to which has been read for :data:`SETTLE` seconds (a
        run read twice is handed over once)."""
        if self._read < 0:
            self._begin()
        now = self.clock()
        in_order = self.store.commits_in_seq_order
        at = self._read if in_order else self._safe
        ended: list[str] = []
        while True:
            runs, last = self.store.exports.ended_after(at)
            ended += runs
            if last == at:
                break
            at = last
        if not in_order:
            self._recent = {r: t for r, t in self._recent.items() if t > now - 3 * SETTLE}
        fresh = [r for r in dict.fromkeys(ended) if r not in self._recent]
        handed = 0
        for i in range(0, len(fresh), RUNS_PER_ITEM):
            chunk = fresh[i : i + RUNS_PER_ITEM]
            handed += len(self.store.exports.hand_over(EXPORTER, chunk, now, now + self.config.delay))
            if not in_order:
                self._recent.update(dict.fromkeys(chunk, now))
        # only now, every run read handed over: a failed round is read again whole
        self._read = max(self._read, at)
        if in_order:
            safe = self._read
        else:
            self._reads.append((now, self._read))
            safe = self._safe
            while self._reads and self._reads[0][0] <= now - SETTLE:
                safe = self._reads.popleft()[1]
        if safe != self._safe:
            self.store.kept.save(CURSOR, safe)
            self._safe = safe
        self.handed += handed
        return handed

    async def _run(self) -> None:
        last_said = ""
        while not self._stop.is_set():
            try:
                if await asyncio.to_thread(self.feed):
                    self.worker.wake()
                last_said = ""
            except Exception as exc:  # the store away: said once, tried again next round
                if str(exc) != last_said:
                    log.warning("OTLP export: ended runs not read (%s); trying again", exc)
                    last_said = str(exc)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                pass
