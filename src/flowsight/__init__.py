"""flowsight: workflow observability in one pip install.

The SDK is re-exported here; the monitors, the model and the stores live in
their packages (``flowsight.monitors``, ``flowsight.model``, ``flowsight.store``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowsight.errors import FlowsightError
    from flowsight.model.events import Event, EventKind
    from flowsight.model.state import WorkflowState
    from flowsight.monitors.execution import ExecutionMonitor
    from flowsight.monitors.state import StateMonitor
    from flowsight.sdk.client import Client, Run, Step, configure, current_run, flush, step, workflow
    from flowsight.sdk.logs import LogHandler

__version__ = "0.1.0"

# Each name is imported when first used (PEP 562), so that a command that
# needs little of the package (``flowsight run`` in front of a cron line)
# does not pay for the monitors and the stores at every start.
_WHERE = {
    "Client": "flowsight.sdk.client", "Event": "flowsight.model.events", "EventKind": "flowsight.model.events",
    "ExecutionMonitor": "flowsight.monitors.execution", "FlowsightError": "flowsight.errors",
    "LogHandler": "flowsight.sdk.logs", "Run": "flowsight.sdk.client", "StateMonitor": "flowsight.monitors.state",
    "Step": "flowsight.sdk.client", "WorkflowState": "flowsight.model.state", "configure": "flowsight.sdk.client",
    "current_run": "flowsight.sdk.client", "flush": "flowsight.sdk.client", "step": "flowsight.sdk.client",
    "workflow": "flowsight.sdk.client",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowsight' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
