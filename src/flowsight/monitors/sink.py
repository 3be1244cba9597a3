"""Where a monitor's alerts go: :class:`AlertSink` (the alert manager, or the
server's alerting service) or a plain callable; :func:`send` hands one over."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from flowsight.model.alerts import Alert


@runtime_checkable
class AlertSink(Protocol):
    def send_alert(self, alert: Alert) -> None: ...


Sink = AlertSink | Callable[[Alert], None]


def send(sink: Sink | None, alert: Alert) -> None:
    """Give ``alert`` to ``sink`` (nothing happens without one)."""
    if sink is None:
        return
    if isinstance(sink, AlertSink):
        sink.send_alert(alert)
    else:
        sink(alert)
