"""Wire schemas of the HTTP API (msgspec); the OpenAPI document is generated
from these. Events themselves use :class:`flowsight.model.events.Event`'s
wire form."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from flowsight.model.events import Event, WireEvent


#: An event as sent: ``id`` (recommended: it makes a retry safe) and ``ts``
#: (seconds since the epoch or RFC 3339) are filled in when absent.
EventIn = WireEvent


class EventOut(Event, kw_only=True, frozen=True):
    """An event as stored, with its place in the store's order."""

    seq: int | None = None


class ItemResult(msgspec.Struct, kw_only=True):
    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    id: str | None = None
    error: str | None = None
    field: str | None = None
    warning: str | None = None


class IngestResponse(msgspec.Struct, kw_only=True):
    accepted: int
    duplicates: int
    rejected: int
    results: list[ItemResult]


class Error(msgspec.Struct, kw_only=True):
    error: str
    detail: str | None = None


class Eta(msgspec.Struct, kw_only=True):
    seconds: float
    finish_at: float
    confidence: float
    basis: str


class RunOut(msgspec.Struct, kw_only=True):
    run_id: str
    workflow: str
    state: Literal["pending", "running", "completed", "failed", "suspended", "cancelled"]
    stalled: bool
    idle_seconds: float | None
    stall_bound_seconds: float | None
    current_step: str | None
    completed_steps: int
    failed_steps: int
    total_steps: int | None
    retries: int
    percent_done: float | None
    start_time: float | None
    end_time: float | None
    duration_seconds: float | None
    usual_duration_seconds: float | None
    eta: Eta | None
    error: str | None


class RunPage(msgspec.Struct, kw_only=True):
    runs: list[RunOut]
    cursor: str | None


class StepOut(msgspec.Struct, kw_only=True):
    step: str
    attempt: int
    status: Literal["running", "completed", "failed"]
    started_at: float | None
    ended_at: float | None
    duration_seconds: float | None
    error: str | None
    traceback: str | None = None


class TransitionOut(msgspec.Struct, kw_only=True):
    timestamp: float
    old_state: str
    new_state: str
    reason: str | None
    source: str | None
    applied: bool


class RunDetailOut(RunOut, kw_only=True):
    attrs: dict[str, Any]
    steps: list[StepOut]
    transitions: list[TransitionOut]


class EventPage(msgspec.Struct, kw_only=True):
    events: list[EventOut]
    next_after: int | None


class WorkflowOut(msgspec.Struct, kw_only=True):
    workflow: str
    runs: int
    by_state: dict[str, int]
    last_run_at: float | None
    success_rate: float | None
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None


class WorkflowList(msgspec.Struct, kw_only=True):
    workflows: list[WorkflowOut]


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok"]
    store: str
    version: str
