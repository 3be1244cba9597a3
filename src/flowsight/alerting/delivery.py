"""Delivery through the outbox: written before sent, in order per receiver,
retried with backoff, every attempt logged.

:meth:`Dispatcher.enqueue` commits notifications to the outbox; once it has
returned they are not lost, whatever happens to the process.
:meth:`Dispatcher.run_once` sends what is due: receivers side by side, each
receiver's notifications one after another, oldest first. A notification is
claimed in the store before it is sent, so two servers sharing a store never
send it at the same time, and a server killed in the middle of a send leaves
it to be sent again once the claim's lease has passed (at least once: the
receiver can tell a repeat by the idempotency key every payload carries).

What happens after an attempt:

* **delivered**: the row is ``sent``, the log says ``ok``; if the receiver
  was broken it is not any more (``on_recovered``);
* **temporary failure** (network, timeout, 5xx, 429, a program that exited
  75, ``EX_TEMPFAIL``, or was killed, any unexpected exception): tried again after
  :meth:`Backoff.delay` (1 s, 2 s, 4 s, ... at most 5 min, with jitter); the
  receiver's later notifications wait behind it, so they still arrive in
  order;
* **permanent failure** (``DeliveryError(permanent=True)``: a 4xx other than
  429, a refused login, a missing program, one that exited with another
  non-zero status): retrying cannot help. The row is
  ``failed``, the receiver is marked broken and ``on_broken`` is called once
  (the server raises a ``ReceiverBroken`` alert for the other receivers).
  The receiver's next notification is still tried: one success clears the mark;
* **too old**: a notification still failing ``give_up_after`` (a day) after it
  was written fails the same way, with the receiver marked broken. A day late,
  an alert is history rather than news; holding it longer would hold back
  every later notification of that receiver too. Each notification gets its
  own day, counted from when it was written;
* **no such receiver** (the configuration changed): the row is ``failed``
  with an error saying so; no receiver is marked broken.

The same outbox carries the items of the exporters (``[export.otlp]``:
:class:`Exporter`), each under its own name as its receiver: they are sent,
retried and logged as notifications are, but never given up for their age
(an exporter's endpoint down for a weekend gets the weekend's runs after it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from flowsight.alerting.codec import decode_notification, encode_notification
from flowsight.alerting.manager import Notification
from flowsight.alerting.notifiers import EXPORT_PREFIX, Notifier
from flowsight.errors import ConfigError, DeliveryError
from flowsight.redact import redact
from flowsight.store.alerting import About, OutboxItem, Outgoing, Settled
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.alerts")
R = TypeVar("R")

GIVE_UP_AFTER = 86_400.0


class Exporter(Protocol):
    async def send_body(self, body: bytes) -> None:
        """Send one outbox item's body.

        Raises:
            DeliveryError: with ``permanent=True`` when retrying cannot help.
        """


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: attempt ``n`` failed, wait about
    ``min(cap, base * factor ** (n - 1))`` seconds, give or take ``jitter``
    of it (so the retries of many servers spread out)."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.factor >= 1 and self.cap >= self.base and 0 <= self.jitter < 1):
            raise ConfigError(f"backoff {self}: need base > 0, factor >= 1, cap >= base and 0 <= jitter < 1")

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...);
        ``rand`` is uniform in [0, 1) (0.5: no jitter)."""
        try:
            d = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        except OverflowError:  # attempt 1100 of a receiver down for days
            d = self.cap
        return d * (1.0 + self.jitter * (2.0 * rand - 1.0))


