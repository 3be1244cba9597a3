"""The public surface is deliberate: pinned here."""

from __future__ import annotations

import flowsight


def test_the_public_api_is_sorted_and_pinned() -> None:
    assert flowsight.__all__ == sorted(flowsight.__all__)
    assert flowsight.__all__ == [
        "Client", "Event", "EventKind", "ExecutionMonitor", "FlowsightError", "LogHandler", "Run", "StateMonitor",
        "Step", "WorkflowState", "configure", "current_run", "flush", "step", "workflow",
    ]
    for name in flowsight.__all__:
        assert getattr(flowsight, name) is not None


def test_the_specification_names_exist() -> None:
    from flowsight.model import ExecutionMetrics, StateTransition, WorkflowState
    from flowsight.monitors import ExecutionMonitor, StateMonitor

    assert callable(ExecutionMonitor.track_execution) and callable(StateMonitor.monitor_state_change)
    assert {s.name for s in WorkflowState} == {"PENDING", "RUNNING", "COMPLETED", "FAILED", "SUSPENDED", "CANCELLED"}
    fields = ExecutionMetrics.__dataclass_fields__
    for name in ("workflow_id", "start_time", "end_time", "current_step", "total_steps", "completed_steps",
                 "failed_steps"):
        assert name in fields
    assert {"workflow_id", "timestamp", "new_state"} <= set(StateTransition.__dataclass_fields__)
    assert hasattr(ExecutionMonitor(), "event_sender") and hasattr(ExecutionMonitor(), "metrics")
    sm = StateMonitor()
    assert hasattr(sm, "state_history") and hasattr(sm, "state_notifications")


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("flowsight").joinpath("py.typed").is_file()
