"""The alert manager at work in a server.

The built-in rules and the API feed alerts in; every ``interval`` one step
runs: silences written by other processes (the CLI) are picked up, the rules
look at running runs, the manager says which notifications are due, they are
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
from collections.abc import Callable, Mapping, Sequence

from flowsight.alerting.delivery import Dispatcher
from flowsight.alerting.manager import AlertManager
from flowsight.alerting.notifiers import Notifier
from flowsight.config import Config, build_notifier
from flowsight.model.alerts import Alert, AlertStatus, Severity, Silence
from flowsight.model.events import Event
from flowsight.monitors.rules import RuleEngine
from flowsight.store.sql import SqlStore

log = logging.getLogger("flowsight.alerts")

MAX_QUEUED = 200_000  # events waiting for the rules between two steps


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
        self._events: list[Event] = []
        self.events_dropped = 0
        self._dirty = True
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None  # made in start(), on the running loop

    # ---- input ---------------------------------------------------------------
    def load(self) -> None:
        """Take back what the store kept: alerts (with who was told) and silences."""
        states = self.store.load_alerts()
        self.manager.restore(states)
        self.rules.restore([s.alert for s in states])  # so it can resolve what it raised before
        self._sync_silences()

    def send_alert(self, alert: Alert) -> None:
        """``AlertManager.send_alert``, remembered for saving at the next step."""
        self.manager.send_alert(alert)
        self._dirty = True

    def observe(self, events: Sequence[Event]) -> None:
        """New events, just stored (the hub calls this on the ingest path, so
        it only queues them): the rules look at them at the next step."""
        self._events.extend(events)
        if len(self._events) > MAX_QUEUED:  # alerting is far behind: keep the newest, say so
            dropped = len(self._events) - MAX_QUEUED
            del self._events[:dropped]
            self.events_dropped += dropped
            log.warning("alert rules are behind: %d events not looked at", dropped)

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
        events, self._events = self._events, []
        await asyncio.to_thread(self._rules_round, events, now)
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

    def _rules_round(self, events: list[Event], now: float) -> None:
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
