"""QuantileSketch: every quantile within alpha of the exact value of the same
rank, merging equals sketching the concatenation, bounded memory that keeps
the high quantiles, a round trip through bytes, and errors a person reads."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsight.model.performance.sketch import DEFAULT_QUANTILES, QuantileSketch

ALPHA = 0.005
# Bucket boundaries are computed through log(): a value on a boundary may land
# in the next bucket, which is off by a few ulps more than alpha.
TOLERANCE = ALPHA * (1 + 1e-9)

durations = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
duration_lists = st.lists(durations, min_size=1, max_size=300)
# Log-uniform over 12 orders of magnitude: what plain floats() rarely draws.
spread = st.floats(min_value=-6, max_value=6).map(lambda e: 10.0**e)
spread_lists = st.lists(spread, min_size=1, max_size=300)


def sketch_of(values: list[float], alpha: float = ALPHA, max_buckets: int = 2048) -> QuantileSketch:
    s = QuantileSketch(alpha, max_buckets)
    for v in values:
        s.add(v)
    return s


def exact(values: list[float], q: float) -> float:
    """The value of DDSketch's rank for q: index floor(q * (n - 1)) of the sorted list."""
    return sorted(values)[math.floor(q * (len(values) - 1))]


def relative_error(estimate: float | None, true: float) -> float:
    assert estimate is not None
    return abs(estimate - true) / true


@given(st.one_of(duration_lists, spread_lists))
def test_every_quantile_is_within_alpha_of_the_exact_value_of_its_rank(values: list[float]) -> None:
    s = sketch_of(values)
    for q, estimate in s.quantiles(DEFAULT_QUANTILES).items():
        assert relative_error(estimate, exact(values, q)) <= TOLERANCE, q
        assert estimate == s.quantile(q)


@given(duration_lists)
def test_quantile_0_and_1_are_the_exact_min_and_max_and_all_estimates_lie_between(values: list[float]) -> None:
    s = sketch_of(values)
    assert s.quantile(0) == s.min == min(values)
    assert s.quantile(1) == s.max == max(values)
    for q in (0.01, 0.25, 0.5, 0.75, 0.999):
        estimate = s.quantile(q)
        assert estimate is not None and min(values) <= estimate <= max(values)


@given(spread_lists, spread_lists, st.sampled_from([4, 16, 2048]))
def test_merge_equals_the_sketch_of_the_concatenation(a: list[float], b: list[float], max_buckets: int) -> None:
    merged = sketch_of(a, max_buckets=max_buckets)
    merged.merge(sketch_of(b, max_buckets=max_buckets))
    whole = sketch_of(a + b, max_buckets=max_buckets)
    assert merged.bucket_counts() == whole.bucket_counts()
    assert merged.quantiles((0, 0.1, 0.5, 0.9, 0.95, 0.99, 1)) == whole.quantiles((0, 0.1, 0.5, 0.9, 0.95, 0.99, 1))
    assert (merged.count, merged.min, merged.max) == (whole.count, whole.min, whole.max)
    assert merged.sum == pytest.approx(whole.sum)


@given(st.lists(st.one_of(spread, st.just(0.0)), max_size=200), st.sampled_from([4, 2048]))
def test_a_sketch_survives_the_round_trip_through_bytes(values: list[float], max_buckets: int) -> None:
    s = sketch_of(values, max_buckets=max_buckets)
    back = QuantileSketch.from_bytes(s.to_bytes())
    assert back.bucket_counts() == s.bucket_counts()
    assert (back.count, back.sum, back.min, back.max) == (s.count, s.sum, s.min, s.max)
    assert (back.alpha, back.max_buckets) == (s.alpha, s.max_buckets)
    assert back.quantiles() == s.quantiles()
    # The floor survives too: adding after the round trip agrees.
    s.add(1e-5)
    back.add(1e-5)
    assert back.bucket_counts() == s.bucket_counts()


def test_a_million_values_over_twelve_orders_of_magnitude_keep_at_most_max_buckets() -> None:
    rng = random.Random(7)
    s = QuantileSketch()
    add = s.add
    for _ in range(1_000_000):
        add(10.0 ** rng.uniform(-6, 6))
    assert len(s.bucket_counts()) <= 2048
    assert s.count == 1_000_000
    encoded = s.to_bytes()
    assert len(encoded) < 16_000
    assert QuantileSketch.from_bytes(encoded).bucket_counts() == s.bucket_counts()


