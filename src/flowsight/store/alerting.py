"""What alerting must not forget, kept in the store (migration 3).

* ``alerts``: the manager's snapshot, each alert with the receivers told
  "firing" that are still owed "resolved";
* ``silences``: made by the CLI or the API; a running server picks up those
  of other processes through ``updated_at`` (:meth:`Alerts.silences_changed_since`);
* ``outbox``: a notification is written here, and committed, before it is
  sent. Per receiver only the oldest pending row is ever due, so a receiver
  hears in order and a failing notification holds back the ones behind it;
* ``notification_log``: every attempt, written in the same transaction as
  the outbox row's new state;
* ``receivers``: the broken ones (a delivery failed for good), since when, why.

Races are settled by the database. A row is *claimed* before it is sent
(``UPDATE ... WHERE id = ? AND state = 'pending' AND attempts = ? AND
next_attempt_at <= now``: one claimant wins, and its claim pushes
``next_attempt_at`` out by a lease so nobody else sends it meanwhile); the
claim's attempt number fences the outcome (a retry or failure is recorded
only by the holder of the latest claim). A receiver becomes broken, or
recovers, by an ``INSERT ... ON CONFLICT DO NOTHING`` / ``DELETE`` that
changed one row, so it is announced once however many servers share the store.

Free text kept as it is (error messages, a broken receiver's reason, a
silence's author and comment, an alert's source and link, a group key) has
any NUL character replaced by U+FFFD on both backends: PostgreSQL text cannot
hold NUL, and a receiver answering with a binary error page must not make its
attempt unrecordable (the notification would then hold back its receiver
for ever). Labels, annotations, matchers and bodies are JSON, kept exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from flowsight.errors import ConfigError
from flowsight.model.alerts import Alert, AlertState, AlertStatus, Matcher, Severity, Silence, parse_matcher
from flowsight.store.database import Database
from flowsight.store.dialect import like_escape

_log = logging.getLogger("flowsight.store")
_enc = msgspec.json.Encoder()
_str_map = msgspec.json.Decoder(dict[str, str])
_str_list = msgspec.json.Decoder(list[str])
_ALERT_COLUMNS = (
    "fingerprint, labels, annotations, severity, source, status, starts_at, ends_at, link, told, updated_at"
)
_ALERT_UPSERT = (
    f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES ({', '.join('?' * 11)}) "
    "ON CONFLICT (fingerprint) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ALERT_COLUMNS.split(", ")[1:])
)
_SILENCE_COLUMNS = "id, matchers, starts_at, ends_at, created_by, comment"
_OUTBOX_COLUMNS = "id, receiver, idempotency_key, body, created_at, attempts, next_attempt_at, state, last_error"
_LOG_COLUMNS = "id, outbox_id, receiver, group_key, fingerprints, at, attempt, result, error"
_OUTBOX_LOCK = 0x6F757462  # "outb": PostgreSQL enqueuers take turns, so ids commit in id order
_CHUNK = 500
# by value: a dict look-up, where calling the enum costs ten times as much a row
_SEVERITIES = {s.value: s for s in Severity}
_STATUSES = {s.value: s for s in AlertStatus}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification to put in the outbox, already encoded."""

    receiver: str
    idempotency_key: str
    body: bytes


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An outbox row. ``attempts``: attempts started so far; on an item
    returned by :meth:`Alerts.claim_notification` it is the number of
    the attempt being made (the fencing token of its outcome)."""

    id: int
    receiver: str
    idempotency_key: str
    body: bytes
    created_at: float
    attempts: int
    next_attempt_at: float
    state: str = "pending"  # pending | sent | failed
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class About:
    """What a notification is about, for its log rows."""

    group_key: str
    fingerprints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling an attempt changed. ``moved``: the outbox row took the
    new state (False: another claimant settled or re-claimed it first; the
    attempt is logged all the same). ``broke`` / ``recovered``: the receiver
    became broken, or stopped being broken, by this very transaction."""

    moved: bool
    broke: bool = False
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class LogRow:
    """One delivery attempt."""

    id: int
    outbox_id: int
    receiver: str
    group_key: str
    fingerprints: tuple[str, ...]
    at: float
    attempt: int
    result: str  # ok | temporary | permanent
    error: str | None


