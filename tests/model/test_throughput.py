"""Throughput windows with injected time: rates over 1 m, 5 m and 1 h,
late events, and memory bounded by the horizon."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.model.performance.throughput import RateWindow


def test_rates_over_each_window() -> None:
    w = RateWindow()
    for t in range(0, 3600, 2):  # one completion every 2 s for an hour
        w.add(1000.0 + t)
    now = 1000.0 + 3599
    r = w.rates(now)
    assert r["1m"] == pytest.approx(0.5, abs=0.02) and r["5m"] == pytest.approx(0.5, abs=0.01)
    assert r["1h"] == pytest.approx(0.5, abs=0.001)
    assert w.rate(now + 120, 60) == 0.0  # two quiet minutes later


def test_a_late_event_counts_in_its_own_second() -> None:
    w = RateWindow()
    w.add(100.0)
    w.add(110.0)
    w.add(105.5)  # out of order
    w.add(55.0)  # before everything
    assert w.count(110.0, 60) == 4 and w.count(110.0, 6) == 2


@given(st.lists(st.floats(0, 100_000), min_size=1, max_size=500))
def test_memory_is_bounded_by_the_horizon_and_counts_match_a_plain_filter(times: list[float]) -> None:
    w = RateWindow(horizon=600)
    for t in sorted(times):
        w.add(t)
    now = max(times)
    assert len(w) <= 601
    expected = sum(1 for t in times if int(now) - 60 < int(t) <= now)
    assert w.count(now, 60) == expected


def test_a_window_past_the_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than the horizon"):
        RateWindow(horizon=60).rate(0.0, 300)
