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
import time
from collections import deque
from collections.abc import Callable, Mapping

from flowsight.alerting.delivery import Dispatcher
from flowsight.alerting.manager import AlertManager
from flowsight.alerting.notifiers import Notifier
from flowsight.config import Config, build_notifier
from flowsight.model.alerts import Alert, AlertStatus, Severity, Silence
from flowsight.model.events import Event
from flowsight.monitors.rules import RuleEngine
from flowsight.store.sql import SqlStore

log = logging.getLogger("flowsight.alerts")

SETTLE = 2.0  # seconds a PostgreSQL insert may take to commit, for the rules' reading window
#: what the rules react to (step_completed only for workflows with failing steps)
RULE_KINDS = ("started", "step_failed", "failed", "completed", "cancelled", "resumed")


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
        self._silences_seen = 0.0
        self._last_seq = 0  # events up to here have been read by the rules
        self._marks: deque[tuple[float, int]] = deque()
        self._dirty = True
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

    def send_alert(self, alert: Alert) -> None:
        """``AlertManager.send_alert``, remembered for saving at the next step."""
        self.manager.send_alert(alert)
        self._dirty = True

    def _read_events(self, now: float) -> list[Event]:
        """The events stored since the last round that the rules react to,
        whoever wrote them (this server, the SDK writing to the store
        directly, another replica). On PostgreSQL, ids are taken at insert
        and commits may land out of order, so the window stops at the
        highest id seen ``SETTLE`` seconds ago."""
        self._marks.append((now, self.store.last_seq()))
        if self.store.dialect == "sqlite":
            upto = self._marks[-1][1]
        else:
            while len(self._marks) > 1 and self._marks[1][0] <= now - SETTLE:
                self._marks.popleft()
            upto = self._marks[0][1] if self._marks[0][0] <= now - SETTLE else self._last_seq
        events: list[Event] = []
        while self._last_seq < upto:
            page = self.store.rule_events(self._last_seq, upto, RULE_KINDS,
                                          step_completed_of=sorted(self.rules.step_workflows()))
            events.extend(ev for _, ev in page)
            self._last_seq = page[-1][0] if len(page) == 10_000 else upto
        return events

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
        return await self.dispatcher.run_once(now)

    def _rules_round(self, now: float) -> None:
        events = self._read_events(now)
        if events:
            self.rules.observe(events)
        self.rules.tick(now)

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

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except Exception:  # a bad round must not end alerting; the next one tries again
                log.exception("alerting round failed")
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
