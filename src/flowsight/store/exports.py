"""Which ended runs an exporter was handed (``store.exports``): the runs
that ended are read from the transitions (each has an id that only grows),
and each batch of them is written to the outbox in the transaction that
marks its runs handed over, so a run is exported once, by one server,
whatever restarts or replicas (its outbox row is then retried until the
exporter's endpoint takes it: :mod:`flowsight.alerting.delivery`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from flowsight.model.runs.state import WorkflowState
from flowsight.store.database import Database

_ENDED = tuple(s.value for s in WorkflowState if s.terminal)


class Exports:
    """Ended runs, and the ones each exporter was handed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def last_transition(self) -> int:
        """The id of the newest transition (0: none)."""
        return int(self._db.read("SELECT COALESCE(MAX(id), 0) FROM transitions")[0][0])

    def ended_after(self, after: int, limit: int = 500, *, upto: int | None = None) -> tuple[list[str], int]:
        """Runs whose transition into an end state has an id above ``after``
        (and at most ``upto``; at most ``limit`` transitions read), and the
        last transition id read (``after`` when none was)."""
        bound = "AND id <= ? " if upto is not None else ""
        params = (after, upto, limit) if upto is not None else (after, limit)
        rows = self._db.read(
            f"SELECT id, run_id, new_state, applied FROM transitions WHERE id > ? {bound}ORDER BY id LIMIT ?", params
        )
        runs = [r[1] for r in rows if r[2] in _ENDED and r[3]]
        return list(dict.fromkeys(runs)), max((int(r[0]) for r in rows), default=after)

    def hand_over(self, exporter: str, runs: Sequence[str], now: float, due_at: float) -> list[str]:
        """Mark ``runs`` handed to ``exporter`` and write those not handed
        before to the outbox as one item, due at ``due_at``, in one
        transaction; returns them."""
        if not runs:
            return []
        new: list[str] = []
        mark = self._db.sql(
            "INSERT INTO exported_runs (exporter, run_id, at) VALUES (?, ?, ?) ON CONFLICT (exporter, run_id) DO NOTHING"
        )
        with self._db.txn("hand-over of ended runs") as cur:
            for run_id in runs:
                cur.execute(mark, (exporter, run_id, now))
                if cur.rowcount == 1:
                    new.append(run_id)
            if new:
                key = f"{exporter}:{hashlib.sha256(chr(0).join(new).encode()).hexdigest()[:32]}"
                cur.execute(
                    self._db.sql(
                        "INSERT INTO outbox (receiver, idempotency_key, body, created_at, next_attempt_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING"
                    ),
                    (exporter, key, msgspec.json.encode({"runs": new}).decode(), now, due_at),
                )
        return new

    def purge(self, before_ts: float) -> int:
        """Forget hand-overs older than ``before_ts`` (retention)."""
        with self._db.txn("purge of exported runs") as cur:
            cur.execute(self._db.sql("DELETE FROM exported_runs WHERE at < ?"), (before_ts,))
            return int(cur.rowcount or 0)


def decode_runs(body: bytes) -> list[str]:
    """The run ids of an outbox item :meth:`Exports.hand_over` wrote.

    Raises:
        ValueError: it is not such an item.
    """
    data = msgspec.json.decode(body)
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        raise ValueError("not an export item: a JSON object with 'runs', a list of run ids")
    return runs
