"""Read models: a run as people and scripts see it (state, progress, ETA, stall).

Composes the store's reads with the pure decisions (ETA, stall); the CLI and
the API render what these return. History is fetched once per workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowsight.model.eta import Eta, estimate_eta
from flowsight.model.execution import ExecutionMetrics, StepRecord
from flowsight.model.faults import FaultRecord
from flowsight.model.history import WorkflowHistory
from flowsight.model.stall import DEFAULT_TIMEOUT, StallVerdict, stall_verdict
from flowsight.model.state import StateTransition
from flowsight.store.interface import Store


@dataclass(frozen=True, slots=True)
class RunView:
    run: ExecutionMetrics
    eta: Eta | None
    stall: StallVerdict | None
    usual_duration: float | None  # median of past completed runs
    now: float

    @property
    def stalled(self) -> bool:
        return bool(self.stall and self.stall.stalled)

    def to_dict(self) -> dict[str, Any]:
        m = self.run
        return {
            "run_id": m.workflow_id,
            "workflow": m.workflow,
            "state": m.state.value,
            "stalled": self.stalled,
            "idle_seconds": round(self.stall.idle_for, 3) if self.stall else None,
            "stall_bound_seconds": round(self.stall.bound, 3) if self.stall else None,
            "current_step": m.current_step,
            "completed_steps": m.completed_steps,
            "failed_steps": m.failed_steps,
            "total_steps": m.total_steps,
            "retries": m.retries,
            "percent_done": None if m.percent_done is None else round(m.percent_done, 1),
            "start_time": m.start_time,
            "end_time": m.end_time,
            "duration_seconds": _round(m.duration(self.now)),
            "usual_duration_seconds": _round(self.usual_duration),
            "eta": None
            if self.eta is None
            else {
                "seconds": round(self.eta.seconds, 3),
                "finish_at": self.eta.finish_at,
                "confidence": self.eta.confidence,
                "basis": self.eta.basis,
            },
            "error": m.error,
        }


@dataclass(frozen=True, slots=True)
class RunDetail:
    view: RunView
    steps: list[StepRecord]
    transitions: list[StateTransition]
    attrs: dict[str, Any] = field(default_factory=dict)
    #: faults that hurt this run (it was running when they were declared), newest first
    faults: list[FaultRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = self.view.to_dict()
        out["attrs"] = self.attrs
        out["steps"] = [
            {
                "step": s.step,
                "attempt": s.attempt,
                "status": s.status,
                "started_at": s.started_at,
                "ended_at": s.ended_at,
                "duration_seconds": _round(s.duration),
                "error": s.error,
                "traceback": s.traceback,
            }
            for s in self.steps
        ]
        out["faults"] = [
            {
                "id": f.id,
                "status": f.status.value,
                "severity": f.severity.value,
                "kind": f.fault.kind.value,
                "alertname": f.fault.kind.alertname,
                "target": f.fault.target,
                "detector": f.fault.detector,
                "message": f.fault.message,
                "opened_at": f.timestamp,
                "resolved_at": f.resolved_at,
            }
            for f in self.faults
        ]
        out["transitions"] = [
            {
                "timestamp": t.timestamp,
                "old_state": t.old_state.value,
                "new_state": t.new_state.value,
                "reason": t.reason,
                "source": t.source,
                "applied": t.applied,
            }
            for t in self.transitions
        ]
        return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


class Views:
    """Builds :class:`RunView`s, fetching each workflow's history once."""

    def __init__(self, store: Store, now: float, *, stall_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.store = store
        self.now = now
        self.stall_timeout = stall_timeout
        self._history: dict[str, WorkflowHistory] = {}

    def history(self, workflow: str) -> WorkflowHistory:
        h = self._history.get(workflow)
        if h is None:
            h = self._history[workflow] = self.store.stats.history(workflow)
        return h

    def view(self, m: ExecutionMetrics) -> RunView:
        live = not m.state.terminal
        h = self.history(m.workflow) if live else None
        usual = None
        if h is not None and h.run_durations:
            ds = sorted(h.run_durations)
            usual = ds[len(ds) // 2]
        stall = stall_verdict(m, h, self.now, timeout=self.stall_timeout) if live else None
        # a stalled run has no honest ETA: it will not finish at its past pace
        eta = estimate_eta(m, h, self.now) if live and not (stall and stall.stalled) else None
        return RunView(run=m, eta=eta, stall=stall, usual_duration=usual, now=self.now)

    def views(self, runs: list[ExecutionMetrics]) -> list[RunView]:
        live = [m.workflow for m in runs if not m.state.terminal and m.workflow not in self._history]
        if live:  # every history these runs need, checked in one read
            self._history.update(self.store.stats.histories(live))
        return [self.view(m) for m in runs]

    def detail(self, m: ExecutionMetrics) -> RunDetail:
        return RunDetail(
            view=self.view(m),
            steps=self.store.runs.run_steps(m.workflow_id),
            transitions=self.store.runs.run_transitions(m.workflow_id),
            attrs=m.attrs,
            faults=self.store.faults.list_faults(run_id=m.workflow_id, limit=20),
        )
