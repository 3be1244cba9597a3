"""Writes each notification to the log (logger ``flowsight.alerts``)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from flowsight.alerting.manager import Notification
from flowsight.options.fields import Options, Opt, choice

log = logging.getLogger("flowsight.alerts")

LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def log_level(value: Any) -> int:
    """The ``level`` field: a level's name, as the level's number."""
    return LOG_LEVELS[choice(LOG_LEVELS)(value)]


class LogNotifier:
    KIND: ClassVar[str] = "log"
    OPTIONS: ClassVar[Options] = {"level": Opt(log_level)}

    def __init__(self, level: int = logging.WARNING) -> None:
        self.level = level

    async def send(self, note: Notification) -> None:
        names = ", ".join(sorted({a.name or a.fingerprint for a in note.alerts}))
        log.log(
            self.level,
            "[%s] %s (%s, %d alert%s) to %s: %s",
            note.status.upper(),
            note.group_key,
            note.reason,
            len(note.alerts),
            "" if len(note.alerts) == 1 else "s",
            note.receiver,
            names,
        )
