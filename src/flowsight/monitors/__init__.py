"""The five monitors of the specification: execution, performance, state,
fault and log, and the event channel they publish on.

Each name is imported from its module when first used (PEP 562): the channel
alone does not pull in the store that the state, fault, log and performance
monitors write to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowsight._lazy import lazy_exports

if TYPE_CHECKING:
    from flowsight.monitors.channel import EventChannel, EventFilter, Subscription
    from flowsight.monitors.execution import ExecutionMonitor
    from flowsight.monitors.fault import FaultMonitor
    from flowsight.monitors.log import LogMonitor
    from flowsight.monitors.performance import PerformanceMonitor
    from flowsight.monitors.state import StateMonitor

_WHERE = {
    "EventChannel": "flowsight.monitors.channel",
    "EventFilter": "flowsight.monitors.channel",
    "Subscription": "flowsight.monitors.channel",
    "ExecutionMonitor": "flowsight.monitors.execution",
    "FaultMonitor": "flowsight.monitors.fault",
    "LogMonitor": "flowsight.monitors.log",
    "PerformanceMonitor": "flowsight.monitors.performance",
    "StateMonitor": "flowsight.monitors.state",
}


__getattr__, __dir__ = lazy_exports("flowsight.monitors", _WHERE, globals())

__all__ = [
    "EventChannel",
    "EventFilter",
    "ExecutionMonitor",
    "FaultMonitor",
    "LogMonitor",
    "PerformanceMonitor",
    "StateMonitor",
    "Subscription",
]
