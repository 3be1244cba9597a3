"""Is a run stalled? A pure function of the run, its history and now.

A run is stalled when it is Running and nothing has happened to it (no step
started or ended, no heartbeat, no progress) for longer than a bound:
3x the p95 duration of its current step in past runs (never under
``min_bound``); where there is no history, the run's own ``stall_timeout``
attribute or the configured ``timeout``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowsight.model.runs.execution import ExecutionMetrics
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.runs.state import WorkflowState

DEFAULT_TIMEOUT = 1800.0
MIN_BOUND = 5.0
FACTOR = 3.0
#: where a stall bound came from, in words (the RunStalled alert, ``flowsight show``)
BASIS_MEANS = {
    "history": "3x the p95 duration of the step in past runs",
    "run timeout": "the run's stall_timeout",
    "default timeout": "the default stall timeout",
}


@dataclass(frozen=True, slots=True)
class StallVerdict:
    stalled: bool
    idle_for: float
    bound: float
    basis: str  # "history" | "run timeout" | "default timeout"


def stall_verdict(
    m: ExecutionMetrics,
    history: WorkflowHistory | None,
    now: float,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    min_bound: float = MIN_BOUND,
) -> StallVerdict | None:
    """None when the run is not Running; otherwise the verdict with its reason."""
    if m.state is not WorkflowState.RUNNING:
        return None
    idle = max(0.0, now - m.last_activity)
    p95 = history.step_p95(m.current_step) if history and m.current_step else None
    if p95 is not None:
        bound, basis = max(FACTOR * p95, min_bound), "history"
    elif isinstance(m.attrs.get("stall_timeout"), (int, float)):
        bound, basis = float(m.attrs["stall_timeout"]), "run timeout"
    else:
        bound, basis = timeout, "default timeout"
    return StallVerdict(idle > bound, idle, bound, basis)
