"""The alert manager at work in a server.

The built-in rules and the API feed alerts in; every ``interval`` one step
runs: silences written by other processes (the CLI) are picked up, the rules
read the new events from the store (so runs written by the SDK straight into
the store are seen as well as those sent over HTTP) and look at running runs, the manager says which notifications are due, they are
written to the outbox (before anything is sent), the manager's state is saved,
and the outbox is delivered. Everything it must not forget lives in the
store, so a restarted server carries on: the notifications still in the
outbox are sent, and every receiver told "firing" is still owed "resolved".

Order matters for that promise: the outbox is written before the manager's
state, so a crash between the two can repeat a notification (at least once,
each with its idempotency key) but never lose one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from flowsight.alerting.delivery import Dispatcher
from flowsight.alerting.manager import AlertManager
from flowsight.alerting.notifiers import Notifier
from flowsight.config import Config, build_notifier
from flowsight.model.alerts import Alert, AlertStatus, Severity, Silence
from flowsight.model.events import Event, EventKind
from flowsight.model.loganalyzer import LogAnalyzer, TemplateCount
from flowsight.monitors.log import ANALYZER_STATE, LogMonitor
from flowsight.monitors.rules import RuleEngine
from flowsight.store.sql import SqlStore

log = logging.getLogger("flowsight.alerts")

SETTLE = 2.0  # seconds a PostgreSQL insert may take to commit, for the rules' reading window
#: what the rules react to (step_completed only for workflows with failing steps)
RULE_KINDS = ("started", "step_failed", "failed", "completed", "cancelled", "resumed")
RULE_KIND_SET = frozenset(EventKind(k) for k in RULE_KINDS)
STEP_COMPLETED = EventKind.STEP_COMPLETED
MAX_GAPS = 50
PAGE = 10_000
LOG_PAGE = 20_000  # log entries analyzed per store read
LOG_ROUND = 5  # reads per round at most, so a backlog does not hold up the alerts
SAVE_ANALYZER = 30.0  # seconds between saves of the log analyzer's templates


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, inclusive runs of consecutive seqs: 3, 4, 5, 9 -> (3, 5), (9, 9)."""
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def uncovered(after: int, upto: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The inclusive stretches of ``after < seq <= upto`` outside the merged ``covered``."""
    gaps, nxt = [], after + 1
    for lo, hi in covered:
        if hi < nxt:
            continue
        if lo > upto:
            break
        if lo > nxt:
            gaps.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= upto:
        gaps.append((nxt, upto))
    return gaps


class AlertingService:
    def __init__(self, store: SqlStore, config: Config, *, clock: Callable[[], float] = time.time,
                 notifiers: Mapping[str, Notifier] | None = None, interval: float = 1.0) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.interval = interval
        self.manager = AlertManager(config.route, inhibit_rules=config.inhibit_rules,
                                    flap_policy=config.flap_policy, clock=clock,
                                    dependencies=config.dependencies())
        if notifiers is None:
            notifiers = {rc.name: build_notifier(rc, config.external_url) for rc in config.receivers}
        self.notifiers = dict(notifiers)
        self.dispatcher = Dispatcher(store, self.notifiers, clock=clock, on_broken=self._broken,
                                     on_recovered=self._recovered)
        # the rules run in a worker thread: what they raise is collected there
        # and handed to the manager on the loop, which alone touches it
        self._raised: list[Alert] = []
        self.rules = RuleEngine(store, self._raised.append, config.rules, config.workflows, clock=clock,
                                external_url=config.external_url)
        self.logs = LogMonitor(log_analyzer=LogAnalyzer(), alert_rules=config.make_log_rules(),
                               send_alert=self._raised.append, clock=clock, external_url=config.external_url)
        self._analyzer_saved = 0.0
        self._analyzer_dirty = False
        self._logs_lock = threading.Lock()  # the analyzer works in a thread; the API reads its counts
        self._silences_seen = 0.0
        self._last_seq = 0  # events up to here have been read by the rules
        self._marks: deque[tuple[float, int]] = deque()
        self._seen_lock = threading.Lock()
        self._seen: list[tuple[int, Event]] = []  # committed here, not yet read by the rules
        self._covered: list[tuple[int, int]] = []  # seq ranges committed here (no need to scan them)
        self._step_workflows: set[str] = set()
        self._dirty = True
        self.failed_rounds = 0
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None  # made in start(), on the running loop

    # ---- input ---------------------------------------------------------------
    def load(self) -> None:
        """Take back what the store kept: alerts (with who was told) and silences."""
        # what happened before now the rules rebuild from the runs themselves
        self._last_seq = self.store.last_seq()
        states = self.store.load_alerts()
        self.manager.restore(states)
        self.rules.restore([s.alert for s in states])  # so it can resolve what it raised before
        self._sync_silences()
        saved = self.store.load_state(ANALYZER_STATE)
        if saved is not None:
            try:
                self.logs.log_analyzer = LogAnalyzer.from_state(saved)
            except (ValueError, KeyError, TypeError) as exc:  # a state from an incompatible version: start afresh
                log.warning("the saved log templates cannot be read (%s); templates are learnt again", exc)

    def send_alert(self, alert: Alert) -> None:
        """``AlertManager.send_alert``, remembered for saving at the next step."""
        self.manager.send_alert(alert)
        self._dirty = True

    def observe(self, events: Sequence[Event], seqs: Mapping[str, int]) -> None:
        """A batch this server just committed (the hub's hook, on the ingest
        path: it only keeps what the rules react to). Those seqs need not be
        read back from the store."""
        wanted, steps = RULE_KIND_SET, self._step_workflows
        got = [(seq, ev) for ev in events
               if (ev.kind in wanted or (ev.kind is STEP_COMPLETED and ev.workflow in steps))
               and (seq := seqs.get(ev.id)) is not None]
        with self._seen_lock:
            self._seen.extend(got)
            self._covered.extend(seq_ranges(seqs.values()))

    def _read_events(self, now: float) -> list[Event]:
        """The events stored since the last round that the rules react to,
        whoever wrote them: this server's own from :meth:`observe`, the rest
        (the SDK writing to the store directly, another replica) read back
        from the store, where only the stretches of seqs this server did not
        commit are scanned. On PostgreSQL, seqs are taken at insert and
        commits may land out of order, so the window stops at the highest seq
        seen ``SETTLE`` seconds ago."""
        self._marks.append((now, self.store.last_seq()))
        if self.store.dialect == "sqlite":
            upto = self._marks[-1][1]
        else:
            while len(self._marks) > 1 and self._marks[1][0] <= now - SETTLE:
                self._marks.popleft()
            upto = self._marks[0][1] if self._marks[0][0] <= now - SETTLE else self._last_seq
        with self._seen_lock:
            seen = [p for p in self._seen if self._last_seq < p[0] <= upto]
            self._seen = [p for p in self._seen if p[0] > upto]
            covered = merge_ranges(self._covered)
            self._covered = [(max(lo, upto + 1), hi) for lo, hi in covered if hi > upto]
        gaps = uncovered(self._last_seq, upto, covered)
        if len(gaps) > MAX_GAPS:  # many writers interleaved: one scan is cheaper than many
            gaps, seen = [(self._last_seq + 1, upto)], []
        self._step_workflows = self.rules.step_workflows()
        found = list(seen)
        for lo, hi in gaps:
            after = lo - 1
            while after < hi:
                page = self.store.rule_events(after, hi, RULE_KINDS, step_completed_of=sorted(self._step_workflows),
                                              limit=PAGE)
                found.extend(page)
                after = page[-1][0] if len(page) == PAGE else hi
        self._last_seq = max(self._last_seq, upto)
        found.sort(key=lambda p: p[0])
        return [ev for _, ev in found]

    def add_silence(self, silence: Silence) -> None:
        self.store.add_silence(silence, self.clock())
        self._sync_silences()

    def expire_silence(self, silence_id: str) -> bool:
        done = self.store.expire_silence(silence_id, self.clock())
        self._sync_silences()
        return done

    def _sync_silences(self) -> None:
        now = self.clock()
        for s in self.store.silences_changed_since(self._silences_seen):
            self.manager.add_silence(s)
        # a silence written in the same second as the last look is read again: harmless
        self._silences_seen = max(self._silences_seen, now - 1.0)

    # ---- receivers -----------------------------------------------------------
    def _broken(self, receiver: str, reason: str) -> None:
        log.error("receiver %r is broken: %s", receiver, reason)
        self.send_alert(Alert({"alertname": "ReceiverBroken", "receiver": receiver},
                              {"summary": f"alerts cannot be delivered to {receiver!r}",
                               "description": reason},
                              severity=Severity.ERROR, source="fault", starts_at=self.clock()))

    def _recovered(self, receiver: str) -> None:
        log.warning("receiver %r delivers again", receiver)
        self.send_alert(Alert({"alertname": "ReceiverBroken", "receiver": receiver}, severity=Severity.ERROR,
                              source="fault", status=AlertStatus.RESOLVED, ends_at=self.clock()))

    # ---- the loop --------------------------------------------------------------
    async def step(self, now: float | None = None) -> int:
        """One round; returns the notifications delivered."""
        now = self.clock() if now is None else now
        self._sync_silences()
        await asyncio.to_thread(self._rules_round, now)
        raised = self._raised[:]
        self._raised.clear()
        for alert in raised:
            self.send_alert(alert)
        notes = self.manager.tick(now)
        if notes:
            self.dispatcher.enqueue(notes)  # before the state that says they were told
        if notes or self._dirty:
            self.store.save_alerts(self.manager.snapshot(), now)
            self._dirty = False
        # on stop, only the sends in flight are finished, not a whole backlog
        return await self.dispatcher.run_once(now, stop=self._stop)

    def _rules_round(self, now: float) -> None:
        events = self._read_events(now)
        if events:
            self.rules.observe(events)
        self.rules.tick(now)
        self._logs_round(now)

    def _logs_round(self, now: float) -> None:
        """Templates and log rules for the stored log entries without a
        template yet (whoever wrote them), then the rules' timers."""
        with self._logs_lock:
            for _ in range(LOG_ROUND):
                n = self.logs.analyze_stored(self.store, limit=LOG_PAGE, now=now)
                self._analyzer_dirty |= n > 0
                if n < LOG_PAGE:
                    break
            self.logs.tick(now)
            if self._analyzer_dirty and now - self._analyzer_saved >= SAVE_ANALYZER:
                self._save_analyzer(now)

    def template_counts(self, n: int, *, since: float | None = None, until: float | None = None,
                        workflow: str | None = None) -> list[TemplateCount]:
        """The ``n`` templates with the most lines in [since, until), with
        their counts (the analyzer's per-minute counts, kept 24 h)."""
        analyzer = self.logs.log_analyzer
        if analyzer is None:
            return []
        with self._logs_lock:
            return analyzer.top(n, since=since, until=until, workflow=workflow)

    def _save_analyzer(self, now: float) -> None:
        analyzer = self.logs.log_analyzer
        if analyzer is not None:
            self.store.save_state(ANALYZER_STATE, analyzer.state())
        self._analyzer_saved, self._analyzer_dirty = now, False

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop), name="flowsight-alerting")

    async def stop(self) -> None:
        """Finish the round in progress (its sends included), save, stop."""
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        await self._task
        self._task = None
        self.store.save_alerts(self.manager.snapshot(), self.clock())
        if self._analyzer_dirty:
            with self._logs_lock:
                self._save_analyzer(self.clock())
        self.dispatcher.close()

    async def _run(self, stop: asyncio.Event) -> None:
        last_said = ("", 0.0)
        while not stop.is_set():
            try:
                await self.step()
            except Exception as exc:  # a bad round must not end alerting; the next one tries again
                # said once, then once a minute while it lasts (a store that is down fails every round)
                said, when = last_said
                now = time.monotonic()
                if str(exc) != said or now - when >= 60:
                    log.exception("alerting round failed (retrying every %gs)", self.interval)
                    last_said = (str(exc), now)
                self.failed_rounds += 1
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
