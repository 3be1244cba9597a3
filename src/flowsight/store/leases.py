"""Leases of the singleton duties, and the replicas that hold them
(:class:`Leases`, ``store.leases``; tables ``leases`` and ``replicas``,
migration 17).

Several servers on one PostgreSQL database share the ingest and the reads,
but some work must be done by one of them at a time: the alert rounds (rules,
schedules, notifications), the detectors, retention, the exporters. Each such
*duty* has a lease row: its holder (a replica, and the token of that
process), an **epoch** and an expiry. A server takes a lease that has
expired (the epoch goes up by one) and renews the one it holds (same epoch).
Times are the database's clock, so the replicas' own clocks do not matter.

The epoch is the fencing token: while a duty's work runs, :data:`FENCE` says
which lease it runs under, and every write transaction of that work first
reads the duty's lease row (``FOR SHARE`` on PostgreSQL, so a takeover waits
for the write in flight) and is refused with
:class:`~flowsight.errors.FencedError` when the row names another holder or
epoch. A leader paused past its lease (SIGSTOP, a long GC, a network
partition) and then resumed writes nothing: its first write finds the newer
epoch. No session advisory lock is used: those are lost silently when a
pool recycles a connection and do not work behind PgBouncer in transaction
mode; a row in a transaction works anywhere.

Raises (every method):
    StoreError: the database failed; nothing of the call was written.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from flowsight.errors import FencedError
from flowsight.store.database import Database


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a duty's writes are made under. ``stall``: seconds a write
    transaction of the duty may sit idle before PostgreSQL ends it (a leader
    paused inside one would otherwise hold the lease row, and every other
    replica's takeover, for as long as it is paused)."""

    duty: str
    token: str
    epoch: int
    stall: float = 10.0


#: the lease the running duty's writes are made under (None: not a duty's write, no check)
FENCE: ContextVar[Fence | None] = ContextVar("flowsight_fence", default=None)


@dataclass(frozen=True, slots=True)
class Lease:
    """One duty's lease as the database has it."""

    duty: str
    holder: str  # the replica id ("" while nobody ever held it)
    token: str  # the holding process's own token
    epoch: int
    since: float  # when this holder took it (this epoch began)
    expires_at: float

    @property
    def fence(self) -> Fence:
        return Fence(self.duty, self.token, self.epoch)

    def fenced(self, stall: float) -> Fence:
        """The fence of this lease, its transactions ended after ``stall`` idle seconds."""
        return Fence(self.duty, self.token, self.epoch, stall)


@dataclass(frozen=True, slots=True)
class Replica:
    """A server on the database, as its last heartbeat said."""

    token: str
    replica_id: str
    host: str
    pid: int
    version: str
    started_at: float
    seen_at: float
    stopped_at: float | None


_LEASE_COLUMNS = "duty, holder, token, epoch, since, expires_at"
_REPLICA_COLUMNS = "token, replica_id, host, pid, version, started_at, seen_at, stopped_at"


def check_fence(db: Database, cur: Any) -> None:
    """Inside a write transaction: refuse it when it is a duty's write
    (:data:`FENCE` set) and the duty's lease has moved on.

    Raises:
        FencedError: another holder or a newer epoch holds the lease.
    """
    fence = FENCE.get()
    if fence is None:
        return
    if db.dialect.name == "postgresql":
        cur.execute(f"SET LOCAL idle_in_transaction_session_timeout = {max(1, int(fence.stall * 1000))}")
    cur.execute(db.sql(f"SELECT holder, token, epoch FROM leases WHERE duty = ?{db.dialect.lock_row}"), (fence.duty,))
    row = cur.fetchone()
    if row is None or row[1] != fence.token or int(row[2]) != fence.epoch:
        holder = f"{row[0]} (epoch {row[2]})" if row is not None else "nobody"
        raise FencedError(
            f"duty {fence.duty!r}: this server's lease (epoch {fence.epoch}) was taken over by {holder}; "
            "the write is refused"
        )


