"""Performance thresholds that do not cry wolf: pure decisions.

A :class:`Threshold` fires when a metric of a scope (the host, a run, a
workflow) has been past its ``value`` for ``for_`` seconds, and resolves
only once it is back past ``resolve`` (hysteresis: a value hovering at the
line gives one alert, not dozens). :func:`evaluate_threshold` is the whole
decision: ``(rule, value, state, now) -> (new state, change)``.

A :class:`Baseline` compares a run's or a step's duration with the same
workflow's history: past ``factor`` x the ``quantile`` of the last ``runs``
durations, or a robust z-score (median and MAD) past ``zscore``.
:func:`evaluate_baseline` says whether it fires and the sentence a person
reads ("step 'load' of nightly-etl took 14m 03s; p95 of the last 30 runs is
4m 10s").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from flowsight.model.alerts import Severity
from flowsight.model.durations import format_duration
from flowsight.model.performance import RESOURCE_METRICS, ScopeKind

#: metrics a threshold may watch: the resource metrics of a sample, and
#: those the execution events give per workflow (completions per second, durations)
THRESHOLD_METRICS = (*RESOURCE_METRICS, "steps_per_s", "runs_per_s", "step_duration_s", "run_duration_s")
BASELINE_METRICS = ("run_duration", "step_duration")


class Direction(str, Enum):
    ABOVE = "above"
    BELOW = "below"

    __hash__ = str.__hash__


@dataclass(frozen=True, slots=True)
class Threshold:
    """``metric`` of each ``scope`` past ``value`` (``direction``) for
    ``for_`` seconds fires; back past ``resolve`` (default ``value``) ends it.
    ``workflow``: only scopes of this workflow (runs and workflows)."""

    name: str
    metric: str
    scope: ScopeKind
    value: float
    direction: Direction = Direction.ABOVE
    for_: float = 0.0
    resolve: float | None = None
    severity: Severity = Severity.WARNING
    workflow: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in THRESHOLD_METRICS:
            raise ValueError(
                f"threshold {self.name!r}: unknown metric {self.metric!r}; "
                f"expected one of: {', '.join(THRESHOLD_METRICS)}"
            )
        if not math.isfinite(self.value):
            raise ValueError(f"threshold {self.name!r}: value must be a finite number, got {self.value!r}")
        if not (math.isfinite(self.for_) and self.for_ >= 0):
            raise ValueError(f"threshold {self.name!r}: for must be 0 s or more, got {self.for_!r}")
        r = self.resolve
        if r is not None and (
            not math.isfinite(r) or (r > self.value if self.direction is Direction.ABOVE else r < self.value)
        ):
            side = "at or below" if self.direction is Direction.ABOVE else "at or above"
            raise ValueError(
                f"threshold {self.name!r}: resolve ({r}) must be {side} the value ({self.value}) it fires at"
            )

    @property
    def resolve_at(self) -> float:
        return self.value if self.resolve is None else self.resolve

    def breached(self, value: float) -> bool:
        return value > self.value if self.direction is Direction.ABOVE else value < self.value

    def cleared(self, value: float) -> bool:
        return value <= self.resolve_at if self.direction is Direction.ABOVE else value >= self.resolve_at


@dataclass(frozen=True, slots=True)
class ThresholdState:
    """Where one threshold stands for one scope: breached since
    ``pending_since`` (not yet ``for_``), or ``firing`` since ``firing_since``."""

    pending_since: float | None = None
    firing_since: float | None = None
    last_value: float | None = None

    @property
    def firing(self) -> bool:
        return self.firing_since is not None


QUIET = ThresholdState()


def evaluate_threshold(
    rule: Threshold, value: float | None, state: ThresholdState, now: float
) -> tuple[ThresholdState, str | None]:
    """One sample against ``rule``: the new state, and ``"firing"`` or
    ``"resolved"`` when it changed so (None otherwise).

    ``value`` None (the scope has no sample: a run that ended) resolves a
    firing threshold and clears a pending one. A NaN sample counts as none.
    """
    if value is None or math.isnan(value):
        if state.firing:
            return QUIET, "resolved"
        return QUIET, None
    if state.firing:
        if rule.cleared(value):
            return ThresholdState(last_value=value), "resolved"
        return replace(state, last_value=value), None
    if not rule.breached(value):
        return ThresholdState(last_value=value), None
    since = state.pending_since if state.pending_since is not None else now
    if now - since >= rule.for_:
        return ThresholdState(pending_since=since, firing_since=now, last_value=value), "firing"
    return ThresholdState(pending_since=since, last_value=value), None


# ---- baselines ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Baseline:
    """A duration against its workflow's history. Fires when the duration
    exceeds ``factor`` x the ``quantile`` of the last ``runs`` durations (of
    the same workflow, or step), or, with ``zscore`` set, when its robust
    z-score (0.6745 (x - median) / MAD) passes ``zscore``. Below
    ``min_runs`` durations of history it says nothing."""

    name: str
    metric: str = "run_duration"
    quantile: float = 0.95
    factor: float = 1.5
    runs: int = 30
    min_runs: int = 10
    zscore: float | None = None
    severity: Severity = Severity.WARNING
    workflow: str | None = None
    step: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in BASELINE_METRICS:
            raise ValueError(
                f"baseline {self.name!r}: metric must be one of {', '.join(BASELINE_METRICS)}, got {self.metric!r}"
            )
        if not 0 < self.quantile < 1:
            raise ValueError(f"baseline {self.name!r}: quantile must be between 0 and 1, got {self.quantile!r}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"baseline {self.name!r}: factor must be 1 or more, got {self.factor!r}")
        if self.runs < 2 or not 2 <= self.min_runs <= self.runs:
            raise ValueError(
                f"baseline {self.name!r}: need 2 <= min_runs <= runs, got min_runs={self.min_runs}, runs={self.runs}"
            )
        if self.zscore is not None and not (math.isfinite(self.zscore) and self.zscore > 0):
            raise ValueError(f"baseline {self.name!r}: zscore must be above 0, got {self.zscore!r}")


@dataclass(frozen=True, slots=True)
class BaselineVerdict:
    fired: bool
    #: for people: what it took against what is usual
    sentence: str
    #: the quantile of the history (seconds), the history's size, the robust z-score (None without MAD)
    usual: float
    history: int
    z: float | None = None


def quantile_of(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear between closest ranks)."""
    data = sorted(values)
    pos = q * (len(data) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def robust_z(value: float, history: Sequence[float]) -> float | None:
    """0.6745 (value - median) / MAD; None when the MAD is 0 (no spread to judge by)."""
    med = statistics.median(history)
    mad = statistics.median(abs(h - med) for h in history)
    if mad == 0:
        return None
    return 0.6745 * (value - med) / mad


def evaluate_baseline(
    rule: Baseline, duration: float, history: Sequence[float], *, what: str
) -> BaselineVerdict | None:
    """``duration`` (seconds) of ``what`` ("step 'load' of nightly-etl",
    "run r-42 of nightly-etl") against ``history`` (the durations of the same
    workflow or step, newest last; the last ``rule.runs`` are used). None
    when the history is shorter than ``min_runs``."""
    recent = [h for h in history if math.isfinite(h) and h >= 0][-rule.runs :]
    if len(recent) < rule.min_runs or not math.isfinite(duration):
        return None
    usual = quantile_of(recent, rule.quantile)
    pct = f"p{rule.quantile * 100:g}"
    z = robust_z(duration, recent)
    if rule.zscore is not None:
        fired = z is not None and z > rule.zscore
        detail = f"{pct} of the last {len(recent)} runs is {format_duration(usual)}; robust z-score " + (
            f"{z:.1f} (over {rule.zscore:g})" if z is not None else "not defined: no spread"
        )
    else:
        fired = duration > rule.factor * usual
        detail = f"{pct} of the last {len(recent)} runs is {format_duration(usual)}"
        if rule.factor != 1:
            detail += f" (fires over {rule.factor:g}x)"
    return BaselineVerdict(fired, f"{what} took {format_duration(duration)}; {detail}", usual, len(recent), z)
