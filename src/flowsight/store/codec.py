"""Rows to domain objects and back: the runs row and its step state, event rows,
and steps replayed from a run's events (there is no steps table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from flowsight.model.runs.events import Event, EventKind, decode_attrs, encode_attrs
from flowsight.model.runs.execution import ExecutionMetrics, StepRecord, apply_event, new_metrics
from flowsight.model.runs.state import WorkflowState

RUN_COLUMNS = (
    "run_id, workflow, state, created_at, start_time, end_time, current_step, total_steps, "
    "completed_steps, failed_steps, retries, last_activity, progress_done, progress_total, "
    "error, attrs, step_state, version"
)


class _StepState(msgspec.Struct, array_like=True):
    attempts: dict[str, int]
    open: dict[str, tuple[int, float]]
    done: list[str]
    last_end: float | None
    failed: list[str] = []


_step_enc = msgspec.json.Encoder()
_step_dec = msgspec.json.Decoder(_StepState)


def metrics_to_row(m: ExecutionMetrics, created: float, version: int) -> tuple[Any, ...]:
    state = _step_enc.encode(
        _StepState(m.step_attempts, m.open_steps, sorted(m.completed_names), m.last_step_end, sorted(m.failed_names))
    ).decode()
    return (
        m.workflow_id,
        m.workflow,
        m.state.value,
        created,
        m.start_time,
        m.end_time,
        m.current_step,
        m.total_steps,
        m.completed_steps,
        m.failed_steps,
        m.retries,
        m.last_activity,
        m.progress_done,
        m.progress_total,
        m.error,
        encode_attrs(m.attrs),
        state,
        version,
    )


def row_to_metrics(row: Sequence[Any]) -> ExecutionMetrics:
    st = _step_dec.decode(row[16]) if row[16] and row[16] != "{}" else _StepState({}, {}, [], None)
    return ExecutionMetrics(
        workflow_id=row[0],
        workflow=row[1],
        state=WorkflowState(row[2]),
        start_time=row[4],
        end_time=row[5],
        current_step=row[6],
        total_steps=row[7],
        completed_steps=row[8],
        failed_steps=row[9],
        retries=row[10],
        last_activity=row[11],
        progress_done=row[12],
        progress_total=row[13],
        error=row[14],
        attrs=decode_attrs(row[15]),
        step_attempts=dict(st.attempts),
        open_steps={k: (int(v[0]), float(v[1])) for k, v in st.open.items()},
        completed_names=set(st.done),
        last_step_end=st.last_end,
        failed_names=set(st.failed),
    )


def row_event(r: Sequence[Any]) -> Event:
    return Event(
        id=r[0], ts=r[1], kind=EventKind(r[2]), workflow=r[3], run_id=r[4], step=r[5], attrs=decode_attrs(r[6])
    )


def replay_steps(events: Sequence[Event]) -> list[StepRecord]:
    """The step attempts a run's events describe (running ones included)."""
    if not events:
        return []
    m = new_metrics(events[0])
    ended: list[StepRecord] = []
    for ev in events:
        step = apply_event(m, ev).step
        if step is not None and step.status != "running":
            ended.append(step)
    running = [StepRecord(m.workflow_id, n, att, "running", t) for n, (att, t) in m.open_steps.items()]
    return ended + running
