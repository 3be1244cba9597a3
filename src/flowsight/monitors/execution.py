"""The specification's execution monitor: progress of every run, and the
event channel others subscribe to."""

from __future__ import annotations

from collections.abc import Callable

from flowsight.errors import EventError
from flowsight.model.runs.eta import Eta, estimate_eta
from flowsight.model.runs.events import Event
from flowsight.model.runs.execution import ExecutionMetrics, Outcome, apply_event, new_metrics
from flowsight.model.runs.history import WorkflowHistory
from flowsight.monitors.channel import EventChannel, Subscription


class ExecutionMonitor:
    """``metrics``: run id -> :class:`ExecutionMetrics`; ``event_sender``: the
    channel every tracked event is published on."""

    def __init__(self, *, queue_size: int = 1000) -> None:
        self.metrics: dict[str, ExecutionMetrics] = {}
        self.event_sender: EventChannel[Event] = EventChannel(queue_size)

    async def track_execution(self, workflow_id: str, event: Event) -> Outcome:
        """Update the run's metrics with ``event`` and publish it.

        Raises:
            EventError: the event belongs to another run.
        """
        if event.run_id != workflow_id:
            raise EventError(
                f"event {event.id}: run_id {event.run_id!r} does not match workflow_id {workflow_id!r}",
                field="run_id",
            )
        m = self.metrics.get(workflow_id)
        if m is None:
            m = self.metrics[workflow_id] = new_metrics(event)
        out = apply_event(m, event)
        self.event_sender.publish(event)
        return out

    def subscribe(
        self, accept: Callable[[Event], bool] | None = None, *, queue_size: int | None = None
    ) -> Subscription[Event]:
        """``async for ev in monitor.subscribe(EventFilter(workflow="etl")):``"""
        return self.event_sender.subscribe(accept, queue_size=queue_size)

    def eta(self, workflow_id: str, history: WorkflowHistory | None, now: float) -> Eta | None:
        m = self.metrics.get(workflow_id)
        return estimate_eta(m, history, now) if m is not None else None
