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

The event loop never waits on the manager: it lives on a thread of its own,
where every operation on it runs in turn (:meth:`AlertingService.read`,
:meth:`AlertingService.send_alerts`, the round). Alerts sent from anywhere
else (:meth:`AlertingService.send_alert`: the rules, the monitors, the
delivery hooks) wait in an inbox that the manager's thread empties before
each of its operations. Only what changed since the last save is written,
in chunks, so a flood of alerts neither rewrites every stored alert each
second nor holds the store's writers for long.

Each round's runners are objects of their own: the events the rules read
(:class:`~flowsight.server.rule_events.RuleEvents`), the log monitor's round
(:class:`~flowsight.server.log_round.LogRound`), the alerts other processes
stored (:class:`~flowsight.server.adoption.StoredByOthers`) and the outbox's
delivery (:class:`~flowsight.alerting.delivery.Dispatcher`); this service
holds the manager and runs the round.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from flowsight.alerting.delivery import Dispatcher
from flowsight.alerting.manager import AlertManager, Notification
from flowsight.alerting.notifiers import Notifier
from flowsight.config import Config, build_notifier
from flowsight.errors import FencedError, StoreError
from flowsight.model.alerts import Alert, AlertStatus, Severity, Silence
from flowsight.logs.analyzer import LogAnalyzer, TemplateCount
from flowsight.monitors.log import ANALYZER_STATE, LogMonitor
from flowsight.monitors.rule_engine import RuleEngine
from flowsight.monitors.schedules import ScheduleMonitor
from flowsight.server.adoption import StoredByOthers
from flowsight.server.log_round import LogRound
from flowsight.server.rule_events import RuleEvents
from flowsight.store.interface import Store
from flowsight.store.leases import FENCE

if TYPE_CHECKING:
    from flowsight.server.leadership import Duty

log = logging.getLogger("flowsight.alerts")
R = TypeVar("R")

