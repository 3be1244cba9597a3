"""When will a run finish? A pure function of the run, its history and now.

With history: the remaining steps each take their median from the workflow's
past completed runs; the running step takes its median less the time it has
run (or, with progress reported, the rate so far), never less than a tenth of
its median. Without history: the current run's mean step time. Confidence
(0-1) grows with the number of past runs and shrinks with their spread.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from flowsight.model.runs.execution import ExecutionMetrics
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.runs.state import WorkflowState


@dataclass(frozen=True, slots=True)
class Eta:
    seconds: float  # remaining
    finish_at: float
    confidence: float
    basis: str  # "history" | "current run"


def _current_remaining(m: ExecutionMetrics, typical: float | None, now: float) -> float:
    if m.current_step is None:
        return 0.0
    opened = m.open_steps.get(m.current_step)
    elapsed = now - opened[1] if opened else 0.0
    if m.progress_total and m.progress_done and m.progress_done > 0:
        rate = elapsed / m.progress_done
        return max(0.0, rate * (m.progress_total - m.progress_done))
    if typical is None:
        return 0.0
    return max(typical - elapsed, 0.1 * typical)


def estimate_eta(m: ExecutionMetrics, history: WorkflowHistory | None, now: float) -> Eta | None:
    """The run's ETA, or None when there is nothing to base one on."""
    if m.state is not WorkflowState.RUNNING and m.state is not WorkflowState.SUSPENDED:
        return None
    if history is not None and history.runs > 0 and history.step_durations:
        return _from_history(m, history, now)
    return _from_current_run(m, now)


def _from_history(m: ExecutionMetrics, h: WorkflowHistory, now: float) -> Eta:
    done = m.completed_names
    remaining = 0.0
    counted = 0
    for step in h.step_order:
        if step in done or step == m.current_step:
            continue
        median = h.step_median(step)
        if median is not None:
            remaining += median
            counted += 1
    typical = h.step_median(m.current_step) if m.current_step else None
    remaining += _current_remaining(m, typical if typical is not None else h.mean_step(), now)
    if m.total_steps:
        # steps this run declares beyond those history knows
        unknown = m.total_steps - m.completed_steps - counted - (1 if m.current_step else 0)
        if unknown > 0:
            remaining += unknown * (h.mean_step() or 0.0)
    spread = 0.0
    if len(h.run_durations) >= 2:
        mean = statistics.fmean(h.run_durations)
        spread = statistics.pstdev(h.run_durations) / mean if mean > 0 else 0.0
    confidence = (h.runs / (h.runs + 2)) / (1 + spread)
    return Eta(remaining, now + remaining, round(min(1.0, confidence), 3), "history")


def _from_current_run(m: ExecutionMetrics, now: float) -> Eta | None:
    if not m.total_steps or m.start_time is None:
        return None
    if m.completed_steps == 0:
        if m.current_step and m.progress_total and m.progress_done:
            left_in_step = _current_remaining(m, None, now)
            per_step = (now - m.start_time) + left_in_step
            remaining = left_in_step + per_step * (m.total_steps - 1)
            return Eta(remaining, now + remaining, 0.1, "current run")
        return None
    end = m.last_step_end if m.last_step_end is not None else now
    mean = (end - m.start_time) / m.completed_steps
    left = m.total_steps - m.completed_steps - (1 if m.current_step else 0)
    remaining = max(0, left) * mean + _current_remaining(m, mean, now)
    confidence = 0.5 * m.completed_steps / m.total_steps
    return Eta(remaining, now + remaining, round(confidence, 3), "current run")