class Leases:
    """The duties' leases and the replicas' heartbeats (``store.leases``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _now(self, cur: Any) -> float:
        """The database's clock (PostgreSQL's, shared by every replica; a SQLite file's is this host's)."""
        if self._db.dialect.name == "postgresql":
            cur.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
            return float(cur.fetchone()[0])
        return time.time()

    def hold(self, duty: str, holder: str, token: str, ttl: float, *, take_from: str | None = None) -> Lease | None:
        """Take ``duty``'s lease for ``ttl`` seconds, or renew it: the lease
        when this process (``token``) holds it now, None when another does.
        Taken when free or expired (the epoch goes up by one); renewed with
        the same epoch. ``take_from``: a holder token known to be dead (a
        process of this host that is gone), whose lease is taken at once."""
        sql = self._db.sql
        with self._db.txn(f"lease of {duty}") as cur:
            if self._db.dialect.name == "postgresql":
                # a lease row held by a stalled transaction (a paused leader's) fails this round, not hangs it
                cur.execute(f"SET LOCAL lock_timeout = {max(1, int(min(2.0, ttl / 3) * 1000))}")
            now = self._now(cur)
            cur.execute(
                sql(f"INSERT INTO leases ({_LEASE_COLUMNS}) VALUES (?, '', '', 0, ?, 0) ON CONFLICT (duty) DO NOTHING"),
                (duty, now),
            )
            cur.execute(
                sql(
                    "UPDATE leases SET epoch = CASE WHEN token = ? THEN epoch ELSE epoch + 1 END, "
                    "since = CASE WHEN token = ? THEN since ELSE ? END, holder = ?, token = ?, expires_at = ? "
                    "WHERE duty = ? AND (token = ? OR expires_at <= ? OR token = ?)"
                ),
                (token, token, now, holder, token, now + ttl, duty, token, now, take_from or token),
            )
            if not cur.rowcount:
                return None
            cur.execute(sql(f"SELECT {_LEASE_COLUMNS} FROM leases WHERE duty = ?"), (duty,))
            return _lease(cur.fetchone())

    def release(self, duty: str, token: str) -> bool:
        """Give up ``duty``'s lease held by ``token`` (a clean stop): another
        replica takes it at its next try, not after the expiry."""
        with self._db.txn(f"release of {duty}") as cur:
            cur.execute(self._db.sql("UPDATE leases SET expires_at = 0 WHERE duty = ? AND token = ?"), (duty, token))
            return bool(cur.rowcount)

    def expire(self, duty: str) -> None:
        """End ``duty``'s lease whoever holds it (tests; an operator's last resort)."""
        self._db.write("UPDATE leases SET expires_at = 0 WHERE duty = ?", (duty,))

    def leases(self) -> list[Lease]:
        """Every duty's lease, by duty."""
        return [_lease(r) for r in self._db.read(f"SELECT {_LEASE_COLUMNS} FROM leases ORDER BY duty")]

    def now(self) -> float:
        """The database's clock, as the leases are kept in (a read: no write transaction)."""
        if self._db.dialect.name == "postgresql":
            return float(self._db.read("SELECT EXTRACT(EPOCH FROM clock_timestamp())")[0][0])
        return time.time()

    def beat(self, me: Replica) -> float:
        """Say ``me`` is alive (its row made or its ``seen_at`` moved to
        now); returns the database's clock."""
        with self._db.txn("heartbeat") as cur:
            now = self._now(cur)
            cur.execute(
                self._db.sql(
                    f"INSERT INTO replicas ({_REPLICA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL) "
                    "ON CONFLICT (token) DO UPDATE SET seen_at = excluded.seen_at, stopped_at = NULL"
                ),
                (me.token, me.replica_id, me.host, me.pid, me.version, me.started_at, now),
            )
            return now

    def stopped(self, token: str) -> None:
        """The replica of ``token`` stopped cleanly."""
        self._db.write("UPDATE replicas SET stopped_at = seen_at WHERE token = ?", (token,))

    def remove(self, token: str) -> None:
        """Drop the replica of ``token`` (a server refused at its start)."""
        self._db.write("DELETE FROM replicas WHERE token = ?", (token,))

    def replicas(self, seen_since: float) -> list[Replica]:
        """The replicas heard from since ``seen_since`` (the database's clock), oldest first."""
        rows = self._db.read(
            f"SELECT {_REPLICA_COLUMNS} FROM replicas WHERE seen_at >= ? ORDER BY started_at, token", (seen_since,)
        )
        return [_replica(r) for r in rows]

    def forget(self, older_than: float) -> int:
        """Drop the replicas not heard from since ``older_than``."""
        return self._db.write("DELETE FROM replicas WHERE seen_at < ?", (older_than,))


def _lease(row: Any) -> Lease:
    return Lease(str(row[0]), str(row[1]), str(row[2]), int(row[3]), float(row[4]), float(row[5]))


def _replica(row: Any) -> Replica:
    return Replica(
        str(row[0]), str(row[1]), str(row[2]), int(row[3]), str(row[4]), float(row[5]), float(row[6]),
        None if row[7] is None else float(row[7]),
    )  # fmt: skip
