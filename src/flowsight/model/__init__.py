"""Domain types and decisions; no I/O. Imports nothing from store/ or server/."""

from __future__ import annotations

from flowsight.model.runs.eta import Eta, estimate_eta
from flowsight.model.runs.events import Event, EventKind, ExecutionEvent, make_event, parse_event, parse_events
from flowsight.model.runs.execution import ExecutionMetrics, Outcome, StepRecord, apply_event
from flowsight.model.runs.history import WorkflowHistory
from flowsight.model.runs.ids import new_id
from flowsight.model.runs.stall import StallVerdict, stall_verdict
from flowsight.model.runs.state import TRANSITIONS, StateTransition, WorkflowState

__all__ = [
    "TRANSITIONS",
    "Eta",
    "Event",
    "EventKind",
    "ExecutionEvent",
    "ExecutionMetrics",
    "Outcome",
    "StallVerdict",
    "StateTransition",
    "StepRecord",
    "WorkflowHistory",
    "WorkflowState",
    "apply_event",
    "estimate_eta",
    "make_event",
    "new_id",
    "parse_event",
    "parse_events",
    "stall_verdict",
]
