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


# After the protocol on purpose: the receiver modules import only the manager,
# the payload and the templates, never this package's names, so there is no
# import cycle.
from flowsight.alerting.notifiers.alertmanager import AlertmanagerNotifier  # noqa: E402
from flowsight.alerting.notifiers.command import CommandNotifier  # noqa: E402
from flowsight.alerting.notifiers.email import EmailNotifier  # noqa: E402
from flowsight.alerting.notifiers.log import LogNotifier  # noqa: E402
from flowsight.alerting.notifiers.slack import SlackNotifier  # noqa: E402
from flowsight.alerting.notifiers.webhook import WebhookNotifier  # noqa: E402

# kind (as written in flowsight.toml) -> the class; its keyword arguments are the kind's fields
KINDS: dict[str, type] = {
    "alertmanager": AlertmanagerNotifier,
    "command": CommandNotifier,
    "email": EmailNotifier,
    "log": LogNotifier,
    "slack": SlackNotifier,
    "webhook": WebhookNotifier,
}

__all__ = ["KINDS", "AlertmanagerNotifier", "CommandNotifier", "EmailNotifier", "LogNotifier", "Notifier",
           "SlackNotifier", "WebhookNotifier"]
