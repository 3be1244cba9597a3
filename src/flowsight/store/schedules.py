"""``store.schedules``: workflows' expectations, their slots' judgements, and
when a server was watching (migration 14).

* ``schedules``: one row per workflow with expectations (``spec``: the
  fields as JSON, ``source``: ``config`` for ``flowsight.toml``'s, ``api``
  for those set through the API or the SDK; ``since``: when first known,
  slots before it are not judged).
* ``schedule_slots``: each judged slot, as last judged (status and the
  whole judgement as JSON), by (workflow, slot instant).
* ``watch_spans``: per server process, from when to when it watched (its
  heartbeat): what lies between two spans nobody watched.

Raises (every method):
    StoreError: the database failed; nothing of the call was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from flowsight.model.schedules.judge import SlotJudgement
from flowsight.store.database import Database

#: a changed spec starts afresh (since: now); the same one set again keeps its since
_SET = (
    "INSERT INTO schedules (workflow, spec, source, since, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (workflow) DO UPDATE SET since = CASE WHEN schedules.spec = excluded.spec "
    "THEN schedules.since ELSE excluded.since END, spec = excluded.spec, source = excluded.source, "
    "updated_at = excluded.updated_at"
)
_SLOT = (
    "INSERT INTO schedule_slots (workflow, slot_at, status, doc, judged_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (workflow, slot_at) DO UPDATE SET status = excluded.status, doc = excluded.doc, "
    "judged_at = excluded.judged_at"
)
_WATCH = (
    "INSERT INTO watch_spans (process, started_at, until) VALUES (?, ?, ?) "
    "ON CONFLICT (process) DO UPDATE SET until = excluded.until"
)
_encode = msgspec.json.Encoder().encode
_CHUNK = 1000  # workflows a read names at once
_slot_decoder = msgspec.json.Decoder(SlotJudgement)


@dataclass(frozen=True, slots=True)
class StoredExpectations:
    workflow: str
    spec: dict[str, Any]
    source: str
    since: float
    updated_at: float


class Schedules:
    """Expectations, slot judgements, watch spans (``store.schedules``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- expectations ------------------------------------------------------------
    def expectations(self) -> list[StoredExpectations]:
        rows = self._db.read("SELECT workflow, spec, source, since, updated_at FROM schedules ORDER BY workflow")
        return [StoredExpectations(r[0], msgspec.json.decode(r[1]), r[2], float(r[3]), float(r[4])) for r in rows]

    def version(self) -> tuple[int, float]:
        """(rows, latest change): what changes whenever an expectation is set or removed."""
        row = self._db.read("SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM schedules")[0]
        return int(row[0]), float(row[1])

    def set_expectation(self, workflow: str, spec: Mapping[str, Any], source: str, now: float) -> float:
        """Keep ``spec`` for ``workflow`` (its ``since`` stays when the spec is the same; a changed
        one is judged from ``now``); returns ``since``."""
        with self._db.txn("schedule set") as cur:
            cur.execute(self._db.sql(_SET), (workflow, _encode(spec).decode(), source, now, now))
            cur.execute(self._db.sql("SELECT since FROM schedules WHERE workflow = ?"), (workflow,))
            return float(cur.fetchone()[0])

    def remove_expectation(self, workflow: str) -> bool:
        return self._db.write("DELETE FROM schedules WHERE workflow = ?", (workflow,)) > 0

    def sync_config(self, specs: Mapping[str, Mapping[str, Any]], now: float) -> None:
        """Make the ``config`` rows ``specs`` (a configuration's ``[workflows.NAME]``
        with expectations): set those, remove config rows no longer there. A row
        the configuration names is the configuration's from now on."""
        with self._db.txn("schedule sync") as cur:
            cur.execute(self._db.sql("SELECT workflow, spec, source FROM schedules"))
            have = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
            for wf, (spec, source) in have.items():
                if source == "config" and wf not in specs:
                    cur.execute(self._db.sql("DELETE FROM schedules WHERE workflow = ?"), (wf,))
            for wf, doc in specs.items():
                text = _encode(doc).decode()
                if have.get(wf) != (text, "config"):
                    cur.execute(self._db.sql(_SET), (wf, text, "config", now, now))

    # ---- slots -----------------------------------------------------------------------
    def save_slots(self, slots: Sequence[tuple[str, SlotJudgement]], now: float) -> None:
        """Keep each (workflow, judgement), replacing the slot's earlier one."""
        if not slots:
            return
        rows = [(wf, j.at, j.status, _encode(j).decode(), now) for wf, j in slots]
        with self._db.txn("schedule slots") as cur:
            cur.executemany(self._db.sql(_SLOT), rows)

    def recent_slots(self, workflows: Iterable[str] | None = None, *, per: int = 50) -> dict[str, list[SlotJudgement]]:
        """Each workflow's last ``per`` judged slots, oldest first."""
        out: dict[str, list[SlotJudgement]] = {}
        if workflows is None:
            chunks: list[list[str] | None] = [None]
        else:
            names = sorted(set(workflows))
            chunks = [names[i : i + _CHUNK] for i in range(0, len(names), _CHUNK)]  # SQLite: 32,766 parameters
        for chunk in chunks:
            cond = f"WHERE workflow IN ({', '.join('?' * len(chunk))})" if chunk is not None else ""
            rows = self._db.read(
                "SELECT workflow, doc FROM (SELECT workflow, slot_at, doc, ROW_NUMBER() OVER "
                f"(PARTITION BY workflow ORDER BY slot_at DESC) AS k FROM schedule_slots {cond}) AS recent "
                "WHERE k <= ? ORDER BY workflow, slot_at",
                [*(chunk or []), per],
            )
            for wf, doc in rows:
                out.setdefault(wf, []).append(_slot_decoder.decode(doc))
        return out

    # ---- who was watching ------------------------------------------------------------
    def watching(self, process: str, started_at: float, until: float) -> None:
        """``process`` has been watching from ``started_at`` to ``until`` (its heartbeat)."""
        self._db.write(_WATCH, (process, started_at, until))

    def watch_spans(self, since: float) -> list[tuple[float, float]]:
        """The spans (from, until) of watching that reach past ``since``."""
        rows = self._db.read("SELECT started_at, until FROM watch_spans WHERE until >= ? ORDER BY started_at", (since,))
        return [(float(a), float(b)) for a, b in rows]

    def ever_watched(self) -> bool:
        return bool(self._db.read("SELECT 1 FROM watch_spans LIMIT 1"))

    # ---- retention -------------------------------------------------------------------
    def prune(self, older_than: float) -> int:
        """Forget slots before ``older_than`` and watch spans that ended before it."""
        with self._db.txn("schedule prune") as cur:
            cur.execute(self._db.sql("DELETE FROM schedule_slots WHERE slot_at < ?"), (older_than,))
            n = int(cur.rowcount or 0)
            cur.execute(self._db.sql("DELETE FROM watch_spans WHERE until < ?"), (older_than,))
            return n