class Dispatcher:
    """Sends the outbox. ``notifiers``: receiver name -> its notifier.

    ``send_timeout`` bounds one send (longer: a temporary failure); ``lease``
    (default ``send_timeout + 30``) is how long a claimed notification is
    nobody else's: after a crash it is sent again once that has passed.
    ``clock`` and ``rand`` are the world, passed in.

    Store calls run on a thread of the dispatcher's own (never blocking the
    event loop on the database): one thread, so one reader connection
    however many event loops drive it.
    """

    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        *,
        clock: Callable[[], float] = time.time,
        backoff: Backoff = Backoff(),
        on_broken: Callable[[str, str], None] | None = None,
        on_recovered: Callable[[str], None] | None = None,
        rand: Callable[[], float] = random.random,
        give_up_after: float = GIVE_UP_AFTER,
        send_timeout: float = 30.0,
        lease: float | None = None,
        batch: int = 100,
        exporters: Mapping[str, Exporter] | None = None,
    ) -> None:
        self.store = store
        self.notifiers = notifiers
        self.exporters = dict(exporters or {})
        # a dispatcher sends the alerts' notifications, or one exporter's items: a slow
        # collector never holds an alert back
        if len(self.exporters) > 1 or (self.exporters and notifiers):
            raise ConfigError("a dispatcher sends the alerts' notifications or one exporter's items, not both")
        self._only = next(iter(self.exporters), None)
        self.clock = clock
        self.backoff = backoff
        self.on_broken = on_broken
        self.on_recovered = on_recovered
        self.rand = rand
        self.give_up_after = give_up_after
        self.send_timeout = send_timeout
        self.lease = send_timeout + 30.0 if lease is None else lease
        if self.lease <= send_timeout:
            raise ConfigError(
                f"delivery lease {self.lease:g} s must be longer than the send timeout "
                f"{send_timeout:g} s, or a slow send could be sent twice at once"
            )
        self.batch = batch
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="flowsight-outbox")
        # what this dispatcher settled (rows that took the new state: never twice)
        self.sent = 0
        self.retried = 0
        self.failed = 0
        # receivers whose last attempt failed for now: warned once per outage
        self._failing: set[str] = set()

    def enqueue(self, notes: Sequence[Notification]) -> list[int]:
        """Write ``notes`` to the outbox; committed when this returns (the
        acknowledgement point). The same notification twice is one row.
        Returns their outbox ids.

        Raises:
            StoreError: nothing was written.
        """
        return self.store.alerts.enqueue_notifications(
            [Outgoing(n.receiver, n.idempotency_key, encode_notification(n)) for n in notes], self.clock()
        )

    def close(self) -> None:
        """Let the store thread go (after the last :meth:`run_once`)."""
        self._db_thread.shutdown(wait=True)

    async def _db(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        # not fenced (flowsight.store.leases): a claim settles who sends a row, and a send that was made must be
        # recorded even by a replica that lost the lead meanwhile, or the next leader sends it again
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, functools.partial(fn, *args, **kw))

    async def run_once(self, now: float | None = None, *, stop: asyncio.Event | None = None) -> int:
        """Send everything due at ``now``; returns how many were delivered.

        Receivers are served side by side; each one's notifications go one
        after another, until one fails for now or none is due. With ``stop``
        set, no new send starts; those in flight finish and are recorded
        before this returns.

        Raises:
            StoreError: the store failed (after every send in flight finished).
        """
        now = self.clock() if now is None else now
        heads = await self._db(
            self.store.alerts.due_notifications,
            now,
            self.batch,
            receiver=self._only,
            skip_prefix=None if self._only else EXPORT_PREFIX,
        )
        results = await asyncio.gather(*(self._drain(h, now, stop) for h in heads), return_exceptions=True)
        delivered = 0
        for r in results:
            if isinstance(r, BaseException):
                raise r
            delivered += r
        return delivered

    async def _drain(self, head: OutboxItem, now: float, stop: asyncio.Event | None) -> int:
        """One receiver's due notifications, in order."""
        delivered = 0
        item: OutboxItem | None = head
        while item is not None and not (stop is not None and stop.is_set()):
            outcome = await self._attempt(item, now)
            if outcome is None or outcome == "temporary":
                break  # taken by someone else, or failing: the rest waits behind it
            delivered += outcome == "ok"
            nxt = await self._db(self.store.alerts.due_notifications, now, 1, receiver=head.receiver)
            item = nxt[0] if nxt else None
        return delivered

    async def _attempt(self, due: OutboxItem, now: float) -> str | None:
        """Claim, send and record one notification; its result (ok,
        temporary, permanent), or None when someone else had claimed it."""
        item = await self._db(self.store.alerts.claim_notification, due, now, now + self.lease)
        if item is None:
            return None
        exporter = self.exporters.get(item.receiver)
        if exporter is not None:
            return await self._send(item, now, exporter.send_body(item.body), About(item.receiver))
        try:
            # off the event loop: its work grows with the alerts in it
            note, about = await self._db(_open, item.body)
        except ValueError as exc:
            await self._settle_failed(item, now, f"outbox row {item.id}: {exc}", About(""), broken=False)
            return "permanent"
        notifier = self.notifiers.get(item.receiver)
        if notifier is None:
            await self._settle_failed(
                item,
                now,
                f"no receiver named {item.receiver!r} is configured (any more): "
                "add it back to the configuration to deliver its later "
                "notifications",
                about,
                broken=False,
            )
            return "permanent"
        return await self._send(item, now, notifier.send(note), about)

    async def _send(self, item: OutboxItem, now: float, sending: Awaitable[None], about: About) -> str:
        """Await ``sending`` (the item's send), and record what came of it."""
        try:
            await asyncio.wait_for(sending, self.send_timeout)
        except DeliveryError as exc:
            return await self._failed(item, now, str(exc), exc.permanent, about)
        except TimeoutError:
            return await self._failed(item, now, f"no answer within {self.send_timeout:g} s", False, about)
        except Exception as exc:  # a receiver's bug is a failed attempt, retried, not the end of delivery
            log.warning(
                "receiver %r: unexpected error sending notification %d\n%s",
                item.receiver,
                item.id,
                redact("".join(traceback.format_exception(exc))).rstrip(),
            )
            return await self._failed(item, now, f"{type(exc).__name__}: {exc}", False, about)
        settled = await self._db(self.store.alerts.mark_sent, item, now, about)
        self.sent += settled.moved
        if settled.recovered or item.receiver in self._failing:
            self._failing.discard(item.receiver)
            log.warning("receiver %r delivers again", item.receiver)
            self._call(self.on_recovered, item.receiver)
        return "ok"

    async def _failed(self, item: OutboxItem, now: float, error: str, permanent: bool, about: About) -> str:
        # whatever a notifier said: it goes to the log, the outbox and a ReceiverBroken alert's description
        error = redact(error)
        age = now - item.created_at
        if permanent:
            await self._settle_failed(item, now, error, about, broken=True)
            return "permanent"
        if age >= self.give_up_after and item.receiver not in self.exporters:
            await self._settle_failed(
                item,
                now,
                f"gave up after {item.attempts} attempts over {age / 3600:.1f} h; last error: {error}",
                about,
                broken=True,
            )
            return "permanent"
        next_at = now + self.backoff.delay(item.attempts, self.rand())
        settled = await self._db(self.store.alerts.mark_retry, item, now, next_at, error, about)
        self.retried += settled.moved
        if item.receiver not in self._failing:  # once per outage, not once per retry
            self._failing.add(item.receiver)
            log.warning(
                "receiver %r: notification %d not delivered (%s); retrying with backoff, next in %.0f s "
                "(its notifications wait in the outbox)",
                item.receiver,
                item.id,
                error,
                next_at - now,
            )
        return "temporary"

    async def _settle_failed(self, item: OutboxItem, now: float, error: str, about: About, *, broken: bool) -> Settled:
        settled = await self._db(self.store.alerts.mark_failed, item, now, error, about, break_receiver=broken)
        self.failed += settled.moved
        log.error("notification %d to %r failed for good: %s", item.id, item.receiver, error)
        if settled.broke:
            self._call(self.on_broken, item.receiver, error)
        return settled

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: str) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # the outcome is recorded already; a failing hook must not undo delivery
            log.exception("alerting: the receiver status hook failed")


