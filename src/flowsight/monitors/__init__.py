"""The five monitors of the specification: execution, performance, state,
fault and log, and the event channel they publish on.

Each name is imported from its module when first used (PEP 562): the channel
alone does not pull in the store that the state, fault, log and performance
monitors write to.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flowsight.monitors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
