"""The ``[[logs.sources]]`` of ``flowsight serve`` 's configuration, followed
by the server itself: each file (or glob) tailed into the store, where the
alerting service's log rules and templates take the lines as they take those
of ``POST /api/v1/logs``.

Offsets are kept per source beside a SQLite store (``DB.serve-offsets.sourceN.json``)
or under ``~/.cache/flowsight/`` for PostgreSQL, so a restart goes on where the
last one stopped and a line read twice keeps its id (the store keeps it once).
Run either ``flowsight serve`` or ``flowsight logs watch`` over the same
sources, not both: each would read them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from flowsight.collect.tail import FileTail
from flowsight.config.logs import LogSource
from flowsight.logs.records import LogRecord
from flowsight.monitors.log import Feed, LogMonitor
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.server")


def offsets_path(store: Store, index: int) -> Path:
    """Where the offsets of source ``index`` are kept for ``store``."""
    if store.file is not None:
        base = store.file
        return base.with_name(f"{base.name}.serve-offsets.source{index}.json")
    digest = hashlib.sha256(str(store.url).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "flowsight" / f"serve-offsets-{digest}.source{index}.json"


class SourceFollower:
    """``start()`` on the running loop, ``await stop()``; nothing to do without sources."""

    def __init__(self, store: Store, sources: tuple[LogSource, ...]) -> None:
        self.store = store
        self.sources = sources
        self.collected = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._monitor: LogMonitor | None = None

    def _feeds(self) -> list[Feed]:
        feeds = []
        for i, src in enumerate(self.sources):
            state = offsets_path(self.store, i)
            state.parent.mkdir(parents=True, exist_ok=True)
            tail = FileTail(
                [src.path],
                state_path=state,
                start="beginning" if src.start == "beginning" else "end",
                multiline=src.multiline,
                on_problem=lambda what: log.warning("logs.sources: %s", what),
            )
            feeds.append(Feed(tail, workflow=src.workflow))
        return feeds

    async def _save(self, records: list[LogRecord]) -> None:
        await asyncio.to_thread(self.store.logs.save_logs, records)

    async def start(self) -> None:
        if not self.sources:
            return
        self._monitor = LogMonitor(self._feeds())
        self._stop.clear()
        self._task = asyncio.create_task(self._run(self._monitor), name="flowsight-log-sources")
        log.info(
            "following %d log source%s of the configuration: %s",
            len(self.sources),
            "" if len(self.sources) == 1 else "s",
            ", ".join(s.path for s in self.sources),
        )

    async def _run(self, monitor: LogMonitor) -> None:
        while not self._stop.is_set():
            try:
                await monitor.monitor_logs(self._save, stop=self._stop)
            except Exception:  # a store hiccup: nothing was acknowledged, the offsets say where to go on
                log.exception("following the log sources failed; trying again in 5 s")
                try:
                    await asyncio.wait_for(self._stop.wait(), 5.0)
                except TimeoutError:
                    pass
            self.collected = monitor.collected

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
