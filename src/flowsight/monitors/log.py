"""The log monitor: the specification's ``LogMonitor{log_collector,
log_analyzer, alert_rules}``.

Two jobs, one class:

* :meth:`LogMonitor.monitor_logs` consumes the collector: every source
  (:class:`Feed`: a file tail, a process's output, stdin) is read, each line
  is parsed into a :class:`~flowsight.logs.entries.LogEntry`, given an id and
  handed in batches to a sink (the store, or a server). A file's offsets are
  saved only after the sink has taken the lines read up to them, so a
  watcher killed at any moment reads again, after its restart, at most what
  it had not yet delivered; and those lines get the ids they had (a hash of
  the file's identity, offset and text), so the store counts them once.
* :meth:`LogMonitor.analyze_log` (and :meth:`analyze_logs` for a batch) gives
  an entry its template (:class:`~flowsight.logs.analyzer.LogAnalyzer`),
  checks every rule and sends the alerts; :meth:`analyze_stored` does that
  for the entries in a store that have no template yet, whoever wrote them
  (the server runs it every second: lines sent to ``POST /api/v1/logs``,
  written by the SDK's handler or by ``flowsight logs watch`` straight into
  the database). :meth:`tick` lets time-based rules (absence) fire.

Where the rules run: in one place, the server (as Loki's ruler evaluates
what promtail ships). A watcher only collects.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, Protocol

from flowsight.collect.tail import FileTail, RawLine
from flowsight.model.alerts import Alert
from flowsight.model.runs.ids import new_id
from flowsight.logs.analyzer import Analysis, LogAnalyzer
from flowsight.logs.parse import parse_line
from flowsight.logs.records import LogRecord
from flowsight.logs.alert_rules import LogAlertRule
from flowsight.logs.ruleset import LogRuleSet
from flowsight.logs.entries import LogEntry
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.logs")

#: the key under which the analyzer's state is kept in the store
ANALYZER_STATE = "log_analyzer"

Sink = Callable[[list[LogRecord]], Awaitable[None]]


class _LineStream(Protocol):
    def __aiter__(self) -> AsyncIterator[RawLine]: ...


@dataclass(frozen=True)
class Feed:
    """One source of the collector and what its lines belong to when they do
    not say: ``workflow``, ``run_id``, ``step`` (a line that names its own
    run keeps it)."""

    source: FileTail | _LineStream
    workflow: str | None = None
    run_id: str | None = None
    step: str | None = None


def line_id(raw: RawLine, ts_ns: int) -> str:
    """The id of a collected line. For a line of a file: ``F``, a hash of the
    file's identity, the line's offset (12 hex digits) and a hash of its text
    — read again after a restart, it is the same id, so the store keeps it
    once; and the ids of one file grow with the offset, so the store's id
    index is appended to, not written all over (twice the rows/s). For other
    streams: a new time-sortable id."""
    if raw.file:
        where = hashlib.blake2b(raw.file.encode(), digest_size=4).hexdigest()
        what = hashlib.blake2b(raw.text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
        return f"F{where}{raw.offset:012x}{what}"
    return new_id(ts_ns)


class LogMonitor:
    """``log_collector``: the feeds :meth:`monitor_logs` reads (sources, or
    :class:`Feed` s for sources whose lines belong to a workflow or run).
    ``log_analyzer``: templates and counts (None: entries are not analyzed
    here). ``alert_rules``: the log alert rules (or a ready
    :class:`LogRuleSet`). ``send_alert``: where alerts go (the alert manager's
    ``send_alert``); they are also returned. ``clock``: wall seconds."""

    def __init__(
        self,
        log_collector: Sequence[Feed | FileTail | _LineStream] = (),
        log_analyzer: LogAnalyzer | None = None,
        alert_rules: Sequence[LogAlertRule] | LogRuleSet = (),
        *,
        send_alert: Callable[[Alert], None] | None = None,
        clock: Callable[[], float] = time.time,
        external_url: str = "",
    ) -> None:
        self.log_collector = [f if isinstance(f, Feed) else Feed(f) for f in log_collector]
        self.log_analyzer = log_analyzer
        self.clock = clock
        self.alert_rules = (
            alert_rules
            if isinstance(alert_rules, LogRuleSet)
            else LogRuleSet(list(alert_rules), now=clock(), external_url=external_url)
        )
        self._send = send_alert
        self.collected = 0  # lines handed to the sink

    # ---- analysis -------------------------------------------------------------
    def analyze_log(self, entry: LogEntry, now: float | None = None) -> list[Alert]:
        """Template ``entry``, check every rule against it, send and return the alerts."""
        return self.analyze_logs([entry], now)[1]

    def analyze_logs(
        self, entries: Sequence[LogEntry], now: float | None = None
    ) -> tuple[list[Analysis | None], list[Alert]]:
        """:meth:`analyze_log` for a batch that came together (the rules' text
        matching runs over the whole batch at once): the analyses (None
        without an analyzer) and the alerts, which are sent."""
        now = self.clock() if now is None else now
        analyzer = self.log_analyzer
        analyses: list[Analysis | None] = (
            [analyzer.analyze(e, now) for e in entries] if analyzer is not None else [None] * len(entries)
        )
        alerts = self.alert_rules.evaluate_many(entries, analyses, now) if self.alert_rules.rules else []
        self._deliver(alerts)
        return analyses, alerts

    def tick(self, now: float | None = None) -> list[Alert]:
        """Alerts due with no entry (an expected line that did not come), sent and returned."""
        alerts = self.alert_rules.tick(self.clock() if now is None else now)
        self._deliver(alerts)
        return alerts

    def analyze_stored(self, store: Store, *, limit: int = 20_000, now: float | None = None) -> int:
        """Analyze the entries in ``store`` that have no template yet (oldest
        first, up to ``limit``), write their templates, send the alerts.
        Returns how many were analyzed. Needs an analyzer."""
        if self.log_analyzer is None:
            raise ValueError("analyze_stored needs a log_analyzer")
        rows = store.logs.unanalyzed_logs(limit)
        if not rows:
            return 0
        analyses, _ = self.analyze_logs([r.entry for r in rows], now)
        store.logs.set_log_templates([(r.seq, a.template_id) for r, a in zip(rows, analyses) if a is not None])
        return len(rows)

    def _deliver(self, alerts: list[Alert]) -> None:
        if self._send is not None:
            for a in alerts:
                self._send(a)

    # ---- collection -------------------------------------------------------------
    async def monitor_logs(
        self,
        sink: Sink,
        *,
        stop: asyncio.Event | None = None,
        poll: float = 0.25,
        batch: int = 5000,
        drain: bool = False,
    ) -> None:
        """Read every feed until ``stop`` is set (or, when every feed is a
        stream, until they have all ended), parse the lines, analyze them when
        there is an analyzer, and hand them to ``sink`` in batches of up to
        ``batch``. File offsets are saved after the sink has taken the lines.
        A sink that raises stops the monitor (nothing is acknowledged that was
        not delivered). ``drain``: once ``stop`` is set, read the files to
        their end and hand out what is held back (a last line without its
        newline, an open traceback) before returning; without it, a stopped
        monitor leaves those for the next one, which reads them whole."""
        stop = stop if stop is not None else asyncio.Event()
        files = [f for f in self.log_collector if isinstance(f.source, FileTail)]
        streams = [f for f in self.log_collector if not isinstance(f.source, FileTail)]
        pending: list[tuple[Feed, RawLine]] = []
        woken = asyncio.Event()
        readers = [asyncio.create_task(self._read_stream(f, pending, woken, batch)) for f in streams]
        try:
            while True:
                got = False
                draining = drain and stop.is_set()
                for feed in files:
                    tail = feed.source
                    assert isinstance(tail, FileTail)
                    while True:
                        lines = await asyncio.to_thread(tail.read_available)
                        if draining and not lines:  # at the end: what is held back too (a last partial line)
                            lines = tail.flush()
                        if lines:
                            got = True
                            for i in range(0, len(lines), batch):
                                await self._hand_over([(feed, raw) for raw in lines[i : i + batch]], sink)
                        if not (draining and lines):
                            break
                if pending:
                    got = True
                    taken = pending[:]
                    del pending[:]
                    await self._hand_over(taken, sink)
                if files and got:
                    await asyncio.to_thread(_save_all, files)
                streams_done = all(t.done() for t in readers)
                if stop.is_set() or (not files and streams_done and not pending):
                    break
                if not got:
                    woken.clear()
                    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(woken.wait())]
                    await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
                    for w in waiters:
                        w.cancel()
                for t in readers:  # a stream that broke says why, once
                    if t.done() and not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
        finally:  # offsets are saved only after a hand-over that worked (above), never here
            for t in readers:
                t.cancel()
            for t in readers:
                with suppress(asyncio.CancelledError, Exception):
                    await t

    async def _read_stream(
        self, feed: Feed, pending: list[tuple[Feed, RawLine]], woken: asyncio.Event, batch: int
    ) -> None:
        stream: Any = feed.source
        async for raw in stream:
            pending.append((feed, raw))
            if len(pending) >= batch:
                woken.set()
                await asyncio.sleep(0)  # let the consumer take them
            elif len(pending) == 1:
                woken.set()

    async def _hand_over(self, lines: list[tuple[Feed, RawLine]], sink: Sink) -> None:
        now = self.clock()
        records = [_record(feed, raw, now) for feed, raw in lines]
        if self.log_analyzer is not None:
            analyses, _ = self.analyze_logs([r.entry for r in records], now)
            records = [replace(r, template_id=a.template_id) if a is not None else r for r, a in zip(records, analyses)]
        await sink(records)
        self.collected += len(records)


def _record(feed: Feed, raw: RawLine, now: float) -> LogRecord:
    entry = parse_line(raw.text, source=raw.path, now=now)
    if feed.workflow or feed.run_id or feed.step:
        entry = replace(
            entry,
            workflow=entry.workflow or feed.workflow,
            run_id=entry.run_id or feed.run_id,
            step=entry.step or feed.step,
        )
    ts = entry.timestamp
    return LogRecord(line_id(raw, int(ts * 1e9) if 0 <= ts < 2e11 else time.time_ns()), entry)


def _save_all(files: list[Feed]) -> None:
    for f in files:
        tail = f.source
        assert isinstance(tail, FileTail)
        try:
            tail.save_state()
        except OSError as exc:
            log.warning("log offsets of %s cannot be saved (%s); a restart reads those lines again", tail, exc)
