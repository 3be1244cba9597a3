"""The SDK's background writer: the caller pays one queue put per event.

Events are queued as plain tuples; a daemon thread drains the queue in
batches, gives each event its id (time-sortable, made from the time the event
happened, so ids are still client-made and fixed before any write or retry)
and writes the batch to the store in one transaction. A failed write is
retried with backoff and the batch is kept; :meth:`BatchWriter.flush` waits
until everything queued before it is stored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from flowsight.errors import FlowsightError
from flowsight.model.events import Event, EventKind
from flowsight.model.ids import new_ids
from flowsight.store.sql import SqlStore

log = logging.getLogger("flowsight.sdk")

# (ts_ns, kind, workflow, run_id, step, attrs)
Raw = tuple[int, EventKind, str, str, "str | None", "dict[str, Any] | None"]


_EMPTY: dict[str, Any] = {}  # shared; events are never mutated


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class BatchWriter:
    """Drains queued events into a store from one background thread.

    ``store_factory`` is called in the writer thread on first use, so opening
    the database never costs the instrumented code anything.
    """

    def __init__(
        self,
        store_factory: Callable[[], SqlStore],
        *,
        batch_size: int = 5000,
        max_backoff: float = 5.0,
        retention: float | None = None,
        prune_every: float = 3600.0,
    ) -> None:
        self._factory = store_factory
        self._store: SqlStore | None = None
        self._queue: queue.SimpleQueue[Raw | _Flush | None] = queue.SimpleQueue()
        self.put = self._queue.put  # the hot path: one bound-method call
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.written = 0
        self.failed_writes = 0
        # retention: events older than this many seconds are pruned, at the
        # first write and then every prune_every seconds, in this thread
        self._retention = retention
        self._prune_every = prune_every
        self._next_prune = 0.0

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="flowsight-writer", daemon=True)
                self._thread.start()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every event queued before this call is stored."""
        if self._thread is None:
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Flush, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self) -> SqlStore:
        if self._store is None:
            self._store = self._factory()
        return self._store

    def _loop(self) -> None:
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        while True:
            item = get()
            batch: list[Raw] = []
            markers: list[_Flush] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
                self._maybe_prune()
            for m in markers:
                m.done.set()
            if stop:
                return

    def _maybe_prune(self) -> None:
        if self._retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self._prune_every
        try:
            n = self.store.prune(time.time() - self._retention)
            if n:
                log.info("flowsight: pruned %d events older than %.0fs", n, self._retention)
        except FlowsightError as exc:
            log.warning("flowsight: pruning old events failed: %s", exc)

    def _write(self, batch: list[Raw]) -> None:
        ids = new_ids([raw[0] for raw in batch])
        events = [
            Event(id=eid, ts=ts / 1e9, kind=kind, workflow=wf, run_id=run, step=step, attrs=attrs or _EMPTY)
            for eid, (ts, kind, wf, run, step, attrs) in zip(ids, batch)
        ]
        delay = 0.05
        while True:
            try:
                self.store.write_events(events)
                self.written += len(events)
                return
            except FlowsightError as exc:
                # Same ids on every retry: a write that did commit is not doubled.
                self.failed_writes += 1
                log.warning("flowsight: writing %d events failed (%s); retrying in %.2fs", len(events), exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
