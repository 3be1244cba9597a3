"""The fault history (migration 6) and the registered outputs (migration 7):
:class:`Faults`.

One row per fault from the moment it is declared until its detector passes
again (``resolved_at`` set, then the row is history). At most one row per
fault (detector, kind, target) is open at a time: a partial unique index
settles two monitors declaring the same fault at once; the second gets the
first's record. ``fault_runs`` ties a fault to the runs it hurt, so a run's
view can say what broke around it. ``outputs`` keeps, per path, the last
registration of a file a run wrote (an ``output`` event, ``Run.output``):
the integrity detector checks the file against it.

Raises (every method):
    StoreError: the database failed; nothing of the call was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from flowsight.model.alerts import Severity
from flowsight.model.runs.events import Event
from flowsight.model.faults import Fault, FaultRecord, FaultStatus, fault_type
from flowsight.store.database import Database

_enc = msgspec.json.Encoder()
_COLUMNS = "id, detector, kind, target, message, evidence, workflows, runs, severity, opened_at, resolved_at"
_OPEN = "resolved_at IS NULL"


def _row_to_record(r: Sequence[Any]) -> FaultRecord:
    fault = Fault(
        type=fault_type(r[2], r[3]),
        message=r[4],
        detector=r[1],
        evidence=msgspec.json.decode(r[5]) if r[5] else {},
        workflows=tuple(msgspec.json.decode(r[6])) if r[6] else (),
        runs=tuple(msgspec.json.decode(r[7])) if r[7] else (),
    )
    return FaultRecord(
        fault=fault,
        timestamp=float(r[9]),
        severity=Severity(r[8]),
        status=FaultStatus.OPEN if r[10] is None else FaultStatus.RESOLVED,
        resolved_at=None if r[10] is None else float(r[10]),
        id=int(r[0]),
    )


class Faults:
    """The fault history and the registered outputs of a store (``store.faults``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def open_fault(self, fault: Fault, severity: Severity, at: float) -> tuple[FaultRecord, bool]:
        """Declare ``fault`` at ``at``: its open record, and whether this call
        opened it (False: it was open already, and is returned as stored)."""
        ev = _enc.encode(dict(fault.evidence)).decode()
        with self._db.txn("record of a fault") as cur:
            cur.execute(
                self._db.sql(
                    "INSERT INTO faults (fault_key, detector, kind, target, message, evidence, workflows, runs, "
                    "severity, opened_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    f"ON CONFLICT (fault_key) WHERE {_OPEN} DO NOTHING RETURNING id"
                ),
                (
                    fault.key,
                    fault.detector,
                    fault.kind.value,
                    fault.target,
                    fault.message,
                    ev,
                    _enc.encode(list(fault.workflows)).decode(),
                    _enc.encode(list(fault.runs)).decode(),
                    severity.value,
                    at,
                    at,
                ),
            )
            row = cur.fetchone()
            if row is not None:
                self._tie_runs(cur, int(row[0]), fault.runs)
                return FaultRecord(fault, at, severity, id=int(row[0])), True
            cur.execute(self._db.sql(f"SELECT {_COLUMNS} FROM faults WHERE fault_key = ? AND {_OPEN}"), (fault.key,))
            return _row_to_record(cur.fetchone()), False

    def update_fault(self, record: FaultRecord, fault: Fault, severity: Severity, at: float) -> FaultRecord:
        """An open fault seen again at ``at``: its latest message, evidence,
        runs and severity (the runs it hurt only grow)."""
        assert record.id is not None
        runs = tuple(dict.fromkeys((*record.fault.runs, *fault.runs)))
        workflows = tuple(dict.fromkeys((*record.fault.workflows, *fault.workflows)))
        with self._db.txn("update of a fault") as cur:
            cur.execute(
                self._db.sql(
                    "UPDATE faults SET message = ?, evidence = ?, workflows = ?, runs = ?, severity = ?, "
                    f"last_seen_at = ? WHERE id = ? AND {_OPEN}"
                ),
                (
                    fault.message,
                    _enc.encode(dict(fault.evidence)).decode(),
                    _enc.encode(list(workflows)).decode(),
                    _enc.encode(list(runs)).decode(),
                    severity.value,
                    at,
                    record.id,
                ),
            )
            self._tie_runs(cur, record.id, [r for r in runs if r not in record.fault.runs])
        merged = Fault(fault.type, fault.message, fault.detector, fault.evidence, workflows, runs)
        return FaultRecord(merged, record.timestamp, severity, id=record.id)

    def resolve_fault(self, record: FaultRecord, at: float) -> FaultRecord | None:
        """Close an open fault at ``at``; None when it was closed already
        (by another monitor)."""
        with self._db.txn("resolution of a fault") as cur:
            cur.execute(self._db.sql(f"UPDATE faults SET resolved_at = ? WHERE id = ? AND {_OPEN}"), (at, record.id))
            if not cur.rowcount:
                return None
        return FaultRecord(record.fault, record.timestamp, record.severity, FaultStatus.RESOLVED, at, record.id)

    def open_faults(self) -> list[FaultRecord]:
        """Every open fault, oldest first."""
        return [
            _row_to_record(r)
            for r in self._db.read(f"SELECT {_COLUMNS} FROM faults WHERE {_OPEN} ORDER BY opened_at, id")
        ]

    def list_faults(
        self,
        *,
        status: FaultStatus | None = None,
        since: float | None = None,
        detector: str | None = None,
        kind: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[FaultRecord]:
        """Faults newest first: open ones, and resolved ones that ended after
        ``since`` (every resolved one when None)."""
        where: list[str] = []
        params: list[Any] = []
        if status is FaultStatus.OPEN:
            where.append(_OPEN)
        elif status is FaultStatus.RESOLVED:
            where.append("resolved_at IS NOT NULL")
        if since is not None:
            where.append(f"({_OPEN} OR resolved_at >= ?)")
            params.append(since)
        if detector is not None:
            where.append("detector = ?")
            params.append(detector)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if run_id is not None:
            where.append("id IN (SELECT fault_id FROM fault_runs WHERE run_id = ?)")
            params.append(run_id)
        sql = f"SELECT {_COLUMNS} FROM faults"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        return [_row_to_record(r) for r in self._db.read(sql, (*params, limit))]

    def get_fault(self, fault_id: int) -> FaultRecord | None:
        """The fault with this id, open or resolved; None when there is none."""
        rows = self._db.read(f"SELECT {_COLUMNS} FROM faults WHERE id = ?", (fault_id,))
        return _row_to_record(rows[0]) if rows else None

    def fault_openings(self, key: str, since: float) -> int:
        """How many times the fault ``key`` was declared since ``since``."""
        return int(
            self._db.read("SELECT COUNT(*) FROM faults WHERE fault_key = ? AND opened_at >= ?", (key, since))[0][0]
        )

    def _tie_runs(self, cur: Any, fault_id: int, runs: Sequence[str]) -> None:
        if runs:
            cur.executemany(
                self._db.sql("INSERT INTO fault_runs (fault_id, run_id) VALUES (?, ?) ON CONFLICT DO NOTHING"),
                [(fault_id, r) for r in runs],
            )

    # ---- registered outputs ---------------------------------------------------------
    def registered_outputs(self, under: Sequence[str] | None = None) -> dict[str, tuple[str, int | None, float | None]]:
        """path -> (sha256, size, mtime) of the registered outputs (those
        under one of the folders or files ``under`` when given)."""
        rows = self._db.read("SELECT path, sha256, size, mtime FROM outputs ORDER BY path")
        out: dict[str, tuple[str, int | None, float | None]] = {}
        for path, digest, size, mtime in rows:
            if under is None or any(path == u or path.startswith(u.rstrip("/") + "/") for u in under):
                out[path] = (digest, None if size is None else int(size), None if mtime is None else float(mtime))
        return out


def save_outputs(db: Database, cur: Any, events: Sequence[Event]) -> None:
    """Inside the events' transaction: each ``output`` event's file, a
    later registration of a path replacing an earlier one."""
    rows = [
        (
            e.attrs["path"],
            e.attrs["sha256"],
            _whole(e.attrs.get("size")),
            _num(e.attrs.get("mtime")),
            e.workflow,
            e.run_id,
            e.step,
            e.ts,
            e.id,
        )
        for e in events
    ]
    cur.executemany(
        db.sql(
            "INSERT INTO outputs (path, sha256, size, mtime, workflow, run_id, step, recorded_at, event_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256, "
            "size = excluded.size, mtime = excluded.mtime, workflow = excluded.workflow, "
            "run_id = excluded.run_id, step = excluded.step, recorded_at = excluded.recorded_at, "
            "event_id = excluded.event_id WHERE excluded.recorded_at >= outputs.recorded_at"
        ),
        rows,
    )


def _whole(value: Any) -> int | None:
    """A size as the BIGINT column keeps it (checked on the way in: 1024.0 is 1024)."""
    num = _num(value)
    return None if num is None else int(num)


def _num(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
