"""What past runs of a workflow teach: step durations and run durations.

The store fills a :class:`WorkflowHistory` from the workflow's last completed
runs; the ETA and stall decisions read it. No I/O here.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WorkflowHistory:
    """Durations from the last ``runs`` completed runs of one workflow.

    ``step_order``: step names in the order they ran, most recent run first
    wins; ``step_durations``: seconds per completed step attempt.
    """

    workflow: str
    runs: int = 0
    run_durations: tuple[float, ...] = ()
    step_order: tuple[str, ...] = ()
    step_durations: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def step_median(self, step: str) -> float | None:
        values = self.step_durations.get(step)
        return statistics.median(values) if values else None

    def step_p95(self, step: str) -> float | None:
        values = self.step_durations.get(step)
        return quantile(values, 0.95) if values else None

    def mean_step(self) -> float | None:
        values = [v for vs in self.step_durations.values() for v in vs]
        return statistics.fmean(values) if values else None


def quantile(values: tuple[float, ...] | list[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        raise ValueError("quantile of no values")
    pos = q * (len(data) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
