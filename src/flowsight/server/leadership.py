"""One brain for several servers on one database: the singleton duties led
by one replica at a time, through the leases of :mod:`flowsight.store.leases`.

Every server ingests, answers reads and serves the dashboard. The work that
must happen once for the whole group is split into duties, each led by the
replica that holds its lease:

* ``alerting``: the alert rounds (built-in rules, schedule judgements, log
  rules) and the notifications they send. A replica that does not lead it
  still follows the alerts the leader keeps (its API and dashboard show
  them) and hands the alerts it raises itself (a threshold of a process on
  its host) to the leader through the store;
* ``detectors``: the fault detectors' checks;
* ``retention``: the purges of old log entries;
* ``export``: the exporters' feeder (``[export.otlp]``).

:class:`Leadership` is a service of the app: every ``renew`` seconds (a third
of the lease) it says this replica is alive and takes or renews each duty's
lease. A duty won starts its services in a context whose writes are fenced
(:data:`~flowsight.store.leases.FENCE`); a duty lost (another replica holds
the lease, or the database could not be reached for a whole lease) stops
them. A leader killed outright is replaced within a lease and a renewal
(10 s + 3.3 s by default); one stopped cleanly gives its leases back, and the
next replica takes them at its next renewal.

SQLite is single-node: a second server on the same file is refused at start
(:meth:`Leadership.claim`), naming the server that holds it. A holder that
was killed (its process is gone from this host) does not hold a restart up.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flowsight import __version__
from flowsight.errors import SingleNodeError, StoreError
from flowsight.pids import alive
from flowsight.server.services import Service, start_all, stop_all
from flowsight.store.interface import Store
from flowsight.store.leases import FENCE, Fence, Lease, Replica

log = logging.getLogger(__name__)

DUTIES = ("alerting", "detectors", "retention", "export")
LEASE = 10.0  # seconds a lease lasts unless renewed
FORGET_REPLICAS = 86_400.0  # a replica not heard from for a day leaves the list


REPLICA_ID_LIMIT = 100


def replica_id_problem(name: str) -> str | None:
    """Why ``name`` cannot name a replica (in logs, metrics, the cluster view), or None."""
    if not name:
        return "a replica's name must not be empty"
    if len(name) > REPLICA_ID_LIMIT:
        return f"a replica's name is {REPLICA_ID_LIMIT} characters at most, got {len(name)}"
    if not name.isprintable() or any(c.isspace() for c in name):
        return "a replica's name has no spaces or control characters (e.g. web-1)"
    return None


def default_replica_id() -> str:
    """``hostname:pid``: what a replica is called unless ``--replica-id`` says."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: what makes a duty's services afresh for each term of leading it (a stopped service is not started again)
Services = Callable[[], Sequence[Service]]


@dataclass
class Duty:
    """One duty as this server sees it: whether it leads it, and under which lease."""

    name: str
    make: list[Services] = field(default_factory=list)  # the services of a term: started while led, stopped when lost
    lease: Lease | None = None  # held by this server (None: it does not lead)
    renewed: float = 0.0  # time.monotonic() of the round that last renewed it
    running: list[Service] = field(default_factory=list)
    running_epoch: int = 0  # the epoch the running services are fenced with
    changes: int = 0  # times this server took the lease

    @property
    def leading(self) -> bool:
        return self.lease is not None

    ttl: float = LEASE

    @property
    def fence(self) -> Fence | None:
        return self.lease.fenced(self.ttl) if self.lease is not None else None


class Alone:
    """What a server alone with its store leads: every duty, no lease (an app
    made in-process, a test); the interface :class:`Leadership` offers."""

    replica_id = "local"

    def __init__(self) -> None:
        self.duties = {name: Duty(name) for name in DUTIES}

    def duty(self, name: str) -> Duty | None:
        """``name``'s duty while it is led through a lease; None: led here for ever, unfenced."""
        return None

    def wrap(self, name: str, make: Services) -> list[Service]:
        """The services of duty ``name`` as the app starts them: made once, run for ever."""
        return list(make())


