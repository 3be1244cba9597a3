"""Prefect 3 flow runs as flowsight runs, their task runs as steps.

Two ways in, one mapping (:func:`report`):

* ``flowsight prefect watch --api URL`` follows a Prefect server's event
  stream (:mod:`flowsight.integrations.prefect_events`): no flow is edited;
* where no long-lived server is used (Prefect's ephemeral mode), the state
  hooks of :func:`flow_hooks` and :func:`task_hooks` report from the flow's
  own process::

      from flowsight.integrations.prefect import flow_hooks, task_hooks

      @task(**task_hooks())
      def extract(): ...

      @flow(**flow_hooks())
      def nightly(): ...

What maps to what (the Prefect state's name is kept as the reason):

* a flow run is a run of the workflow named after the flow (run id: the flow
  run's id); a task run is a step named after the task run (``extract-3f2``:
  a task called twice in a flow is two steps);
* ``Pending`` and ``Late`` show the run as pending; ``Running`` starts it
  (or resumes it after ``Paused``/``Suspended``, which suspend it);
* ``Completed`` completes it; ``Failed``, ``Crashed`` and ``TimedOut`` fail
  it; ``Cancelled`` cancels it (``Cancelling`` changes nothing yet);
* a task's ``AwaitingRetry`` ends the attempt as failed with the run going
  on; its ``Retrying`` is the step's next attempt (the attempt is Prefect's
  run count).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowsight.integrations.adapter import EngineAdapter

ENGINE = "prefect"
FAILED_TYPES = frozenset({"FAILED", "CRASHED"})
PAUSED = "PAUSED"


@dataclass(frozen=True, slots=True)
class StateFact:
    """One state a Prefect flow run (``task`` None) or task run entered."""

    run_id: str  # the flow run's id
    workflow: str  # the flow's name
    task: str | None  # the task run's step name (step_name: its name, told apart by its id)
    type: str  # Prefect's state type: RUNNING, COMPLETED, FAILED, ...
    name: str  # the state's name: Running, Late, Crashed, AwaitingRetry, ...
    message: str
    run_count: int
    ts: float
    previous: str | None = None  # the state type it left, where known
    task_run_id: str | None = None  # the task run's id: what tells its facts apart

    @property
    def reason(self) -> str:
        return f"{self.name}: {self.message}" if self.message else self.name


def report(adapter: EngineAdapter, f: StateFact, stall_timeout: float | None = None) -> None:
    """Say ``f`` in flowsight's words (nothing for a state that changes nothing)."""
    if f.task is None:
        _flow_state(adapter, f, stall_timeout)
    else:
        _task_state(adapter, f)


def _flow_state(a: EngineAdapter, f: StateFact, stall_timeout: float | None) -> None:
    wf, rid, t = f.workflow, f.run_id, f.type
    kept = {"prefect_state": f.name}
    if t == "PENDING" or (t == "SCHEDULED" and f.name == "Late"):
        a.run_waiting(wf, rid, f.name, ts=f.ts, **kept)
    elif t == "RUNNING" and f.previous == PAUSED:
        a.run_resumed(wf, rid, ts=f.ts, **kept)
    elif t == "RUNNING":
        extra = {"stall_timeout": stall_timeout} if stall_timeout else {}
        a.run_started(wf, rid, ts=f.ts, prefect_flow_run_id=rid, **extra)
    elif t == "COMPLETED":
        a.run_ended(wf, rid, "completed", ts=f.ts, **kept)
    elif t in FAILED_TYPES:
        a.run_ended(wf, rid, "failed", ts=f.ts, error=f.message or f.name, reason=f.reason, **kept)
    elif t == "CANCELLED":
        a.run_ended(wf, rid, "cancelled", ts=f.ts, reason=f.reason, **kept)
    elif t == PAUSED:
        a.run_suspended(wf, rid, f.reason, ts=f.ts, **kept)


def step_name(task_run_name: str, task_run_id: str) -> str:
    """A task run's step: Prefect's name (``extract-3f2``, whose suffix has only 4,096 values)
    and the tail of its id, so the task runs of a flow run never share a step."""
    return f"{task_run_name}#{task_run_id.replace('-', '')[-8:]}"


def _task_state(a: EngineAdapter, f: StateFact) -> None:
    wf, rid, step, t, inst = f.workflow, f.run_id, str(f.task), f.type, f.task_run_id
    attempt = max(f.run_count, 1)
    if t == "RUNNING":
        if f.run_count > 1:  # the attempt before failed and was retried (its AwaitingRetry may be unseen)
            previous = f.run_count - 1
            a.step_ended(
                wf, rid, step, "failed", attempt=previous, ts=f.ts, error="failed", retrying=True, instance=inst
            )
        a.step_started(wf, rid, step, attempt=attempt, ts=f.ts, instance=inst, prefect_state=f.name)
    elif t == "SCHEDULED" and f.run_count >= 1:  # AwaitingRetry: this attempt failed, another comes
        error = f.message or "failed"
        a.step_ended(wf, rid, step, "failed", attempt=attempt, ts=f.ts, error=error, retrying=True, instance=inst)
    elif t == "COMPLETED":
        a.step_ended(wf, rid, step, "completed", attempt=attempt, ts=f.ts, instance=inst)
    elif t in FAILED_TYPES or t == "CANCELLED":
        error = f.reason
        a.step_ended(
            wf, rid, step, "failed", attempt=attempt, ts=f.ts, error=error, instance=inst, prefect_state=f.name
        )


# ---- state hooks: where no server is followed -----------------------------------------------
_adapter = EngineAdapter(ENGINE)


def _hook_fact(run_id: object, workflow: str, task_run: Any, run_count: Any, state: Any) -> StateFact:
    ts = state.timestamp.timestamp() if getattr(state, "timestamp", None) is not None else None
    task_run_id = None if task_run is None else str(task_run.id)
    return StateFact(
        run_id=str(run_id),
        workflow=workflow,
        task=None if task_run is None else step_name(str(task_run.name), str(task_run.id)),
        task_run_id=task_run_id,
        type=str(getattr(state.type, "value", state.type)),
        name=str(state.name),
        message=str(state.message or ""),
        run_count=int(run_count) if run_count else 0,
        ts=time.time() if ts is None else ts,
    )


def _on_flow_state(flow: Any, flow_run: Any, state: Any) -> None:
    report(_adapter, _hook_fact(flow_run.id, flow.name, None, flow_run.run_count, state))


def _on_task_state(task: Any, task_run: Any, state: Any) -> None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None or ctx.flow is None:
        return  # a task run outside any flow: not a step of a run
    run_count = task_run.run_count or 1  # the hook sees the attempt that ran
    report(_adapter, _hook_fact(ctx.flow_run.id, ctx.flow.name, task_run, run_count, state))


Hook = Callable[[Any, Any, Any], None]


def flow_hooks() -> dict[str, list[Hook]]:
    """A flow's state hooks reporting its runs: ``@flow(**flow_hooks())``
    (add your own to the lists)."""
    names = ("on_running", "on_completion", "on_failure", "on_crashed", "on_cancellation")
    return {name: [_on_flow_state] for name in names}


def task_hooks() -> dict[str, list[Hook]]:
    """A task's state hooks reporting its runs as steps: ``@task(**task_hooks())``
    (``on_running`` where this Prefect's tasks have it: 3.6 on)."""
    from prefect import Task

    takes = inspect.signature(Task.__init__).parameters
    names = [n for n in ("on_running", "on_completion", "on_failure") if n in takes]
    return {name: [_on_task_state] for name in names}
