"""Workflow states and the one table of allowed transitions.

Completed, Failed and Cancelled are terminal. A transition to the state a run
is already in is not a transition and is refused like any illegal one.
Suspended -> Failed is allowed (beyond the minimum Suspended -> Running |
Cancelled): a suspended job whose process dies or times out has failed, and
without it the run would stay Suspended forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from flowsight.model.runs.events import EventKind


class WorkflowState(str, Enum):
    """The specification's ``WorkflowState``."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"

    __hash__ = str.__hash__  # C speed in the hot path's dict lookups

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


S = WorkflowState
TRANSITIONS: dict[WorkflowState, frozenset[WorkflowState]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.SUSPENDED, S.CANCELLED}),
    S.SUSPENDED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

#: The state an event asks for; events not listed change no state.
EVENT_STATE: dict[EventKind, WorkflowState] = {
    EventKind.STARTED: S.RUNNING,
    EventKind.COMPLETED: S.COMPLETED,
    EventKind.FAILED: S.FAILED,
    EventKind.CANCELLED: S.CANCELLED,
    EventKind.SUSPENDED: S.SUSPENDED,
    EventKind.RESUMED: S.RUNNING,
}


def allowed_next(state: WorkflowState) -> frozenset[WorkflowState]:
    return TRANSITIONS[state]


def is_allowed(old: WorkflowState, new: WorkflowState) -> bool:
    return new in TRANSITIONS[old]


@dataclass(frozen=True, slots=True)
class StateTransition:
    """The specification's ``StateTransition``, plus why, from where, and
    whether it was applied (a refused transition is kept, never applied)."""

    workflow_id: str
    timestamp: float
    old_state: WorkflowState
    new_state: WorkflowState
    reason: str | None = None
    source: str | None = None
    applied: bool = True
    event_id: str | None = None


def replay(initial: WorkflowState, history: list[StateTransition]) -> WorkflowState:
    """The state a run is in after its history: applied transitions only."""
    state = initial
    for tr in history:
        if tr.applied:
            state = tr.new_state
    return state
