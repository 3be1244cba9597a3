"""Read models: a run as people and scripts see it (state, progress, ETA, stall).

Composes the store's reads with the pure decisions (ETA, stall); the CLI and
the API render what these return (as :func:`flowsight.server.views.run_out`). History is fetched once per workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowsight.model.runs.eta import Eta, estimate_eta
from flowsight.model.runs.execution import ExecutionMetrics, StepRecord
from flowsight.model.faults import FaultRecord
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.runs.stall import DEFAULT_TIMEOUT, StallVerdict, stall_verdict
from flowsight.model.runs.state import StateTransition
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


@dataclass(frozen=True, slots=True)
class RunDetail:
    view: RunView
    steps: list[StepRecord]
    transitions: list[StateTransition]
    attrs: dict[str, Any] = field(default_factory=dict)
    #: faults that hurt this run (it was running when they were declared), newest first
    faults: list[FaultRecord] = field(default_factory=list)


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
