"""The public surface is deliberate: pinned here."""

from __future__ import annotations

import importlib
import subprocess
import sys

import flowsight


def test_the_public_api_is_sorted_and_pinned() -> None:
    assert flowsight.__all__ == sorted(flowsight.__all__)
    assert flowsight.__all__ == [
        "Alert",
        "AlertManager",
        "Client",
        "ConfigurationError",
        "DataCorruption",
        "Event",
        "EventKind",
        "ExecutionEvent",
        "ExecutionMetrics",
        "ExecutionMonitor",
        "FaultDetector",
        "FaultMonitor",
        "FaultRecord",
        "FaultType",
        "FlowsightError",
        "LogAlertRule",
        "LogEntry",
        "LogHandler",
        "LogLevel",
        "LogMonitor",
        "NetworkTimeout",
        "PerformanceMetrics",
        "PerformanceMonitor",
        "ResourceExhaustion",
        "Run",
        "ServiceUnavailable",
        "Severity",
        "StateMonitor",
        "StateTransition",
        "Step",
        "Threshold",
        "WorkflowState",
        "configure",
        "current_run",
        "expect",
        "flush",
        "step",
        "workflow",
    ]
    assert set(flowsight._WHERE) == set(flowsight.__all__)


def test_every_name_is_the_object_at_its_home_module() -> None:
    for name in flowsight.__all__:
        home = flowsight._WHERE[name]
        value = getattr(flowsight, name)
        assert value is getattr(importlib.import_module(home), name), name
        if isinstance(value, type) and value.__name__ == name:  # not an alias (ExecutionEvent, FaultType)
            assert value.__module__ == home, name
        assert name in dir(flowsight)


def test_the_monitors_package_gives_its_five_monitors() -> None:
    import flowsight.monitors

    for name in flowsight.monitors.__all__:
        home = flowsight.monitors._WHERE[name]
        assert getattr(flowsight.monitors, name) is getattr(importlib.import_module(home), name), name
    assert {"ExecutionMonitor", "PerformanceMonitor", "StateMonitor", "FaultMonitor", "LogMonitor"} <= set(
        flowsight.monitors.__all__
    )


_LOADED = """
import sys
import {target}
print("\\n".join(sorted(sys.modules)))
"""


def _loaded_by(target: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED.format(target=target)], capture_output=True, text=True, timeout=120, check=True
    )
    return set(done.stdout.split())


def test_import_flowsight_is_light() -> None:
    loaded = _loaded_by("flowsight")
    assert "flowsight" in loaded
    assert not {m for m in loaded if m.startswith(("flowsight.monitors", "flowsight.store", "flowsight.server"))}
    # nothing but the lazy-export helper itself until a name is used
    assert {m for m in loaded if m.startswith("flowsight.")} == {"flowsight._lazy"}


def test_the_monitors_package_alone_does_not_load_the_store() -> None:
    loaded = _loaded_by("flowsight.monitors")
    assert "flowsight.monitors" in loaded
    assert not {m for m in loaded if m.startswith(("flowsight.store", "flowsight.server", "flowsight.monitors."))}


def test_the_specification_names_exist() -> None:
    from flowsight.model import ExecutionMetrics, StateTransition, WorkflowState
    from flowsight.monitors import ExecutionMonitor, StateMonitor

    assert callable(ExecutionMonitor.track_execution) and callable(StateMonitor.monitor_state_change)
    assert {s.name for s in WorkflowState} == {"PENDING", "RUNNING", "COMPLETED", "FAILED", "SUSPENDED", "CANCELLED"}
    fields = ExecutionMetrics.__dataclass_fields__
    for name in (
        "workflow_id",
        "start_time",
        "end_time",
        "current_step",
        "total_steps",
        "completed_steps",
        "failed_steps",
    ):
        assert name in fields
    assert {"workflow_id", "timestamp", "new_state"} <= set(StateTransition.__dataclass_fields__)
    assert hasattr(ExecutionMonitor(), "event_sender") and hasattr(ExecutionMonitor(), "metrics")
    sm = StateMonitor()
    assert hasattr(sm, "state_history") and hasattr(sm, "state_notifications")


def test_the_specification_names_are_at_the_top() -> None:
    from flowsight import (
        AlertManager,
        ExecutionMonitor,
        FaultDetector,
        FaultMonitor,
        LogAlertRule,
        LogMonitor,
        PerformanceMonitor,
        StateMonitor,
    )

    for cls, method in (
        (ExecutionMonitor, "track_execution"),
        (PerformanceMonitor, "collect_metrics"),
        (StateMonitor, "monitor_state_change"),
        (FaultMonitor, "monitor_faults"),
        (FaultMonitor, "handle_fault"),
        (LogMonitor, "monitor_logs"),
        (LogMonitor, "analyze_log"),
        (LogAlertRule, "matches"),
        (LogAlertRule, "create_alert"),
        (FaultDetector, "detect"),
    ):
        assert callable(getattr(cls, method)), (cls, method)
    assert AlertManager is flowsight.AlertManager


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("flowsight").joinpath("py.typed").is_file()