def _open(body: bytes) -> tuple[Notification, About]:
    """The notification in an outbox row, its idempotency key worked out,
    and what it is about.

    Raises:
        ValueError: the body is not a notification.
    """
    note = decode_notification(body)
    _ = note.idempotency_key  # cached: the notifier reads it
    return note, About(note.group_key, tuple(a.fingerprint for a in note.alerts))


class DeliveryWorker:
    """Runs :meth:`Dispatcher.run_once` every ``interval`` seconds in a
    background task (or at once after :meth:`wake`). :meth:`stop` (what a
    SIGTERM handler awaits) lets the sends in flight finish and be recorded,
    starts no new one, and returns; what is left stays in the outbox for the
    next start."""

    def __init__(self, dispatcher: Dispatcher, interval: float = 1.0) -> None:
        self.dispatcher = dispatcher
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._kick = asyncio.Event()

    def start(self) -> None:
        """Start the loop (call it on the running event loop)."""
        if self._task is not None:
            return
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="flowsight-delivery")

    def wake(self) -> None:
        """Run a round now rather than at the next interval (e.g. after enqueue)."""
        self._kick.set()

    async def stop(self) -> None:
        """Finish the sends in flight, then stop."""
        if self._task is None:
            return
        self._stop.set()
        self._kick.set()
        try:
            await self._task
        finally:
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.dispatcher.run_once(stop=self._stop)
            except Exception:  # a bad round (the database away) must not end delivery; the next one tries
                log.exception("delivery round failed")
            if self._stop.is_set():
                break
            try:
                await asyncio.wait_for(self._kick.wait(), self.interval)
            except TimeoutError:
                pass
            self._kick.clear()