class Leadership:
    """This replica's part in the group: its heartbeat and the duties' leases (a service)."""

    def __init__(
        self,
        store: Store,
        replica_id: str | None = None,
        *,
        lease: float = LEASE,
        renew: float | None = None,
    ) -> None:
        self.store = store
        self.replica_id = replica_id or default_replica_id()
        self.token = uuid.uuid4().hex
        self.ttl = lease
        self.renew = renew if renew is not None else lease / 3
        self.me = Replica(
            self.token, self.replica_id, socket.gethostname(), os.getpid(), __version__, time.time(), 0.0, None
        )
        self.duties = {name: Duty(name, ttl=lease) for name in DUTIES}
        self.failed_rounds = 0
        self._said = ("", 0.0)  # the last failure said, and when
        self._claimed = False
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # ---- what the app asks ----------------------------------------------------
    def duty(self, name: str) -> Duty:
        return self.duties[name]

    def wrap(self, name: str, make: Services) -> list[Service]:
        """The services of duty ``name``: made and started at each term this
        replica leads it, stopped when the term ends (none at the app's start)."""
        self.duties[name].make.append(make)
        return []

    # ---- the leases -----------------------------------------------------------
    def claim(self) -> None:
        """The first round, before the server binds its port: on SQLite, a
        second live server on the same file is refused here.

        Raises:
            SingleNodeError: SQLite, and another server holds the file.
            StoreError: the store could not be reached.
        """
        self._round()
        self._claimed = True
        if self.store.dialect != "sqlite":
            now = self.store.leases.now()
            twins = [
                r for r in self.store.leases.replicas(now - 2 * self.ttl)
                if r.replica_id == self.replica_id and r.token != self.token and r.stopped_at is None
            ]  # fmt: skip
            if twins:
                log.warning(
                    "another replica is called %r too (pid %d on %s): give each its own --replica-id",
                    self.replica_id, twins[0].pid, twins[0].host,
                )  # fmt: skip
            return
        for duty in self.duties.values():
            if duty.lease is None:
                other = next((ls for ls in self.store.leases.leases() if ls.duty == duty.name), None)
                who = f"{other.holder!r}" if other is not None else "another server"
                self.store.leases.remove(self.token)
                raise SingleNodeError(
                    f"another flowsight serve ({who}) is serving the SQLite store {self.store.url}: SQLite is "
                    "single-node. Stop it first, or run several replicas on PostgreSQL "
                    "(--db postgresql://...; see docs/replicas.md)"
                )

    def _round(self) -> None:
        """Heartbeat, then take or renew each duty's lease (on a thread: database work)."""
        started = time.monotonic()
        leases = self.store.leases
        leases.beat(self.me)
        for duty in self.duties.values():
            got = leases.hold(duty.name, self.replica_id, self.token, self.ttl)
            if got is None:
                dead = self._dead_holder(duty.name)
                if dead is not None:
                    got = leases.hold(duty.name, self.replica_id, self.token, self.ttl, take_from=dead)
                    leases.stopped(dead)  # gone: not listed as alive any more
            if got is not None:
                duty.renewed = started
                if duty.lease is None or duty.lease.epoch != got.epoch:
                    duty.changes += 1
                    log.info("replica %s leads %s (epoch %d)", self.replica_id, duty.name, got.epoch)
            elif duty.lease is not None:
                log.warning("replica %s no longer leads %s (epoch %d)", self.replica_id, duty.name, duty.lease.epoch)
            duty.lease = got

    def _dead_holder(self, duty: str) -> str | None:
        """The token holding ``duty`` when it is a process of this host that
        is gone (a server killed and started again); else None. Only where
        every process of the store is on one host (SQLite): a host name is
        not unique enough to judge a PostgreSQL replica's process by."""
        if self.store.dialect != "sqlite":
            return None
        lease = next((ls for ls in self.store.leases.leases() if ls.duty == duty), None)
        if lease is None or not lease.token:
            return None
        for r in self.store.leases.replicas(0.0):
            if r.token == lease.token:
                # a process of this host that is gone (or a container's PID 1 again: this process's pid)
                gone = r.pid == os.getpid() or not alive(r.pid)
                return r.token if r.host == self.me.host and gone else None
        return None

    async def _apply(self) -> None:
        """Start the services of the duties just won, stop those of the duties
        lost; a duty won back under a newer epoch starts afresh under it."""
        for duty in self.duties.values():
            epoch = duty.lease.epoch if duty.lease is not None else 0
            if duty.running and duty.running_epoch != epoch:
                log.info("replica %s: the work of %s (epoch %d) stops", self.replica_id, duty.name, duty.running_epoch)
                running, duty.running = duty.running, []
                try:
                    await stop_all(running)
                except StoreError as exc:  # what it would have written last is refused: another leads now
                    log.warning("%s stopped without its last write: %s", duty.name, exc)
            if duty.lease is not None and not duty.running and duty.make and not self._stop.is_set():
                ctx = contextvars.copy_context()
                ctx.run(FENCE.set, duty.fence)
                services = [svc for make in duty.make for svc in make()]
                # the services' tasks (and the threads they hand work to) are made in this context: fenced
                duty.running = await asyncio.create_task(start_all(services), context=ctx)
                duty.running_epoch = epoch

    def _lapse(self) -> None:
        """The database could not be reached: a lease not renewed for a whole term is another's by now."""
        now = time.monotonic()
        for duty in self.duties.values():
            if duty.lease is not None and now - duty.renewed >= self.ttl:
                duty.lease = None

    async def start(self) -> None:
        if not self._claimed:
            try:
                await asyncio.to_thread(self._round)
            except StoreError as exc:
                self._say(exc)
        await self._apply()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop), name="flowsight-leadership")

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.renew)
                break
            except asyncio.TimeoutError:
                pass
            try:
                await asyncio.to_thread(self._round)
                self._said = ("", 0.0)
            except StoreError as exc:
                self.failed_rounds += 1
                self._say(exc)
                self._lapse()
            try:
                await self._apply()
            except Exception:  # a duty that cannot start must not end the heartbeats and the other duties
                log.exception("leases: starting or stopping a duty's work failed (trying again every %gs)", self.renew)

    def _say(self, exc: StoreError) -> None:
        """A failed round, said once, then once a minute while it lasts (a store that is down fails each one)."""
        said, when = self._said
        now = time.monotonic()
        if str(exc) != said or now - when >= 60:
            log.error("leases: %s (trying again every %gs)", exc, self.renew)
            self._said = (str(exc), now)

    async def stop(self) -> None:
        """Stop renewing and stop the duties' work. The leases are still held
        (alerting, stopped after this, makes its last saves under its own):
        :meth:`release`, stopped last, gives them back."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        for duty in self.duties.values():
            duty.running_epoch = -1  # every running term ends
        await self._apply()

    @property
    def release(self) -> Service:
        """A service whose stop gives the leases back and says this replica
        stopped: the app stops it last, after alerting's last save."""
        return _Release(self)

    async def _give_back(self) -> None:
        for duty in self.duties.values():
            duty.lease = None
        try:
            await asyncio.to_thread(self._release)
        except StoreError as exc:
            log.warning("leases not given back (they lapse in %gs): %s", self.ttl, exc)

    def _release(self) -> None:
        for name in DUTIES:
            self.store.leases.release(name, self.token)
        self.store.leases.stopped(self.token)
        self.store.leases.forget(time.time() - FORGET_REPLICAS)


class _Release:
    """:attr:`Leadership.release` as a service: nothing at start; the leases given back at stop."""

    def __init__(self, leadership: Leadership) -> None:
        self._leadership = leadership

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await self._leadership._give_back()
