"""The SDK's background writer: the caller pays one queue put per event.

Events are queued as plain tuples; a daemon thread drains the queue in
batches (by size, and with ``linger`` also by time), gives each event its id
(time-sortable, made from the time the event happened, so ids are client-made
and fixed before any write, spool or retry) and hands the batch to a
:class:`Sink`: the store (:class:`StoreSink`) or a server
(:class:`flowsight.sdk.http.HttpSink`, which spools to disk first).
:meth:`BatchWriter.flush` waits until everything queued before it has reached
the sink's destination.

The same pieces carry log entries (:mod:`flowsight.sdk.logs`): a second
writer, whose ``build`` makes :class:`~flowsight.logs.records.LogRecord` s,
with a sink of its own to the same destination, so a flood of log lines
never delays events nor pushes them out of a full spool.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, cast

from flowsight.errors import ConfigError, FlowsightError
from flowsight.model.runs.events import Event, EventKind
from flowsight.model.runs.ids import new_ids
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.sdk")

# (ts_ns, kind, workflow, run_id, step, attrs); or an Event made whole (Client.send)
RawTuple = tuple[int, EventKind, str, str, "str | None", "dict[str, Any] | None"]
Raw = RawTuple | Event

Q = TypeVar("Q")  # what the caller queues
T = TypeVar("T")  # what a sink takes

_EMPTY: dict[str, Any] = {}  # shared; events are never mutated

#: set on the SDK's own threads (writers, senders): what is logged there is
#: not shipped by :class:`flowsight.sdk.logs.LogHandler` (no feedback loop)
sdk_thread = threading.local()


def in_sdk_thread() -> bool:
    """True on a thread of the SDK's delivery machinery."""
    return getattr(sdk_thread, "active", False)


def build_events(batch: list[Raw]) -> list[Event]:
    """The events of queued tuples, each with its id (made from its time);
    an :class:`Event` queued whole (an engine integration's, whose id says
    which fact it is) is taken as it is."""
    if any(raw.__class__ is Event for raw in batch):
        built = iter(build_events([raw for raw in batch if not isinstance(raw, Event)]))
        return [raw if isinstance(raw, Event) else next(built) for raw in batch]
    tuples = cast(list[RawTuple], batch)
    ids = new_ids([raw[0] for raw in tuples])
    return [
        Event(id=eid, ts=ts / 1e9, kind=kind, workflow=wf, run_id=run, step=step, attrs=attrs or _EMPTY)
        for eid, (ts, kind, wf, run, step, attrs) in zip(ids, tuples)
    ]


def write_events(store: Store, events: list[Event]) -> object:
    return store.runs.write_events(events)


def prune_events(store: Store, before: float) -> int:
    return store.runs.prune(before)


class Sink(Protocol[T]):
    """Where the writer's batches go. ``write`` is the one that matters; the
    other three are its lifecycle (a sink may own a thread and a connection)."""

    def start(self) -> None:
        """Called from :meth:`BatchWriter.start` (e.g. start sending what a
        previous process left behind)."""

    def write(self, items: list[T]) -> None:
        """Take a batch, on the writer thread. Never raises: a sink keeps
        retrying, or keeps the batch (spool), or counts and reports a drop."""

    def wait(self, timeout: float | None) -> bool:
        """Block until everything written so far has reached the destination;
        False when ``timeout`` ran out first."""

    def close(self, timeout: float | None) -> None:
        """Release resources, waiting at most ``timeout`` for delivery."""

    def stopping(self, deadline: float) -> None:
        """The writer is stopping: stop retrying at ``deadline`` (monotonic)."""


