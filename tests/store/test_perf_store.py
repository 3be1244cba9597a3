"""The performance time series on both stores: raw samples and their
1-minute rollups, buckets of a step, the scopes and latest values, purge."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flowsight.model.performance import SamplePoint, ScopeKind
from flowsight.store.migrations import LATEST, MIGRATIONS
from flowsight.store.perf import MAX_POINTS
from flowsight.store.sql import SqlStore


def _cpu(*points: tuple[float, float], run: str = "r1") -> list[tuple[float, str, str, str, float]]:
    return [(ts, "run", run, "cpu_percent", v) for ts, v in points]


def test_the_schema_has_the_performance_samples() -> None:
    assert LATEST >= 8 and any(version == 8 and "performance" in name for version, name, _ in MIGRATIONS)


def test_saved_samples_come_back_raw_in_time_order_within_since_and_until(store: SqlStore) -> None:
    store.perf.save_samples(_cpu((1010.0, 30.0), (1000.0, 10.0), (1005.0, 20.0)))
    store.perf.save_samples(
        [
            (1005.0, "run", "r1", "memory_bytes", 5e8),
            (1005.0, "run", "r2", "cpu_percent", 99.0),
            (1005.0, "host", "r1", "cpu_percent", 98.0),
        ]
    )
    assert store.perf.query_samples("run", "r1", "cpu_percent", 1000.0) == [
        SamplePoint(1000.0, 10.0, 10.0, 10.0, 1),
        SamplePoint(1005.0, 20.0, 20.0, 20.0, 1),
        SamplePoint(1010.0, 30.0, 30.0, 30.0, 1),
    ]
    assert [p.ts for p in store.perf.query_samples(ScopeKind.RUN, "r1", "cpu_percent", 1001.0, 1010.0)] == [1005.0]
    assert store.perf.query_samples("run", "r1", "cpu_percent", 1000.0, raw_since=1000.0)[0].count == 1


def test_rollups_add_up_saves_within_a_minute_and_keep_minutes_apart(store: SqlStore) -> None:
    store.perf.save_samples(_cpu((60.0, 4.0), (70.0, 1.0), (130.0, 7.0)))  # two of one minute in one save
    store.perf.save_samples(_cpu((119.5, 9.0)))
    store.perf.save_samples(_cpu((90.0, 6.0), (179.0, 3.0)))
    assert store.perf.query_samples("run", "r1", "cpu_percent", 60.0, step=60) == [
        SamplePoint(60.0, 5.0, 1.0, 9.0, 4),
        SamplePoint(120.0, 5.0, 3.0, 7.0, 2),
    ]


def test_a_range_older_than_the_raw_samples_is_served_from_the_rollups(store: SqlStore) -> None:
    store.perf.save_samples(_cpu((60.0, 2.0), (61.0, 4.0), (125.0, 8.0)))
    points = store.perf.query_samples("run", "r1", "cpu_percent", 60.0, raw_since=100.0)
    assert points == [SamplePoint(60.0, 3.0, 2.0, 4.0, 2), SamplePoint(120.0, 8.0, 8.0, 8.0, 1)]


def test_a_step_of_300_makes_buckets_that_start_at_multiples_of_it(store: SqlStore) -> None:
    store.perf.save_samples(_cpu(*((float(ts), float(ts // 60)) for ts in range(240, 960, 30))))
    points = store.perf.query_samples("run", "r1", "cpu_percent", 350.0, 900.0, step=300)
    # the bucket holding since whole; minutes from the one holding until on are left out
    assert points == [SamplePoint(300.0, 7.0, 5.0, 9.0, 10), SamplePoint(600.0, 12.0, 10.0, 14.0, 10)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_samples_that_are_not_finite_are_skipped(store: SqlStore, bad: float) -> None:
    store.perf.save_samples(_cpu((60.0, bad)))
    store.perf.save_samples(_cpu((61.0, 5.0), (62.0, bad)) + [(bad, "run", "r1", "cpu_percent", 1.0)])
    assert store.perf.query_samples("run", "r1", "cpu_percent", 0.0) == [SamplePoint(61.0, 5.0, 5.0, 5.0, 1)]
    assert store.perf.query_samples("run", "r1", "cpu_percent", 0.0, step=60) == [SamplePoint(60.0, 5.0, 5.0, 5.0, 1)]


def test_the_scopes_with_samples_since_a_time_are_listed_sorted(store: SqlStore) -> None:
    store.perf.save_samples(
        [
            (100.0, "run", "old", "threads", 3.0),
            (1000.0, "run", "r2", "threads", 3.0),
            (1010.0, ScopeKind.HOST, "web-1", "cpu_percent", 3.0),
            (1030.0, "run", "r2", "cpu_percent", 1.0),
            (1040.0, "run", "r10", "threads", 1.0),
        ]
    )
    assert store.perf.sample_scopes(1000.0) == [
        ("host", "web-1", "cpu_percent"),
        ("run", "r10", "threads"),
        ("run", "r2", "cpu_percent"),
        ("run", "r2", "threads"),
    ]
    assert store.perf.sample_scopes(2000.0) == []


def test_the_latest_sample_of_each_metric_of_a_scope(store: SqlStore) -> None:
    store.perf.save_samples(
        _cpu((100.0, 1.0), (110.0, 2.0), (105.0, 3.0))
        + _cpu((500.0, 9.0), run="r2")
        + [
            (90.0, "run", "r1", "threads", 4.0),
            (80.0, "run", "r1", "threads", 5.0),
            (700.0, "host", "r1", "threads", 6.0),
        ]
    )
    assert store.perf.latest_samples("run", "r1") == {"cpu_percent": (110.0, 2.0), "threads": (90.0, 4.0)}
    assert store.perf.latest_samples(ScopeKind.RUN, "r2") == {"cpu_percent": (500.0, 9.0)}
    assert store.perf.latest_samples("run", "nobody") == {}


def test_purge_deletes_exactly_the_old_rows_in_batches_and_counts_them(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.perf.save_samples(_cpu(*((float(ts), 1.0) for ts in range(0, 600, 60))))  # 10 raw, 10 minutes
    store.perf.save_samples(_cpu((600.0, 2.0), (610.0, 3.0)))
    txns: list[str] = []
    real_txn = store.db.txn

    @contextmanager
    def counted(what: str) -> Iterator[Any]:
        txns.append(what)
        with real_txn(what) as cur:
            yield cur

    monkeypatch.setattr(store.db, "txn", counted)
    # raw: the 10 before 600; rollups: the 8 minutes before 480
    assert store.perf.purge_samples(raw_before=600.0, rollups_before=480.0, batch=3) == 18
    assert len(txns) == 4 + 3  # 3+3+3+1 raw, 3+3+2 rollups
    assert [p.ts for p in store.perf.query_samples("run", "r1", "cpu_percent", 0.0)] == [600.0, 610.0]
    assert [p.ts for p in store.perf.query_samples("run", "r1", "cpu_percent", 0.0, step=60)] == [480.0, 540.0, 600.0]
    assert store.perf.purge_samples(raw_before=600.0, rollups_before=480.0) == 0


@pytest.mark.parametrize("step", [90, 30, 0, -60, 61.5])
def test_a_step_that_is_not_a_positive_multiple_of_60_is_refused(store: SqlStore, step: Any) -> None:
    with pytest.raises(ValueError, match=rf"step {step!r}: must be a positive multiple of 60 seconds"):
        store.perf.query_samples("run", "r1", "cpu_percent", 0.0, step=step)


def test_more_points_than_the_limit_are_refused_with_the_step_to_ask_for(store: SqlStore) -> None:
    store.perf.save_samples(_cpu(*((float(i), 1.0) for i in range(MAX_POINTS + 1))))
    with pytest.raises(
        ValueError,
        match=r"cpu_percent of run:r1 from 0.0 to now: more than 10000 points; "
        r"ask for a larger step",
    ):
        store.perf.query_samples("run", "r1", "cpu_percent", 0.0)
    with pytest.raises(ValueError, match=r"ask for step=60 or more"):
        store.perf.query_samples("run", "r1", "cpu_percent", 0.0, float(MAX_POINTS + 1))
    assert len(store.perf.query_samples("run", "r1", "cpu_percent", 0.0, step=60)) == math.ceil((MAX_POINTS + 1) / 60)


def test_more_buckets_than_the_limit_are_refused(store: SqlStore) -> None:
    store.perf.save_samples(_cpu(*((i * 60.0, 1.0) for i in range(MAX_POINTS + 1))))
    with pytest.raises(ValueError, match=r"more than 10000 points; ask for step=120 or more"):
        store.perf.query_samples("run", "r1", "cpu_percent", 0.0, (MAX_POINTS + 1) * 60.0, step=60)
    assert len(store.perf.query_samples("run", "r1", "cpu_percent", 0.0, step=120)) == MAX_POINTS // 2 + 1
