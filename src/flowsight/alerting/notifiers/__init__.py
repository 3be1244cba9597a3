"""Receivers, each behind the one-method :class:`Notifier` protocol, and
:data:`KINDS`, the one table of receiver kinds.

A receiver kind is one module in this package whose class declares, beside
its code, its ``KIND`` (as written in ``flowsight.toml``) and its ``OPTIONS``:
the fields of its ``[[alerting.receivers]]`` table, each a
:class:`~flowsight.options.fields.Opt` (converter, required, the keyword
argument it becomes...). The configuration reads a receiver's fields with
them (:func:`flowsight.config.receivers.read_receivers`, ``flowsight
check``) and makes the notifier from the same class
(:func:`~flowsight.config.receivers.build_notifier`). A class may also have
a static ``check_options(reader, table, options, base_dir)`` for what its
fields need of each other (the e-mail receiver's password file).

Adding a receiver: its module, one line in :data:`KINDS`, its tests.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from flowsight.alerting.manager import Notification


class Notifier(Protocol):
    async def send(self, note: Notification) -> None:
        """Deliver ``note``.

        Raises:
            DeliveryError: with ``permanent=True`` when retrying cannot help.
        """


#: what the exporters' names in the outbox begin with (``export.otlp``); no receiver's may
EXPORT_PREFIX = "export."

#: kind (as written in flowsight.toml) -> (module in this package, its class)
KINDS: dict[str, tuple[str, str]] = {
    "alertmanager": ("alertmanager", "AlertmanagerNotifier"),
    "command": ("command", "CommandNotifier"),
    "email": ("email", "EmailNotifier"),
    "log": ("log", "LogNotifier"),
    "slack": ("slack", "SlackNotifier"),
    "webhook": ("webhook", "WebhookNotifier"),
}


def notifier_class(kind: str) -> type:
    """The class of receivers of ``kind`` (one of :data:`KINDS`).

    Raises:
        KeyError: no such kind.
    """
    module, name = KINDS[kind]
    cls: type = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return cls


# After the protocol and the table on purpose: the receiver modules import
# the manager, the payload, the templates and the configuration's field
# helpers, never this package's names, and the configuration reads this
# package only when it reads a receiver, so there is no import cycle.
from flowsight.alerting.notifiers.alertmanager import AlertmanagerNotifier  # noqa: E402
from flowsight.alerting.notifiers.command import CommandNotifier  # noqa: E402
from flowsight.alerting.notifiers.email import EmailNotifier  # noqa: E402
from flowsight.alerting.notifiers.log import LogNotifier  # noqa: E402
from flowsight.alerting.notifiers.slack import SlackNotifier  # noqa: E402
from flowsight.alerting.notifiers.webhook import WebhookNotifier  # noqa: E402

__all__ = [
    "KINDS",
    "AlertmanagerNotifier",
    "CommandNotifier",
    "EmailNotifier",
    "LogNotifier",
    "Notifier",
    "SlackNotifier",
    "WebhookNotifier",
    "notifier_class",
]
