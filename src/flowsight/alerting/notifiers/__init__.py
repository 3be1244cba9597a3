"""Receivers, each behind the one-method :class:`Notifier` protocol and
registered by kind in :data:`KINDS`."""

from __future__ import annotations

from typing import Protocol

from flowsight.alerting.manager import Notification


class Notifier(Protocol):
    async def send(self, note: Notification) -> None:
        """Deliver ``note``.

        Raises:
            DeliveryError: with ``permanent=True`` when retrying cannot help.
        """
