"""The five monitors of the specification (execution and state so far)."""

from __future__ import annotations

from flowsight.monitors.channel import EventChannel, EventFilter, Subscription
from flowsight.monitors.execution import ExecutionMonitor
from flowsight.monitors.state import StateMonitor

__all__ = ["EventChannel", "EventFilter", "ExecutionMonitor", "StateMonitor", "Subscription"]
