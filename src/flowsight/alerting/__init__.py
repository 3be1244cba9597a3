"""The alert manager: dedup, grouping, silences, inhibition, flapping, routing."""

from __future__ import annotations

from flowsight.alerting.manager import AlertManager, Notification

__all__ = ["AlertManager", "Notification"]