def _text(value: str) -> str:
    """``value`` as PostgreSQL text can keep it (see the module docstring)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _opt_text(value: str | None) -> str | None:
    return None if value is None else _text(value)


def matcher_text(m: Matcher) -> str:
    """``m`` as text that :func:`parse_matcher` reads back to an equal matcher:
    the value is quoted only when it must be to stay whole: it starts with a
    quote, has spaces at an end, or starts with ``~`` (``a=~x`` would read
    as a regex match). ``str(Matcher)`` uses ``repr``, which doubles every
    backslash of a regex."""
    value = m.value
    if value[:1] in ("'", '"', "~") or value != value.strip():
        quote = '"' if value[-1:] != '"' else "'"
        value = f"{quote}{value}{quote}"
    return f"{m.name}{m.op}{value}"


class Alerts:
    """What alerting keeps in a store (``store.alerts``): alerts, silences,
    the outbox, the notification log and the broken receivers.

    Every ``now`` defaults to ``time.time()``; pass it to keep one clock.

    Raises (every method):
        StoreError: the database failed; nothing of the call was written.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- alerts ----------------------------------------------------------------
    def save_alerts(self, states: Sequence[AlertState], now: float | None = None, *, replace: bool = True) -> None:
        """Store ``states`` (upsert by fingerprint), in one transaction. With
        ``replace`` (the manager saving its snapshot) the stored set becomes
        exactly ``states``: alerts the manager has forgotten are deleted."""
        now = time.time() if now is None else now
        rows = _alert_rows(states, now)
        with self._db.txn("save of alerts") as cur:
            if replace:
                keep = {r[0] for r in rows}
                cur.execute("SELECT fingerprint FROM alerts")
                gone = [(fp,) for (fp,) in cur.fetchall() if fp not in keep]
                if gone:
                    cur.executemany(self._db.sql("DELETE FROM alerts WHERE fingerprint = ?"), gone)
            if rows:
                cur.executemany(self._db.sql(_ALERT_UPSERT), rows)

    def update_alerts(self, states: Sequence[AlertState], gone: Sequence[str], now: float | None = None) -> None:
        """Store what changed in the manager (``AlertManager.changes``): upsert
        ``states``, delete the fingerprints ``gone``. In transactions of
        ``_CHUNK`` rows, so a flood does not hold the other writers for long:
        each row is one alert's whole state, and every chunk is committed
        after the notifications it records were written to the outbox."""
        now = time.time() if now is None else now
        for i in range(0, len(gone), _CHUNK):
            self.delete_alerts(gone[i : i + _CHUNK])
        for i in range(0, len(states), _CHUNK):
            rows = _alert_rows(states[i : i + _CHUNK], now)
            with self._db.txn("save of alerts") as cur:
                cur.executemany(self._db.sql(_ALERT_UPSERT), rows)

    def delete_alerts(self, fingerprints: Sequence[str]) -> int:
        """Forget these alerts; returns how many there were."""
        if not fingerprints:
            return 0
        deleted = 0
        with self._db.txn("delete of alerts") as cur:
            for i in range(0, len(fingerprints), _CHUNK):
                chunk = list(fingerprints[i : i + _CHUNK])
                cur.execute(
                    self._db.sql(f"DELETE FROM alerts WHERE fingerprint IN ({', '.join('?' * len(chunk))})"), chunk
                )
                deleted += int(cur.rowcount or 0)
        return deleted

    def load_alerts(self) -> list[AlertState]:
        """Every stored alert with who is owed its "resolved" (for ``AlertManager.restore``)."""
        return self.list_alerts()

    def list_alerts(self, status: AlertStatus | str | None = None) -> list[AlertState]:
        """Stored alerts, oldest start first; only those in ``status`` if given.

        Raises:
            ConfigError: ``status`` is not an alert status.
        """
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
        if status is None:
            return _states(self._db.read(sql + " ORDER BY starts_at, fingerprint"))
        else:
            try:
                wanted = AlertStatus(status).value
            except ValueError:
                raise ConfigError(
                    f"alert status {status!r}: use one of {', '.join(s.value for s in AlertStatus)}"
                ) from None
            return _states(self._db.read(sql + " WHERE status = ? ORDER BY starts_at, fingerprint", (wanted,)))

    def alerts_stored_since(self, since: float, *, besides: Sequence[float] = ()) -> list[tuple[float, AlertState]]:
        """The alerts stored (by anyone) after ``since``, with when, oldest
        first; rows stored at one of the times ``besides`` are left out (a
        server's own saves: it knows those)."""
        rows = self._db.read(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE updated_at > ? ORDER BY updated_at", (since,))
        mine = set(besides)
        rows = [r for r in rows if float(r[10]) not in mine]
        return list(zip((float(r[10]) for r in rows), _states(rows)))

    # ---- silences --------------------------------------------------------------
    def add_silence(self, silence: Silence, now: float | None = None) -> None:
        """Keep a silence; the same id replaces it. ``now`` stamps it as
        changed, for :meth:`silences_changed_since`."""
        now = time.time() if now is None else now
        matchers = _enc.encode([matcher_text(m) for m in silence.matchers]).decode()
        self._db.write(
            f"INSERT INTO silences ({_SILENCE_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, starts_at = excluded.starts_at, "
            "ends_at = excluded.ends_at, created_by = excluded.created_by, comment = excluded.comment, "
            "updated_at = excluded.updated_at",
            (
                silence.id,
                matchers,
                silence.starts_at,
                silence.ends_at,
                _text(silence.created_by),
                _text(silence.comment),
                now,
            ),
        )

    def list_silences(self, *, active_at: float | None = None) -> list[Silence]:
        """Every silence, expired ones included (or only those active at
        ``active_at``), by start."""
        if active_at is None:
            rows = self._db.read(f"SELECT {_SILENCE_COLUMNS} FROM silences ORDER BY starts_at, id")
        else:
            rows = self._db.read(
                f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE starts_at <= ? AND ends_at > ? ORDER BY starts_at, id",
                (active_at, active_at),
            )
        return _silences(rows)

    def silences_changed_since(self, ts: float) -> list[Silence]:
        """Silences added, replaced or expired at ``ts`` or later (by the
        writer's ``now``), oldest change first."""
        rows = self._db.read(
            f"SELECT {_SILENCE_COLUMNS} FROM silences WHERE updated_at >= ? ORDER BY updated_at, id", (ts,)
        )
        return _silences(rows)

    def expire_silence(self, silence_id: str, now: float | None = None) -> bool:
        """End a silence at ``now``. One that has not started yet is kept (so
        other processes see the change) but made to start and end at ``now``,
        as Alertmanager does: it never mutes anything and lists as expired.
        False when there is no such silence or it has ended already."""
        now = time.time() if now is None else now
        with self._db.txn("expiry of a silence") as cur:
            cur.execute(self._db.sql("SELECT starts_at FROM silences WHERE id = ? AND ends_at > ?"), (silence_id, now))
            row = cur.fetchone()
            if row is None:
                return False
            start = min(float(row[0]), now)
            cur.execute(
                self._db.sql("UPDATE silences SET starts_at = ?, ends_at = ?, updated_at = ? WHERE id = ?"),
                (start, now, now, silence_id),
            )
        return True

    # ---- outbox ----------------------------------------------------------------
    def enqueue_notifications(self, items: Sequence[Outgoing], now: float | None = None) -> list[int]:
        """Write notifications to the outbox in one transaction, committed
        when this returns: the caller's acknowledgement point. An idempotency
        key already stored (in any state) is not stored again. Returns each
        item's outbox id (the existing row's for a repeat). A notification is
        due from ``now``."""
        if not items:
            return []
        now = time.time() if now is None else now
        keys = list(dict.fromkeys(it.idempotency_key for it in items))
        ids: dict[str, int] = {}
        with self._db.txn("write to the outbox") as cur:
            # ids come from a sequence (PostgreSQL): without turns, a later id could
            # commit first and be sent before an earlier one of the same receiver
            self._db.dialect.take_turn(cur, _OUTBOX_LOCK)
            cur.executemany(
                self._db.sql(
                    "INSERT INTO outbox (receiver, idempotency_key, body, created_at, next_attempt_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING"
                ),
                [(it.receiver, it.idempotency_key, it.body.decode(), now, now) for it in items],
            )
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i : i + _CHUNK]
                cur.execute(
                    self._db.sql(
                        f"SELECT idempotency_key, id FROM outbox WHERE idempotency_key IN "
                        f"({', '.join('?' * len(chunk))})"
                    ),
                    chunk,
                )
                ids.update((k, int(v)) for k, v in cur.fetchall())
        return [ids[it.idempotency_key] for it in items]

    def due_notifications(
        self, now: float, limit: int = 100, *, receiver: str | None = None, skip_prefix: str | None = None
    ) -> list[OutboxItem]:
        """Per receiver (or for ``receiver`` only; those not named
        ``skip_prefix``...) its oldest pending notification, if that one is
        due at ``now``; oldest first."""
        only = "AND receiver = ? " if receiver is not None else ""
        params: list[Any] = [receiver] if receiver is not None else []
        if skip_prefix is not None:
            only += "AND receiver NOT LIKE ? ESCAPE '\\' "
            params.append(like_escape(skip_prefix) + "%")
        rows = self._db.read(
            f"SELECT o.{_OUTBOX_COLUMNS.replace(', ', ', o.')} FROM outbox o JOIN ("
            f"SELECT MIN(id) AS head FROM outbox WHERE state = 'pending' {only}GROUP BY receiver"
            ") h ON o.id = h.head WHERE o.next_attempt_at <= ? ORDER BY o.id LIMIT ?",
            [*params, now, limit],
        )
        return [_item(r) for r in rows]

    def claim_notification(self, item: OutboxItem, now: float, until: float) -> OutboxItem | None:
        """Take ``item`` for one attempt: nobody else finds it due before
        ``until`` (the lease, longer than any send may take). Returns the
        item with its attempt number, or None when it is no longer pending
        and due as read (someone else claimed or settled it)."""
        changed = self._db.write(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? "
            "WHERE id = ? AND state = 'pending' AND attempts = ? AND next_attempt_at <= ?",
            (until, item.id, item.attempts, now),
        )
        return replace(item, attempts=item.attempts + 1, next_attempt_at=until) if changed == 1 else None

    def mark_sent(self, item: OutboxItem, now: float, about: About) -> Settled:
        """The claimed attempt delivered ``item``: it is sent (whoever claimed
        it last), the attempt is logged ``ok``, and its receiver is not broken."""
        with self._db.txn("update of the outbox") as cur:
            cur.execute(
                self._db.sql("UPDATE outbox SET state = 'sent', last_error = NULL WHERE id = ? AND state = 'pending'"),
                (item.id,),
            )
            moved = cur.rowcount == 1
            self._log(cur, item, now, "ok", None, about)
            cur.execute(self._db.sql("DELETE FROM receivers WHERE name = ?"), (item.receiver,))
            return Settled(moved, recovered=cur.rowcount == 1)

    def mark_retry(self, item: OutboxItem, now: float, next_at: float, error: str, about: About) -> Settled:
        """The claimed attempt failed for now: try again at ``next_at``; logged ``temporary``."""
        with self._db.txn("update of the outbox") as cur:
            cur.execute(
                self._db.sql(
                    "UPDATE outbox SET next_attempt_at = ?, last_error = ? "
                    "WHERE id = ? AND state = 'pending' AND attempts = ?"
                ),
                (next_at, _text(error), item.id, item.attempts),
            )
            moved = cur.rowcount == 1
            self._log(cur, item, now, "temporary", error, about)
            return Settled(moved)

    def mark_failed(
        self, item: OutboxItem, now: float, error: str, about: About, *, break_receiver: bool = True
    ) -> Settled:
        """The claimed attempt failed for good: ``item`` will not be sent;
        logged ``permanent``. With ``break_receiver`` its receiver is marked
        broken (``Settled.broke`` when it was not already)."""
        with self._db.txn("update of the outbox") as cur:
            cur.execute(
                self._db.sql(
                    "UPDATE outbox SET state = 'failed', last_error = ? "
                    "WHERE id = ? AND state = 'pending' AND attempts = ?"
                ),
                (_text(error), item.id, item.attempts),
            )
            moved = cur.rowcount == 1
            self._log(cur, item, now, "permanent", error, about)
            broke = moved and break_receiver and self._break(cur, item.receiver, error, now)
            return Settled(moved, broke=broke)

    def _log(self, cur: Any, item: OutboxItem, now: float, result: str, error: str | None, about: About) -> None:
        cur.execute(
            self._db.sql(
                "INSERT INTO notification_log (outbox_id, receiver, group_key, fingerprints, at, attempt, result, "
                "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                item.id,
                item.receiver,
                _text(about.group_key),
                _enc.encode(list(about.fingerprints)).decode(),
                now,
                item.attempts,
                result,
                _opt_text(error),
            ),
        )

    def pending_count(self, receiver: str | None = None) -> int:
        """Notifications not yet delivered nor given up (in all, or for ``receiver``)."""
        if receiver is None:
            rows = self._db.read("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
        else:
            rows = self._db.read("SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND receiver = ?", (receiver,))
        return int(rows[0][0])

    def outbox_items(
        self, *, receiver: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[OutboxItem]:
        """Outbox rows, oldest first, filtered by receiver and state."""
        where, params = [], []  # type: list[str], list[Any]
        if receiver is not None:
            where.append("receiver = ?")
            params.append(receiver)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._db.read(f"SELECT {_OUTBOX_COLUMNS} FROM outbox {clause}ORDER BY id LIMIT ?", [*params, limit])
        return [_item(r) for r in rows]

    def notification_log(self, *, receiver: str | None = None, limit: int = 100) -> list[LogRow]:
        """Delivery attempts, newest first."""
        if receiver is None:
            rows = self._db.read(f"SELECT {_LOG_COLUMNS} FROM notification_log ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.read(
                f"SELECT {_LOG_COLUMNS} FROM notification_log WHERE receiver = ? ORDER BY id DESC LIMIT ?",
                (receiver, limit),
            )
        return [
            LogRow(int(r[0]), int(r[1]), r[2], r[3], tuple(_str_list.decode(r[4])), float(r[5]), int(r[6]), r[7], r[8])
            for r in rows
        ]

    def prune_alerting(self, older_than: float) -> int:
        """Delete sent and failed outbox rows created before ``older_than``,
        and log rows of attempts before it; pending rows always stay.
        Returns the rows deleted."""
        with self._db.txn("prune of the outbox") as cur:
            cur.execute(self._db.sql("DELETE FROM outbox WHERE state <> 'pending' AND created_at < ?"), (older_than,))
            n = int(cur.rowcount or 0)
            cur.execute(self._db.sql("DELETE FROM notification_log WHERE at < ?"), (older_than,))
            return n + int(cur.rowcount or 0)

    # ---- receivers -------------------------------------------------------------
    def set_receiver_broken(self, name: str, reason: str, now: float | None = None) -> bool:
        """Mark ``name`` broken; True when it was not already (then
        ``broken_since`` is ``now``; otherwise only the reason changes)."""
        now = time.time() if now is None else now
        with self._db.txn("update of a receiver") as cur:
            return self._break(cur, name, reason, now)

    def _break(self, cur: Any, name: str, reason: str, now: float) -> bool:
        cur.execute(
            self._db.sql(
                "INSERT INTO receivers (name, broken_since, broken_reason) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING"
            ),
            (name, now, _text(reason)),
        )
        if cur.rowcount == 1:
            return True
        cur.execute(self._db.sql("UPDATE receivers SET broken_reason = ? WHERE name = ?"), (_text(reason), name))
        return False

    def clear_receiver_broken(self, name: str) -> bool:
        """``name`` works again; True when it was broken."""
        return self._db.write("DELETE FROM receivers WHERE name = ?", (name,)) == 1

    def broken_receivers(self) -> dict[str, tuple[float, str]]:
        """Broken receivers: name -> (since, reason)."""
        return {
            r[0]: (float(r[1]), r[2])
            for r in self._db.read("SELECT name, broken_since, broken_reason FROM receivers ORDER BY name")
        }


def _states(rows: Sequence[Sequence[Any]]) -> list[AlertState]:
    return [
        AlertState(
            Alert(
                _str_map.decode(r[1]),
                _str_map.decode(r[2]),
                _SEVERITIES[r[3]],
                r[4],
                float(r[6]),
                None if r[7] is None else float(r[7]),
                _STATUSES[r[5]],
                r[8],
            ),
            tuple(_str_list.decode(r[9])),
        )
        for r in rows
    ]


def _alert_rows(states: Sequence[AlertState], now: float) -> list[tuple[Any, ...]]:
    return [
        (
            s.alert.fingerprint,
            _enc.encode(dict(s.alert.labels)).decode(),
            _enc.encode(dict(s.alert.annotations)).decode(),
            s.alert.severity.value,
            _text(s.alert.source),
            s.alert.status.value,
            s.alert.starts_at,
            s.alert.ends_at,
            _opt_text(s.alert.link),
            _enc.encode(list(s.told)).decode(),
            now,
        )
        for s in states
    ]


def _item(r: Sequence[Any]) -> OutboxItem:
    body = r[3]
    return OutboxItem(
        int(r[0]),
        r[1],
        r[2],
        body.encode() if isinstance(body, str) else bytes(body),
        float(r[4]),
        int(r[5]),
        float(r[6]),
        r[7],
        r[8],
    )


def _silences(rows: Sequence[Sequence[Any]]) -> list[Silence]:
    """The silences of ``rows``, but those whose matchers no longer read
    (a regex stored before regexes were RE2's that RE2 refuses): each is
    left out with a warning saying which and why, the others are kept."""
    out = []
    for r in rows:
        try:
            out.append(
                Silence(
                    r[0], tuple(parse_matcher(m) for m in _str_list.decode(r[1])), float(r[2]), float(r[3]), r[4], r[5]
                )
            )
        except ConfigError as exc:
            _log.warning(
                "silence %s is left out (it mutes nothing): %s; `flowsight silence expire %s` ends it", r[0], exc, r[0]
            )
    return out
