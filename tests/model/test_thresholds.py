"""Thresholds with injected time: ``for``, hysteresis (a value oscillating
around the line gives one alert), below-thresholds, samples that stop; and
baselines against a generated history (quantile x factor, robust z-score)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.model.performance import ScopeKind
from flowsight.model.performance.thresholds import (
    QUIET,
    Baseline,
    Direction,
    Threshold,
    ThresholdState,
    evaluate_baseline,
    evaluate_threshold,
    quantile_of,
    robust_z,
)

CPU = Threshold("HighCPU", "cpu_percent", ScopeKind.RUN, 90.0, for_=60.0, resolve=80.0)


def feed(rule: Threshold, samples: list[tuple[float, float | None]]) -> list[tuple[float, str]]:
    state, out = QUIET, []
    for t, v in samples:
        state, change = evaluate_threshold(rule, v, state, t)
        if change is not None:
            out.append((t, change))
    return out


def test_a_breach_fires_only_after_it_held_for_the_whole_for() -> None:
    samples = [(0, 95.0), (30, 96.0), (50, 70.0), (60, 95.0), (100, 95.0), (119, 99.0), (120, 99.0)]
    assert feed(CPU, samples) == [(120, "firing")]  # the dip at 50 restarted the clock at 60


def test_it_resolves_only_back_past_the_resolve_value() -> None:
    samples = [(0, 95.0), (60, 95.0), (70, 89.0), (80, 85.0), (90, 80.5), (100, 80.0)]
    assert feed(CPU, samples) == [(60, "firing"), (100, "resolved")]


@given(st.lists(st.floats(-1.0, 1.0), min_size=10, max_size=300))
def test_a_value_oscillating_one_percent_around_the_line_gives_one_alert(jitter: list[float]) -> None:
    rule = Threshold("HighMem", "memory_percent", ScopeKind.HOST, 80.0, for_=0.0, resolve=78.0)
    samples = [(float(i), 80.0 + 0.8 * j) for i, j in enumerate([1.0, *jitter])]  # +-1% of 80
    changes = feed(rule, samples)
    assert changes[:1] == [(0.0, "firing")] and len(changes) == 1


def test_without_hysteresis_the_same_oscillation_would_alert_again_and_again() -> None:
    rule = Threshold("HighMem", "memory_percent", ScopeKind.HOST, 80.0)
    samples = [(float(i), 80.8 if i % 2 == 0 else 79.2) for i in range(10)]
    assert len(feed(rule, samples)) == 10  # why resolve exists


def test_a_below_threshold_fires_under_the_line_and_resolves_above_its_resolve() -> None:
    rule = Threshold("Starved", "steps_per_s", ScopeKind.WORKFLOW, 1.0, Direction.BELOW, for_=10.0, resolve=2.0)
    samples = [(0, 0.5), (10, 0.4), (20, 1.5), (30, 2.0)]
    assert feed(rule, samples) == [(10, "firing"), (30, "resolved")]


def test_a_scope_that_stops_sampling_resolves_a_firing_threshold_and_forgets_a_pending_one() -> None:
    rule = Threshold("HighCPU", "cpu_percent", ScopeKind.RUN, 90.0, for_=10.0)
    assert feed(rule, [(0, 95.0), (10, 95.0), (20, None)]) == [(10, "firing"), (20, "resolved")]
    state, change = evaluate_threshold(rule, None, ThresholdState(pending_since=0.0), 5.0)
    assert state == QUIET and change is None
    assert feed(rule, [(0, 95.0), (5, float("nan")), (12, 95.0)]) == []  # NaN is no sample: the clock restarted


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"metric": "cpu"}, "unknown metric 'cpu'"),
        ({"value": float("nan")}, "finite number"),
        ({"for_": -1.0}, "for must be 0 s or more"),
        ({"resolve": 95.0}, "must be at or below the value"),
        ({"direction": Direction.BELOW, "resolve": 50.0}, "must be at or above the value"),
    ],
)
def test_a_threshold_that_makes_no_sense_is_refused_naming_it(kwargs: dict[str, object], words: str) -> None:
    base: dict[str, object] = {"name": "T", "metric": "cpu_percent", "scope": ScopeKind.RUN, "value": 90.0}
    with pytest.raises(ValueError, match=words) as info:
        Threshold(**{**base, **kwargs})  # type: ignore[arg-type]
    assert "threshold 'T'" in str(info.value)


# ---- baselines ----------------------------------------------------------------------
def history(n: int = 30, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(250.0, 20.0) for _ in range(n)]  # about 4m 10s


def test_a_step_far_over_its_p95_fires_with_a_sentence_a_person_reads() -> None:
    rule = Baseline("SlowLoad", "step_duration", quantile=0.95, factor=1.5, runs=30)
    past = history()
    v = evaluate_baseline(rule, 843.0, past, what="step 'load' of nightly-etl")
    assert v is not None and v.fired and v.history == 30
    p95 = quantile_of(past, 0.95)
    assert v.usual == pytest.approx(p95)
    assert v.sentence.startswith("step 'load' of nightly-etl took 14m 03s; p95 of the last 30 runs is ")
    ok = evaluate_baseline(rule, 1.4 * p95, past, what="step 'load' of nightly-etl")
    assert ok is not None and not ok.fired


def test_only_the_last_runs_count_and_a_short_history_says_nothing() -> None:
    rule = Baseline("SlowRun", runs=10, min_runs=5, factor=1.2)
    old_slow = [1000.0] * 50
    recent = [100.0] * 10
    v = evaluate_baseline(rule, 300.0, old_slow + recent, what="run r-1 of etl")
    assert v is not None and v.fired and v.usual == 100.0 and v.history == 10
    assert evaluate_baseline(rule, 300.0, [100.0] * 4, what="run r-1 of etl") is None


def test_a_robust_z_score_ignores_outliers_in_the_history() -> None:
    rule = Baseline("Odd", zscore=3.5, runs=30)
    past = history() + [5000.0]  # one wild run in the history barely moves median and MAD
    v = evaluate_baseline(rule, 400.0, past, what="run r-9 of etl")
    assert v is not None and v.fired and v.z is not None and v.z > 3.5 and "robust z-score" in v.sentence
    near = evaluate_baseline(rule, 260.0, past, what="run r-9 of etl")
    assert near is not None and not near.fired
    assert robust_z(5.0, [1.0, 1.0, 1.0]) is None  # no spread: not defined
    flat = evaluate_baseline(Baseline("Flat", zscore=3.0, runs=5, min_runs=3), 9.0, [1.0] * 5, what="run x")
    assert flat is not None and not flat.fired and "no spread" in flat.sentence


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"metric": "cpu_percent"}, "metric must be one of"),
        ({"quantile": 1.5}, "quantile must be between 0 and 1"),
        ({"factor": 0.5}, "factor must be 1 or more"),
        ({"runs": 5, "min_runs": 10}, "min_runs <= runs"),
        ({"zscore": 0.0}, "zscore must be above 0"),
    ],
)
def test_a_baseline_that_makes_no_sense_is_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Baseline("B", **kwargs)  # type: ignore[arg-type]
