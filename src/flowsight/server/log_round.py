"""The log monitor at work in a server, one round at a time: templates and
log rules for the stored entries without a template yet (whoever wrote
them), then the rules' timers; the analyzer's templates are kept in the
store now and then, and read back at a restart."""

from __future__ import annotations

import logging
import threading
from typing import Any

from flowsight.logs.analyzer import LogAnalyzer, TemplateCount
from flowsight.monitors.log import ANALYZER_STATE, LogMonitor
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.alerts")

LOG_PAGE = 20_000  # log entries analyzed per store read
LOG_ROUND = 5  # reads per round at most, so a backlog does not hold up the alerts
SAVE_ANALYZER = 30.0  # seconds between saves of the log analyzer's templates


class LogRound:
    def __init__(self, store: Store, monitor: LogMonitor) -> None:
        self._store = store
        self.monitor = monitor
        self._lock = threading.Lock()  # the analyzer works in a thread; the API reads its counts
        self._saved = 0.0
        self._dirty = False

    def restore(self, saved: Any) -> None:
        """Take back the templates :meth:`save` kept (``store.kept``); a state
        from an incompatible version is dropped: templates are learnt again."""
        try:
            self.monitor.log_analyzer = LogAnalyzer.from_state(saved)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("the saved log templates cannot be read (%s); templates are learnt again", exc)

    def run(self, now: float) -> None:
        with self._lock:
            for _ in range(LOG_ROUND):
                n = self.monitor.analyze_stored(self._store, limit=LOG_PAGE, now=now)
                self._dirty |= n > 0
                if n < LOG_PAGE:
                    break
            self.monitor.tick(now)
            if self._dirty and now - self._saved >= SAVE_ANALYZER:
                self._save(now)

    def top(
        self, n: int, *, since: float | None = None, until: float | None = None, workflow: str | None = None
    ) -> list[TemplateCount]:
        """The ``n`` templates with the most lines in [since, until), with their counts."""
        analyzer = self.monitor.log_analyzer
        if analyzer is None:
            return []
        with self._lock:
            return analyzer.top(n, since=since, until=until, workflow=workflow)

    def save_if_changed(self, now: float) -> None:
        with self._lock:
            if self._dirty:
                self._save(now)

    def _save(self, now: float) -> None:
        analyzer = self.monitor.log_analyzer
        if analyzer is not None:
            self._store.kept.save(ANALYZER_STATE, analyzer.state())
        self._saved, self._dirty = now, False
