"""flowsight: workflow observability in one pip install.

Here are the SDK, the five monitors and the alert manager, and the
specification's types (``from flowsight import ExecutionMonitor, LogEntry``);
each is defined in its own module (the ``_WHERE`` table below says which) and
imported from there when first used. Everything else lives in its package
(``flowsight.model``, ``flowsight.detectors``, ``flowsight.store``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowsight._lazy import lazy_exports

if TYPE_CHECKING:
    from flowsight.alerting.manager import AlertManager
    from flowsight.detectors.base import FaultDetector
    from flowsight.errors import FlowsightError
    from flowsight.model.alerts import Alert, Severity
    from flowsight.model.runs.events import Event, EventKind, ExecutionEvent
    from flowsight.model.runs.execution import ExecutionMetrics
    from flowsight.model.faults import (
        ConfigurationError,
        DataCorruption,
        FaultRecord,
        FaultType,
        NetworkTimeout,
        ResourceExhaustion,
        ServiceUnavailable,
    )
    from flowsight.logs.alert_rules import LogAlertRule
    from flowsight.logs.entries import LogEntry, LogLevel
    from flowsight.model.performance import PerformanceMetrics
    from flowsight.model.runs.state import StateTransition, WorkflowState
    from flowsight.model.performance.thresholds import Threshold
    from flowsight.monitors.execution import ExecutionMonitor
    from flowsight.monitors.fault import FaultMonitor
    from flowsight.monitors.log import LogMonitor
    from flowsight.monitors.performance import PerformanceMonitor
    from flowsight.monitors.state import StateMonitor
    from flowsight.sdk.client import Client, Run, Step, configure, current_run, expect, flush, step, workflow
    from flowsight.sdk.logs import LogHandler

__version__ = "0.1.0"

# Each name is imported from its home module when first used (PEP 562), so
# that a command that needs little of the package (``flowsight run`` in front
# of a cron line) does not pay for the monitors and the stores at every start.
_WHERE = {
    name: module
    for module, names in (
        # the SDK
        (
            "flowsight.sdk.client",
            ("Client", "Run", "Step", "configure", "current_run", "expect", "flush", "step", "workflow"),
        ),
        ("flowsight.sdk.logs", ("LogHandler",)),
        ("flowsight.errors", ("FlowsightError",)),
        # the monitors and the alert manager
        ("flowsight.monitors.execution", ("ExecutionMonitor",)),
        ("flowsight.monitors.performance", ("PerformanceMonitor",)),
        ("flowsight.monitors.state", ("StateMonitor",)),
        ("flowsight.monitors.fault", ("FaultMonitor",)),
        ("flowsight.monitors.log", ("LogMonitor",)),
        ("flowsight.alerting.manager", ("AlertManager",)),
        # the specification's types
        ("flowsight.model.runs.events", ("Event", "EventKind", "ExecutionEvent")),
        ("flowsight.model.runs.execution", ("ExecutionMetrics",)),
        ("flowsight.model.performance", ("PerformanceMetrics",)),
        ("flowsight.model.performance.thresholds", ("Threshold",)),
        ("flowsight.model.runs.state", ("StateTransition", "WorkflowState")),
        (
            "flowsight.model.faults",
            (
                "ConfigurationError",
                "DataCorruption",
                "FaultRecord",
                "FaultType",
                "NetworkTimeout",
                "ResourceExhaustion",
                "ServiceUnavailable",
            ),
        ),
        ("flowsight.detectors.base", ("FaultDetector",)),
        ("flowsight.logs.entries", ("LogEntry", "LogLevel")),
        ("flowsight.logs.alert_rules", ("LogAlertRule",)),
        ("flowsight.model.alerts", ("Alert", "Severity")),
    )
    for name in names
}


__getattr__, __dir__ = lazy_exports("flowsight", _WHERE, globals())

__all__ = [
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