def test_collapsing_the_lowest_buckets_keeps_the_high_quantiles_accurate() -> None:
    rng = random.Random(11)
    values = [10.0 ** rng.uniform(-6, 6) for _ in range(100_000)]
    # 500 buckets of ~1% span a factor of ~145 below the max: p90 (about
    # 1e6 / 16) is still inside, p10 is long collapsed.
    s = sketch_of(values, max_buckets=500)
    assert len(s.bucket_counts()) == 500
    for q in (0.9, 0.95, 0.99):
        assert relative_error(s.quantile(q), exact(values, q)) <= TOLERANCE, q
    assert relative_error(s.quantile(0.1), exact(values, 0.1)) > 1
    assert (s.quantile(0), s.quantile(1)) == (min(values), max(values))


def test_values_below_min_value_count_in_the_zero_bucket() -> None:
    s = QuantileSketch()
    for v in (0.0, 0, 1e-12, 2.0):
        s.add(v)
    assert s.bucket_counts()[0] == (0.0, 3)
    assert s.quantile(0.5) == 0.0
    assert s.quantile(1) == 2.0


def test_add_with_a_count_weighs_the_value() -> None:
    once = QuantileSketch()
    many = QuantileSketch()
    for _ in range(5):
        once.add(3.0)
    many.add(3.0, count=5)
    assert once.bucket_counts() == many.bucket_counts()
    assert (many.count, many.sum, len(many)) == (5, 15.0, 5)


def test_an_empty_sketch_is_falsy_and_has_no_quantiles() -> None:
    s = QuantileSketch()
    assert not s and len(s) == 0
    assert (s.quantile(0.5), s.min, s.max, s.count, s.sum) == (None, None, None, 0, 0.0)
    assert s.quantiles() == {0.5: None, 0.9: None, 0.95: None, 0.99: None}
    assert QuantileSketch.from_bytes(s.to_bytes()).count == 0
    s.add(1.0)
    assert s and len(s) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1.5, "must be non-negative durations, got -1.5"),
        (-math.inf, "must be non-negative durations, got -inf"),
        (math.nan, "got nan"),
        (math.inf, "must be finite, got inf"),
    ],
)
def test_add_refuses_negative_and_non_finite_values(value: float, message: str) -> None:
    s = QuantileSketch()
    with pytest.raises(ValueError, match=message):
        s.add(value)
    assert s.count == 0


@pytest.mark.parametrize("count", [0, -1, 1.5])
def test_add_refuses_a_count_that_is_not_a_positive_integer(count: int) -> None:
    with pytest.raises(ValueError, match="count must be a positive integer"):
        QuantileSketch().add(1.0, count)


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan])
def test_quantile_refuses_q_outside_0_and_1(q: float) -> None:
    s = sketch_of([1.0, 2.0])
    with pytest.raises(ValueError, match="quantile must be between 0 and 1"):
        s.quantile(q)
    with pytest.raises(ValueError, match="quantile must be between 0 and 1"):
        s.quantiles((0.5, q))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0}, "alpha"),
        ({"alpha": 1}, "alpha"),
        ({"max_buckets": 0}, "max_buckets"),
        ({"min_value": 0}, "min_value"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantileSketch(**kwargs)  # type: ignore[arg-type]


def test_merge_refuses_a_sketch_of_another_alpha() -> None:
    with pytest.raises(ValueError, match="different accuracy: alpha 0.005 .* alpha 0.01"):
        QuantileSketch(0.005).merge(QuantileSketch(0.01))


def _damaged(encoded: bytes) -> dict[str, bytes]:
    return {
        "truncated": encoded[:-5],
        "trailing junk": encoded + b"\x00",
        "a count turned negative": encoded[:-1] + bytes([encoded[-1] ^ 0xFF]),
    }


ENCODED = sketch_of([0.1, 0.2, 0.3, 5.0]).to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an encoded QuantileSketch"),
        (b"hello world", "not an encoded QuantileSketch: it starts b'hello wo'"),
        (b"QS", "not an encoded QuantileSketch"),
        (b"QS\x09" + ENCODED[3:], "version 9 is not supported"),
        (b"QS\x01\xc1", "damaged QuantileSketch encoding"),
        *[(bad, "damaged QuantileSketch encoding") for bad in _damaged(ENCODED).values()],
    ],
)
def test_from_bytes_refuses_garbage_saying_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantileSketch.from_bytes(data)


@settings(max_examples=300)
@given(st.binary(max_size=64), st.integers(min_value=3, max_value=40))
def test_from_bytes_on_any_bytes_raises_only_value_error(junk: bytes, cut: int) -> None:
    for data in (junk, ENCODED[:3] + junk, ENCODED[:cut] + junk):
        try:
            s = QuantileSketch.from_bytes(data)
        except ValueError:
            continue
        s.quantiles()  # whatever decoded is consistent enough to read
