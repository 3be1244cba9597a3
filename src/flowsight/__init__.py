"""flowsight: workflow observability in one pip install.

The SDK is re-exported here; the monitors, the model and the stores live in
their packages (``flowsight.monitors``, ``flowsight.model``, ``flowsight.store``).
"""

from __future__ import annotations

from flowsight.errors import FlowsightError
from flowsight.model.events import Event, EventKind
from flowsight.model.state import WorkflowState
from flowsight.monitors.execution import ExecutionMonitor
from flowsight.monitors.state import StateMonitor
from flowsight.sdk.client import Client, Run, Step, configure, current_run, flush, step, workflow
from flowsight.sdk.logs import LogHandler

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Event",
    "EventKind",
    "ExecutionMonitor",
    "FlowsightError",
    "LogHandler",
    "Run",
    "StateMonitor",
    "Step",
    "WorkflowState",
    "configure",
    "current_run",
    "flush",
    "step",
    "workflow",
]
