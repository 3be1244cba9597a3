"""Writes each notification to the log (logger ``flowsight.alerts``)."""

from __future__ import annotations

import logging

from flowsight.alerting.manager import Notification

log = logging.getLogger("flowsight.alerts")


class LogNotifier:
    def __init__(self, level: int = logging.WARNING) -> None:
        self.level = level

    async def send(self, note: Notification) -> None:
        names = ", ".join(sorted({a.name or a.fingerprint for a in note.alerts}))
        log.log(self.level, "[%s] %s (%s, %d alert%s) to %s: %s", note.status.upper(), note.group_key, note.reason,
                len(note.alerts), "" if len(note.alerts) == 1 else "s", note.receiver, names)