class StoreSink(Generic[T]):
    """Writes batches to a store in one transaction each (``write``: e.g.
    :func:`write_events`); a failed write is retried with backoff (same ids:
    a write that did commit is not doubled). With ``prune``, also deletes
    what is older than ``retention`` seconds, at the first write and then
    every ``prune_every`` seconds. ``what`` names the items in messages.

    ``store_factory`` is called on the writer thread at the first write, so
    opening the database never costs the instrumented code anything.
    """

    def __init__(
        self,
        store_factory: Callable[[], Store],
        *,
        write: Callable[[Store, list[T]], object],
        prune: Callable[[Store, float], int] | None = None,
        what: str = "events",
        max_backoff: float = 5.0,
        retention: float | None = None,
        prune_every: float = 3600.0,
    ) -> None:
        self._factory = store_factory
        self._write_to = write
        self._prune = prune
        self.what = what
        self._store: Store | None = None
        self._max_backoff = max_backoff
        self._retention = retention
        self._prune_every = prune_every
        self._next_prune = 0.0
        self.written = 0
        self.failed_writes = 0
        #: items given up on: the store cannot be used (a bad URL), or was still
        #: unreachable when the process was exiting; each loss is logged as an error
        self.dropped = 0
        self._broken: str | None = None
        self._give_up_at: float | None = None

    def stopping(self, deadline: float) -> None:
        self._give_up_at = deadline

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._factory()
        return self._store

    def start(self) -> None:
        pass

    def write(self, items: list[T]) -> None:
        if self._broken is not None:
            self._lose(items, self._broken)
            return
        delay = 0.05
        warned = False
        while True:
            try:
                self._write_to(self.store, items)
                self.written += len(items)
                if warned:
                    log.warning("flowsight: the store is back; %d waiting %s stored", len(items), self.what)
                break
            except ConfigError as exc:  # retrying cannot fix a bad URL
                self._broken = f"the store cannot be used: {exc}"
                self._lose(items, self._broken)
                return
            except FlowsightError as exc:
                self.failed_writes += 1
                if self._give_up_at is not None and time.monotonic() + delay > self._give_up_at:
                    self._lose(items, f"the store was still failing at exit ({exc})")
                    return
                if not warned:  # one warning per outage, not one per retry
                    log.warning(
                        "flowsight: writing %d %s failed (%s); retrying with backoff "
                        "(up to %.0fs apart) until it works",
                        len(items),
                        self.what,
                        exc,
                        self._max_backoff,
                    )
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
        self._maybe_prune()

    def _lose(self, items: list[T], why: str) -> None:
        self.dropped += len(items)
        log.error(
            "flowsight: %d %s NOT stored, %s; %d lost in all (set --db / FLOWSIGHT_DATABASE_URL, "
            "or flowsight.configure(db=...))",
            len(items),
            self.what,
            why,
            self.dropped,
        )

    def wait(self, timeout: float | None) -> bool:
        return True  # write() returns once the batch is committed

    def close(self, timeout: float | None) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _maybe_prune(self) -> None:
        if self._prune is None or self._retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self._prune_every
        try:
            n = self._prune(self.store, time.time() - self._retention)
            if n:
                log.info("flowsight: pruned %d %s older than %.0fs", n, self.what, self._retention)
        except FlowsightError as exc:
            log.warning("flowsight: pruning old %s failed: %s", self.what, exc)


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class BatchWriter(Generic[Q, T]):
    """Drains queued items into a :class:`Sink` from one background thread;
    ``build`` turns a batch of what was queued into what the sink takes
    (:func:`build_events`: tuples into events with their ids).

    A batch is cut at ``batch_size`` items, or — with ``linger`` > 0 — once
    the first item of it has waited ``linger`` seconds (fewer, larger batches
    for a sink that pays per batch, like a network request). A flush or stop
    cuts it at once.
    """

    def __init__(
        self,
        sink: Sink[T],
        *,
        build: Callable[[list[Q]], list[T]],
        batch_size: int = 5000,
        linger: float = 0.0,
        name: str = "flowsight-writer",
    ) -> None:
        self.sink = sink
        self._build = build
        self._name = name
        self._queue: queue.SimpleQueue[Q | _Flush | None] = queue.SimpleQueue()
        self.put = self._queue.put  # the hot path: one bound-method call
        self._batch_size = batch_size
        self._linger = linger
        # set by flush and stop: a lingering batch is cut now (while lingering, the writer does not
        # wake at every put: a thread woken per event cost a busy program ~50 µs an event)
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        #: items handed to the sink (stored, or spooled for a server)
        self.written = 0
        self._lost = 0  # batches a faulty sink raised on

    @property
    def backlog(self) -> int:
        """Items put and not yet taken by the writer thread (about: for pacing)."""
        return self._queue.qsize()

    @property
    def dropped(self) -> int:
        """Events lost on purpose (a full spool), each one reported with a warning."""
        return int(getattr(self.sink, "dropped", 0)) + self._lost

    @property
    def store(self) -> Store:
        """The store this writer writes to (opened on first use).

        Raises:
            AttributeError: the writer sends to a server instead.
        """
        if not isinstance(self.sink, StoreSink):
            raise AttributeError(f"this writer's sink is a {type(self.sink).__name__}, not a store")
        return self.sink.store

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self.sink.start()
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def flush(self, timeout: float | None = 30.0, *, handed: bool = False) -> bool:
        """Wait until every event queued before this call has reached the
        sink's destination (the store; the server, for an HTTP sink), or with
        ``handed`` only the sink (an HTTP sink's disk spool); False when
        ``timeout`` ran out first."""
        if self._thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        marker = _Flush()
        self._queue.put(marker)
        self._hurry.set()
        if not marker.done.wait(timeout):
            return False
        return handed or self.sink.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float | None = 30.0) -> None:
        """Hand everything queued to the sink, end the thread, close the sink."""
        if self._thread is None:
            return
        # a sink still retrying gives up after a few seconds rather than hold the exit
        self.sink.stopping(time.monotonic() + min(5.0, timeout if timeout is not None else 5.0))
        self._queue.put(None)
        self._hurry.set()
        self._thread.join(timeout)
        self._thread = None
        self.sink.close(timeout)

    @property
    def started(self) -> bool:
        return self._thread is not None

    def _loop(self) -> None:
        sdk_thread.active = True
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        linger = self._linger
        size = self._batch_size
        while True:
            item = get()
            batch: list[Q] = []
            markers: list[_Flush] = []
            stop = False
            deadline = 0.0
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    batch.append(item)
                if len(batch) >= size:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    if not linger or stop or markers or not batch:
                        break
                    if not deadline:
                        deadline = time.monotonic() + linger
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._hurry.is_set():
                        break
                    # wait out the linger (or a flush) once, then take what came meanwhile
                    self._hurry.wait(remaining)
                    try:
                        item = get_nowait()
                    except queue.Empty:
                        break
            if markers or stop:
                self._hurry.clear()  # what the flush asked for is in this batch
            if batch:
                self._write(batch)
            for m in markers:
                m.done.set()
            if stop:
                return

    def _write(self, batch: list[Q]) -> None:
        try:
            items = self._build(batch)
            self.sink.write(items)
        except Exception:  # a sink must not raise; if one does, the writer thread must live on
            self._lost += len(batch)
            log.exception("flowsight: the SDK's sink failed on a batch of %d items; they are lost", len(batch))
            return
        self.written += len(items)
