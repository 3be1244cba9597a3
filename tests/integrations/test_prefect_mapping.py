"""Prefect's states in flowsight's words, from the events a Prefect server
sends (their JSON form, as ``flowsight prefect watch`` gets them) through the
one mapping, into a real store: Late and Pending show a pending run, Paused
suspends and Running resumes it, Crashed fails it, each with Prefect's state
as the reason; a task's AwaitingRetry is a failed attempt that does not fail
the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowsight.integrations.adapter import EngineAdapter
from flowsight.integrations.prefect_events import PrefectMapper, fact_of
from flowsight.model.runs.events import Event
from flowsight.store import open_store

FLOW_RUN = "8b0529cb-7511-4b4b-9785-72d2bfc54cb2"
FLOW = {"prefect.resource.id": "prefect.flow.6b63", "prefect.resource.role": "flow", "prefect.resource.name": "nightly"}
PARENT = {"prefect.resource.id": f"prefect.flow-run.{FLOW_RUN}", "prefect.resource.role": "flow-run"}


def event(n: int, state: str, type_: str, *, task: str | None = None, run_count: int = 1, message: str = "",
          previous: str | None = None, task_run_id: str = "01a250d0-3f93-7ee9-90f4-0d568709ad2c") -> dict[str, Any]:  # fmt: skip
    kind = "task-run" if task else "flow-run"
    resource = {
        "prefect.resource.id": f"prefect.{kind}.{task_run_id if task else FLOW_RUN}",
        "prefect.resource.name": task or "supportive-orangutan",
        "prefect.run-count": str(run_count),
        "prefect.state-message": message,
        "prefect.state-name": state,
        "prefect.state-type": type_,
    }
    return {
        "id": f"ev-{n}",
        "occurred": f"2026-12-07T14:02:{n:02d}.000000Z",
        "event": f"prefect.{kind}.{state}",
        "resource": resource,
        "related": [PARENT, FLOW] if task else [FLOW],
        "payload": {"initial_state": {"type": previous} if previous else None},
    }


def replay(tmp_path: Path, events: list[dict[str, Any]]) -> Any:
    sent: list[Event] = []
    mapper = PrefectMapper(EngineAdapter("prefect", sent.append))
    for ev in events:
        mapper.on_event(ev)
    with open_store(str(tmp_path / "f.db")) as store:
        store.runs.write_events(sent)
        [run] = store.runs.list_runs().runs
        return run, store.runs.run_transitions(run.workflow_id), store.runs.run_steps(run.workflow_id), mapper


def test_late_shows_a_pending_run_and_paused_suspends_it_with_prefects_state_as_the_reason(tmp_path: Path) -> None:
    run, history, _steps, mapper = replay(
        tmp_path,
        [
            event(1, "Late", "SCHEDULED", run_count=0),
            event(2, "Running", "RUNNING", previous="SCHEDULED"),
            event(3, "Paused", "PAUSED", message="waiting for approval", previous="RUNNING"),
            event(4, "Running", "RUNNING", previous="PAUSED"),
            event(5, "Completed", "COMPLETED", previous="RUNNING"),
        ],
    )
    assert (run.workflow, run.workflow_id, run.state.value) == ("nightly", FLOW_RUN, "completed")
    moves = [(t.old_state.value, t.new_state.value, t.reason) for t in history]
    assert moves[1:3] == [("running", "suspended", "Paused: waiting for approval"), ("suspended", "running", None)]
    assert mapper.open == {}  # an ended run is no longer reconciled


def test_a_late_run_that_never_starts_stays_pending_saying_late(tmp_path: Path) -> None:
    run, _history, _steps, mapper = replay(tmp_path, [event(1, "Late", "SCHEDULED", run_count=0)])
    assert run.state.value == "pending"
    assert mapper.open == {FLOW_RUN: "nightly"}


def test_crashed_fails_the_run_with_prefects_state_as_the_reason(tmp_path: Path) -> None:
    run, history, _steps, _mapper = replay(
        tmp_path,
        [
            event(1, "Running", "RUNNING"),
            event(2, "Crashed", "CRASHED", message="Execution was aborted by an interrupt signal."),
        ],
    )
    assert run.state.value == "failed"
    assert history[-1].reason == "Crashed: Execution was aborted by an interrupt signal."


def test_a_tasks_retry_is_a_failed_attempt_then_the_next_one(tmp_path: Path) -> None:
    run, _history, steps, _mapper = replay(
        tmp_path,
        [
            event(1, "Running", "RUNNING"),
            event(2, "Running", "RUNNING", task="load-d1a"),
            event(3, "AwaitingRetry", "SCHEDULED", task="load-d1a"),
            event(4, "Retrying", "RUNNING", task="load-d1a", run_count=2),
            event(5, "Completed", "COMPLETED", task="load-d1a", run_count=2),
            event(6, "Completed", "COMPLETED"),
        ],
    )
    assert run.state.value == "completed" and run.retries == 1
    assert [(s.step, s.attempt, s.status) for s in steps] == [
        ("load-d1a#8709ad2c", 1, "failed"),
        ("load-d1a#8709ad2c", 2, "completed"),
    ]


def test_two_task_runs_of_one_name_are_two_steps(tmp_path: Path) -> None:
    """Prefect's task run names end in three hex digits: two runs of a task can share one."""
    _run, _history, steps, _mapper = replay(
        tmp_path,
        [
            event(1, "Running", "RUNNING"),
            *(event(2, "Running", "RUNNING", task="load-d1a", task_run_id=i) for i in ("a-1", "b-2")),
            *(event(3, "Completed", "COMPLETED", task="load-d1a", task_run_id=i) for i in ("a-1", "b-2")),
        ],
    )
    assert sorted((s.step, s.attempt, s.status) for s in steps) == [
        ("load-d1a#a1", 1, "completed"),
        ("load-d1a#b2", 1, "completed"),
    ]