#: alerts taken per turn on the manager's thread: a big batch lets the round and the readers in between
SEND_CHUNK = 1_000
RELOAD = 10.0  # seconds between a follower's full reads of the alerts the store keeps
RULES_SEQ = "alerting.rules_seq"  # kept: the last event seq the leading replica's rules have read


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """A bulk load (100,000 alerts read back at start) with the cyclic
    garbage collector paused: each full pass walks every object, and one came
    every quarter of growth, which made the load three times slower. Alerts
    hold no reference cycles, so nothing they make waits for it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _nothing(am: AlertManager) -> None:
    """An operation on the manager that only takes what waits in its inbox."""


class AlertingService:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        notifiers: Mapping[str, Notifier] | None = None,
        interval: float = 1.0,
        duty: Duty | None = None,
    ) -> None:
        self.store = store
        # the "alerting" duty where several replicas share the store (None: this server leads, unfenced)
        self.duty = duty
        self._term = 0  # the duty's term (Duty.changes) this server's rules were set up for
        self._rules_seq = -1  # the last RULES_SEQ kept
        self.config = config
        self.clock = clock
        self.interval = interval
        self.manager = self._new_manager()
        self._local: set[str] = set()  # fingerprints of the alerts raised here (a follower hands only those on)
        self._fresh = False  # the manager holds what the store keeps, read by load() and not followed since
        self._reloaded = 0.0  # when a follower last read every alert the store keeps
        if notifiers is None:
            notifiers = {rc.name: build_notifier(rc, config.external_url) for rc in config.receivers}
        self.notifiers = dict(notifiers)
        self.dispatcher = Dispatcher(
            store, self.notifiers, clock=clock, on_broken=self.receiver_broken, on_recovered=self.receiver_recovered
        )
        # the manager's own thread (see the module docstring), and what waits for it
        self._manager_thread = ThreadPoolExecutor(1, thread_name_prefix="flowsight-alerts")
        self._inbox: deque[Callable[[AlertManager], object]] = deque()
        # the runners of each round: the built-in rules over the events, the
        # log monitor over the stored entries, the alerts other processes stored
        self.rules = RuleEngine(
            store, self.send_alert, config.rules, config.workflows, clock=clock, external_url=config.external_url
        )
        self.schedules = ScheduleMonitor(
            store,
            self.send_alert,
            config.expectations,
            # judged on the events known up to then (RuleEvents.known_until)
            clock=lambda: self.rule_events.known_until(clock()),
            external_url=config.external_url,
            heartbeat=config.schedule_heartbeat,
            keep=config.schedule_keep,
        )
        self.rule_events = RuleEvents(store, self.rules, self.schedules)
        self.logs = LogRound(
            store,
            LogMonitor(
                log_analyzer=LogAnalyzer(),
                alert_rules=config.make_log_rules(),
                send_alert=self.send_alert,
                clock=clock,
                external_url=config.external_url,
            ),
        )
        self.others = StoredByOthers(store)
        self._silences_seen = 0.0
        self.failed_rounds = 0
        self._loaded: Future[None] | None = None  # load() at work on the manager's thread
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None  # made in start(), on the running loop

    def _new_manager(self) -> AlertManager:
        cfg = self.config
        return AlertManager(
            cfg.route,
            inhibit_rules=cfg.inhibit_rules,
            flap_policy=cfg.flap_policy,
            clock=self.clock,
            dependencies=cfg.dependencies(),
        )

    def _reload(self, am: AlertManager) -> AlertManager:
        """The manager made again from what the store keeps now (every alert,
        every silence not ended: one that starts later too), keeping the
        alerts raised here not yet stored (on the manager's thread)."""
        fresh = self._new_manager()
        with gc_paused():
            fresh.restore(self.store.alerts.load_alerts())
        now = self.clock()
        for silence in self.store.alerts.list_silences():
            if silence.ends_at > now:
                fresh.add_silence(silence)
        mine, _ = am.changes()
        for st in mine:
            if st.alert.fingerprint in self._local:
                fresh.send_alert(st.alert)
        self.manager = fresh
        return fresh

    # ---- input ---------------------------------------------------------------
    def load(self, *, wait: bool = True) -> None:
        """Take back what the store kept: alerts (with who was told),
        silences, log templates. Before :meth:`start`. It is done on the
        manager's thread ahead of anything else asked of it: with ``wait``
        False this returns at once (a server binds its port meanwhile; what
        reads the manager waits for it), and the rounds start once it is done.

        Raises:
            StoreError: with ``wait``, the store could not be read.
        """
        self._loaded = self._manager_thread.submit(self._load)
        if wait:
            self._loaded.result()

    def _load(self) -> None:
        # what happened before now the rules rebuild from the runs themselves
        self.rule_events.last_seq = self.store.runs.last_seq()
        self.others.since = self.clock()
        with gc_paused():
            # what is stored now is what this load takes: the rounds take in only what is stored after
            # (another process's alert), not the previous server's last save again over a newer change
            self.others.take()
            states = self.store.alerts.load_alerts()
            silences = self._changed_silences()
            saved = self.store.kept.load(ANALYZER_STATE)
            self.manager.restore(states)
            for s in silences:
                self.manager.add_silence(s)
            self.rules.restore([s.alert for s in states])  # so it can resolve what it raised before
            self.schedules.restore([s.alert for s in states])
        if saved is not None:
            self.logs.restore(saved)
        self._fresh = True

    def _promote(self, am: AlertManager) -> None:
        """This replica has just taken the lead (on the manager's thread, a
        server's start included): the manager is made again from the alerts
        the store keeps (the last leader's, with who was told) unless it was
        just loaded from there, the rules take them over, so they can resolve
        them, and read the events from where the last leader's rules stopped
        (where a leader kept that)."""
        if not self._fresh:
            am = self._reload(am)
        self._fresh = False
        alerts = [st.alert for st in am.snapshot()]
        self.rules.restore(alerts)
        self.schedules.restore(alerts)
        kept = self.store.kept.load(RULES_SEQ)
        self.rule_events.start_at(int(kept) if isinstance(kept, int) else self.store.runs.last_seq())
        saved = self.store.kept.load(ANALYZER_STATE)
        if saved is not None:
            self.logs.restore(saved)

    def send_alert(self, alert: Alert) -> None:
        """``AlertManager.send_alert`` at the manager's next operation (at the
        latest the next round); from any thread, never waits."""
        self._local.add(alert.fingerprint)
        self._inbox.append(functools.partial(AlertManager.send_alert, alert=alert))

    async def send_alerts(self, alerts: Sequence[Alert]) -> None:
        """``AlertManager.send_alert`` for each, done when this returns (the
        loop is free meanwhile); ``SEND_CHUNK`` at a time, so a big batch lets
        the round and the readers in between."""
        for i in range(0, len(alerts), SEND_CHUNK):
            await self._manager(self._send_all, alerts[i : i + SEND_CHUNK])

    def _send_all(self, am: AlertManager, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            self._local.add(alert.fingerprint)  # raised here (POST /api/v1/alerts): a follower hands it on
            am.send_alert(alert)

    async def read(self, fn: Callable[[AlertManager], R]) -> R:
        """``fn(manager)`` on the manager's thread: what the API and the
        metrics read of it (the loop is free meanwhile)."""
        return await self._manager(fn)

    async def _manager(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.wrap_future(self._on_manager(fn, *args))

    def _on_manager(self, fn: Callable[..., R], *args: Any) -> Future[R]:
        """Run ``fn(manager, *args)`` on the manager's thread, after what waits in the inbox."""
        return self._manager_thread.submit(self._turn, fn, *args)

    def _turn(self, fn: Callable[..., R], *args: Any) -> R:
        inbox, am = self._inbox, self.manager
        while inbox:
            op = inbox.popleft()
            try:
                op(am)
            except Exception:  # one bad alert must not stop the others nor the operation waiting
                log.exception("alerting: an alert could not be taken")
        return fn(am, *args)

    def add_silence(self, silence: Silence) -> None:
        """Keep ``silence`` in the store; the manager takes it at its next operation."""
        self.store.alerts.add_silence(silence, self.clock())
        self._inbox.append(functools.partial(AlertManager.add_silence, silence=silence))

    def expire_silence(self, silence_id: str) -> bool:
        """End a silence in the store; the manager at its next operation."""
        done = self.store.alerts.expire_silence(silence_id, self.clock())
        if done:
            self._inbox.append(functools.partial(AlertManager.expire_silence, silence_id=silence_id))
        return done

    def _changed_silences(self) -> list[Silence]:
        """Silences changed in the store since the last look (another process's too)."""
        now = self.clock()
        changed = self.store.alerts.silences_changed_since(self._silences_seen)
        # a silence written in the same second as the last look is read again: harmless
        self._silences_seen = max(self._silences_seen, now - 1.0)
        return changed

    # ---- receivers -----------------------------------------------------------
    def receiver_broken(self, receiver: str, reason: str) -> None:
        log.error("receiver %r is broken: %s", receiver, reason)
        self.send_alert(
            Alert(
                {"alertname": "ReceiverBroken", "receiver": receiver},
                {"summary": f"alerts cannot be delivered to {receiver!r}", "description": reason},
                severity=Severity.ERROR,
                source="fault",
                starts_at=self.clock(),
            )
        )

    def receiver_recovered(self, receiver: str) -> None:
        self.send_alert(
            Alert(
                {"alertname": "ReceiverBroken", "receiver": receiver},
                severity=Severity.ERROR,
                source="fault",
                status=AlertStatus.RESOLVED,
                ends_at=self.clock(),
            )
        )

    # ---- the loop --------------------------------------------------------------
    async def step(self, now: float | None = None) -> int:
        """One round; returns the notifications delivered (none where
        another replica leads the alerting: this one only follows)."""
        now = self.clock() if now is None else now
        duty = self.duty
        if duty is None:
            return await self._lead(now)
        if duty.fence is None:
            await self._follow(now)
            return 0
        fenced = FENCE.set(duty.fence)  # this task's writes, and those of the threads it hands work to
        try:
            if duty.changes != self._term:
                await self._manager(self._promote)
                self._term = duty.changes
            return await self._lead(now)
        finally:
            FENCE.reset(fenced)

    async def _follow(self, now: float) -> None:
        """A round where another replica leads: take in the alerts it keeps
        (and the silences), and store the alerts raised here for it to send.
        Every ``RELOAD`` seconds the whole view is read again (an alert the
        leader forgot is gone from the store, which no round's reading says)."""
        self._fresh = False  # what the leader forgets from now on, no round's reading says
        silences = await asyncio.to_thread(self._changed_silences)
        if now - self._reloaded >= RELOAD:
            await self._manager(self._reload)
            self._reloaded = now
        else:
            foreign = await asyncio.to_thread(self.others.take)
            if foreign:
                await self._manager(AlertManager.restore, foreign)
        await self._manager(self._add_silences, silences)
        await self._save(now, only_local=True)
        self.rule_events.start_at(0)  # the leader reads the events: nothing kept here for it

    @staticmethod
    def _add_silences(am: AlertManager, silences: list[Silence]) -> None:
        for s in silences:
            am.add_silence(s)

    async def _lead(self, now: float) -> int:
        silences = await asyncio.to_thread(self._changed_silences)
        await asyncio.to_thread(self._rules_round, now)
        judged = self.rule_events.last_seq  # the alerts of the events up to here are stored by _save below
        foreign = await asyncio.to_thread(self.others.take)
        if foreign:
            await self._manager(AlertManager.restore, foreign)
        notes = await self._manager(self._tick, silences, now)
        if notes:
            await asyncio.to_thread(self.dispatcher.enqueue, notes)  # before the state that says they were told
        await self._save(now)
        if self.duty is not None and judged != self._rules_seq:
            await asyncio.to_thread(self._keep_rules_seq, judged)
        # on stop, only the sends in flight are finished, not a whole backlog
        delivered = await self.dispatcher.run_once(now, stop=self._stop)
        await self._manager(_nothing)  # what delivery raised (ReceiverBroken) is in the manager from now on
        return delivered

    def _keep_rules_seq(self, seq: int) -> None:
        """Where the next leader's rules start reading: kept once the alerts
        the events up to ``seq`` raised are stored (a leader killed before
        leaves its successor to judge them again, rather than none to)."""
        try:
            self.store.kept.save(RULES_SEQ, seq)
        except FencedError:
            raise  # another replica leads: this round goes no further
        except StoreError:  # the store is away or full (said by the store): kept at a next round
            return
        self._rules_seq = seq

    @classmethod
    def _tick(cls, am: AlertManager, silences: list[Silence], now: float) -> list[Notification]:
        cls._add_silences(am, silences)
        return am.tick(now)

    async def _save(self, now: float, *, only_local: bool = False) -> None:
        """Store what changed in the manager since the last save; given back
        to it when the store fails, for the next save. ``only_local``: a
        follower's, which stores only the alerts raised here (what it took in
        from the leader is the leader's to store)."""
        self.others.saved(now)
        states, gone = await self._manager(AlertManager.changes)
        if only_local:
            states = [st for st in states if st.alert.fingerprint in self._local]
            gone = []
        elif self.duty is not None:  # the leader stores every alert: those are not left to hand on
            self._local.difference_update(st.alert.fingerprint for st in states)
        try:
            await asyncio.to_thread(self.store.alerts.update_alerts, states, gone, now)
        except Exception:
            await self._manager(AlertManager.unsaved, [*gone, *(s.alert.fingerprint for s in states)])
            raise

    def _rules_round(self, now: float) -> None:
        events = self.rule_events.read(now)
        if events:
            self.rules.observe(events)
            self.schedules.observe(events)
        self.rules.tick(now)
        self.schedules.tick(self.rule_events.known_until(now))  # as its clock does
        self.logs.run(now)

    def template_counts(
        self, n: int, *, since: float | None = None, until: float | None = None, workflow: str | None = None
    ) -> list[TemplateCount]:
        """The ``n`` templates with the most lines in [since, until), with
        their counts (the analyzer's per-minute counts, kept 24 h). Waits
        for :meth:`load` (the templates kept in the store come back with it);
        one that failed is retried by the rounds, meanwhile this answers what
        the analyzer has.

        Raises:
            StoreError: the load has taken over a minute so far (a 503: try again).
        """
        loaded = self._loaded
        if loaded is not None:
            try:
                loaded.result(timeout=60.0)
            except TimeoutError:
                raise StoreError("the templates kept in the store are still being read back; try again") from None
            except Exception:  # noqa: BLE001 - said by the rounds, which read the store again
                pass
        return self.logs.top(n, since=since, until=until, workflow=workflow)

    async def start(self) -> None:
        """Begin the rounds; what the store kept is taken back first
        (:meth:`load` without waiting, unless it was called before)."""
        if self._loaded is None:
            self.load(wait=False)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop), name="flowsight-alerting")

    async def stop(self) -> None:
        """Finish the round in progress (its sends included), save, stop."""
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        await self._task
        self._task = None
        # the last saves too are fenced: refused if another replica leads by now
        fenced = FENCE.set(self.duty.fence if self.duty is not None else None)
        try:
            await self._save(self.clock())
            self.logs.save_if_changed(self.clock())
        finally:
            FENCE.reset(fenced)
            self.dispatcher.close()
            self._manager_thread.shutdown(wait=True)

    async def _loading(self, stop: asyncio.Event) -> None:
        """Wait for :meth:`load`; read the store again while it fails."""
        while self._loaded is not None and not stop.is_set():
            try:
                await asyncio.wrap_future(self._loaded)
                return
            except Exception:  # the store is away: alerts cannot be judged without what it kept
                log.exception("the alerts kept in the store cannot be read (retrying every %gs)", self.interval)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except asyncio.TimeoutError:
                self._loaded = self._manager_thread.submit(self._load)

    async def _run(self, stop: asyncio.Event) -> None:
        await self._loading(stop)
        last_said = ("", 0.0)
        while not stop.is_set():
            try:
                await self.step()
            except FencedError as exc:  # another replica took the lead mid-round: this one follows from now on
                log.warning("alerting round stopped: %s", exc)
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
