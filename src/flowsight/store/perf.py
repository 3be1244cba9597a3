"""The performance time series (migration 8): :class:`PerfSamples`.

A sample is (ts, scope kind, scope id, metric, value): one metric of a host,
a run or a workflow (:class:`flowsight.model.performance.Scope`) at ``ts``.
``perf_samples`` keeps them raw; ``perf_rollups`` keeps, per scope, metric
and minute, their count, sum, min and max, folded in by the same transaction
that stores the raw rows. Raw samples are kept for a short while (the
server's retention), rollups for long: a query of a recent range can have
every sample, an older or longer one gets rollups in buckets of whole
minutes.

The store does not know how long raw samples are kept: the caller, which
purges them (:meth:`PerfSamples.purge_samples`), says where they begin when it
queries (``raw_since``).

Timestamps are seconds since the epoch. A minute starts at a multiple of 60
of them, a bucket of ``step`` seconds at a multiple of ``step``.

Raises (every method):
    StoreError: the database failed; nothing of the call was written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

from flowsight.model.performance import SamplePoint
from flowsight.store.database import Database

#: the most points one query returns
MAX_POINTS = 10_000

_SERIES = "scope_kind = ? AND scope_id = ? AND metric = ?"
FOLD = (
    "ON CONFLICT (scope_kind, scope_id, metric, minute) DO UPDATE SET count = perf_rollups.count + excluded.count, "
    "sum = perf_rollups.sum + excluded.sum, min = {lo}(perf_rollups.min, excluded.min), "
    "max = {hi}(perf_rollups.max, excluded.max)"
)
ROLLUP_COLUMNS = "minute, scope_kind, scope_id, metric, count, sum, min, max"
# A skip scan: per metric of the scope, one index probe finds the next
# metric, one its newest ts, one that sample's value; the scope's samples
# are not read through.
_LATEST = """WITH RECURSIVE m(metric) AS (
        SELECT MIN(metric) FROM perf_samples WHERE scope_kind = ? AND scope_id = ?
        UNION ALL
        SELECT (SELECT MIN(metric) FROM perf_samples WHERE scope_kind = ? AND scope_id = ? AND metric > m.metric)
        FROM m WHERE m.metric IS NOT NULL),
    t(metric, ts) AS (
        SELECT metric, (SELECT MAX(ts) FROM perf_samples WHERE scope_kind = ? AND scope_id = ? AND metric = m.metric)
        FROM m WHERE metric IS NOT NULL)
    SELECT metric, ts, (SELECT value FROM perf_samples
        WHERE scope_kind = ? AND scope_id = ? AND metric = t.metric AND ts = t.ts LIMIT 1) FROM t"""
# by key: a rollup's ctid changes when a late sample folds into it
_PURGE_ROLLUPS = (
    "DELETE FROM perf_rollups WHERE (scope_kind, scope_id, metric, minute) IN ("
    "SELECT scope_kind, scope_id, metric, minute FROM perf_rollups WHERE minute < ? LIMIT ?)"
)


def _text(kind: str) -> str:
    # a ScopeKind is a str, but str() of it and psycopg's enum adapter give its name
    return str(kind.value) if isinstance(kind, Enum) else kind


def _check_step(step: float) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or step % 60:
        raise ValueError(
            f"step {step!r}: must be a positive multiple of 60 seconds (samples are rolled up "
            "per minute), e.g. 60, 300 or 3600"
        )
    return int(step)


class PerfSamples:
    """The performance time series of a store (``store.perf``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save_samples(self, rows: Sequence[tuple[float, str, str, str, float]]) -> None:
        """Store ``rows`` of (ts, scope_kind, scope_id, metric, value) and
        fold them into their minutes' rollups, in one transaction. A row
        whose ts or value is NaN or infinite is skipped."""
        raw: list[tuple[float, str, str, str, float]] = []
        minutes: dict[tuple[str, str, str, int], list[float]] = {}  # -> [count, sum, min, max]
        for ts, kind, scope_id, metric, value in rows:
            ts, value = float(ts), float(value)
            if not (math.isfinite(ts) and math.isfinite(value)):
                continue
            kind = _text(kind)
            raw.append((ts, kind, scope_id, metric, value))
            key = (kind, scope_id, metric, int(ts // 60) * 60)
            acc = minutes.get(key)
            if acc is None:
                minutes[key] = [1, value, value, value]
            else:
                acc[0] += 1
                acc[1] += value
                acc[2] = min(acc[2], value)
                acc[3] = max(acc[3], value)
        if not raw:
            return
        # in key order, so two writers of the same rollups lock them in the same order
        rollups = [(k[3], k[0], k[1], k[2], int(a[0]), a[1], a[2], a[3]) for k, a in sorted(minutes.items())]
        with self._db.txn("save of performance samples") as cur:
            self._db.dialect.insert_samples(cur, raw, rollups)

    def query_samples(
        self,
        scope_kind: str,
        scope_id: str,
        metric: str,
        since: float,
        until: float | None = None,
        step: float | None = None,
        *,
        raw_since: float | None = None,
    ) -> list[SamplePoint]:
        """The series of ``metric`` of a scope from ``since`` to ``until``
        (None: no end), in time order.

        Raw samples with ``ts`` in [since, until) when ``step`` is None and
        the range is within the raw samples: ``raw_since`` is where the
        caller's retention has them begin (None: they are all kept). Else
        rollups in buckets of ``step`` seconds (default 60): each bucket
        that overlaps the range, of the minutes that start before
        ``until``; ``ts`` is the bucket's start (so the first may be
        before ``since``).

        Raises:
            ValueError: ``step`` is not a positive multiple of 60, or the
                range holds more than :data:`MAX_POINTS` points (the
                message says which step would do).
        """
        series = (_text(scope_kind), scope_id, metric)
        if step is None and (raw_since is None or since >= raw_since):
            sql = f"SELECT ts, value FROM perf_samples WHERE {_SERIES} AND ts >= ?"
            params: list[Any] = [*series, since]
            if until is not None:
                sql += " AND ts < ?"
                params.append(until)
            rows = self._db.read(sql + " ORDER BY ts LIMIT ?", (*params, MAX_POINTS + 1))
            self._check_points(rows, series, since, until)
            return [SamplePoint(float(ts), float(v), float(v), float(v), 1) for ts, v in rows]
        step = 60 if step is None else _check_step(step)
        sql = (
            f"SELECT minute / ? * ? AS bucket, SUM(count), SUM(sum), MIN(min), MAX(max) FROM perf_rollups "
            f"WHERE {_SERIES} AND minute >= ?"
        )
        params = [step, step, *series, int(since // step) * step]
        if until is not None:
            sql += " AND minute < ?"
            params.append(until)
        rows = self._db.read(sql + " GROUP BY bucket ORDER BY bucket LIMIT ?", (*params, MAX_POINTS + 1))
        self._check_points(rows, series, since, until)
        return [SamplePoint(float(b), float(s) / int(n), float(lo), float(hi), int(n)) for b, n, s, lo, hi in rows]

    @staticmethod
    def _check_points(rows: list[Any], series: tuple[str, str, str], since: float, until: float | None) -> None:
        if len(rows) <= MAX_POINTS:
            return
        kind, scope_id, metric = series
        hint = "a larger step (a multiple of 60 seconds) or a shorter range"
        if until is not None:
            hint = f"step={math.ceil((until - since) / MAX_POINTS / 60) * 60} or more, or a shorter range"
        raise ValueError(
            f"{metric} of {kind}:{scope_id} from {since} to {'now' if until is None else until}: more than "
            f"{MAX_POINTS} points; ask for {hint}"
        )

    def sample_scopes(self, since: float) -> list[tuple[str, str, str]]:
        """(scope_kind, scope_id, metric) of every series with samples in
        the minute holding ``since`` or later, sorted."""
        rows = self._db.read(
            "SELECT DISTINCT scope_kind, scope_id, metric FROM perf_rollups WHERE minute >= ?", (int(since // 60) * 60,)
        )
        return sorted((str(k), str(i), str(m)) for k, i, m in rows)  # by code point, whatever the collation

    def latest_samples(self, scope_kind: str, scope_id: str) -> dict[str, tuple[float, float]]:
        """metric -> (ts, value) of the newest raw sample of each metric of
        the scope (none for a metric whose raw samples were all purged)."""
        rows = self._db.read(_LATEST, (_text(scope_kind), scope_id) * 4)
        return {str(m): (float(ts), float(v)) for m, ts, v in rows}

    def purge_samples(self, raw_before: float, rollups_before: float, batch: int = 10_000) -> int:
        """Delete the raw samples with ``ts`` before ``raw_before`` and the
        rollups of minutes that start before ``rollups_before``, ``batch``
        rows per transaction (writers wait for one batch at most); returns
        how many rows were deleted."""
        if batch < 1:
            raise ValueError(f"batch {batch!r}: must be at least 1")
        return self._purge(self._db.sql(self._db.dialect.purge_samples), raw_before, batch) + self._purge(
            self._db.sql(_PURGE_ROLLUPS), rollups_before, batch
        )

    def _purge(self, sql: str, before: float, batch: int) -> int:
        total = 0
        while True:
            with self._db.txn("purge of performance samples") as cur:
                cur.execute(sql, (before, batch))
                n = int(cur.rowcount or 0)
            total += n
            if n < batch:
                return total