def test_a_suspended_run_resumes_through_scheduled_and_pending(tmp_path: Path) -> None:
    run, history, _steps, _mapper = replay(
        tmp_path,
        [
            event(1, "Running", "RUNNING"),
            event(2, "Suspended", "PAUSED", previous="RUNNING"),
            event(3, "Resuming", "SCHEDULED", previous="PAUSED"),
            event(4, "Pending", "PENDING", previous="SCHEDULED"),
            event(5, "Running", "RUNNING", previous="PENDING"),
        ],
    )
    assert run.state.value == "running"
    assert [(t.old_state.value, t.new_state.value) for t in history][-2:] == [
        ("running", "suspended"),
        ("suspended", "running"),
    ]


def test_an_event_that_cannot_be_read_is_passed_over(tmp_path: Path) -> None:
    bad = event(2, "Completed", "COMPLETED")
    bad["occurred"] = "not a time"
    run, _history, _steps, _mapper = replay(tmp_path, [event(1, "Running", "RUNNING"), bad])
    assert run.state.value == "running"


def test_events_that_are_no_run_state_are_passed_over() -> None:
    heartbeat = event(1, "Running", "RUNNING")
    heartbeat["event"] = "prefect.flow-run.heartbeat"
    del heartbeat["resource"]["prefect.state-type"]
    orphan = event(2, "Running", "RUNNING", task="alone-3f2")
    orphan["related"] = []  # a task run outside any flow
    assert fact_of(heartbeat) is None and fact_of(orphan) is None and fact_of({}) is None


def test_prefect_watch_without_prefect_says_what_to_install() -> None:
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("prefect") is not None:
        pytest.skip("prefect is installed in this venv")
    out = subprocess.run(
        [sys.executable, "-m", "flowsight", "prefect", "watch", "--api", "http://127.0.0.1:4200/api"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip() == "flowsight: prefect is not installed: pip install 'flowsight[prefect]'"
