"""Runs a program with the payload (JSON) on stdin; a non-zero exit is a
failed delivery (retried), a program that is not there a permanent one."""

from __future__ import annotations

import asyncio
import os

import msgspec

from flowsight.alerting.manager import Notification
from flowsight.alerting.payload import webhook_payload
from flowsight.errors import DeliveryError


class CommandNotifier:
    def __init__(self, argv: list[str], *, timeout: float = 30.0, external_url: str = "") -> None:
        if not argv:
            raise ValueError("command receiver: give the program to run")
        self.argv = argv
        self.timeout = timeout
        self.external_url = external_url

    async def send(self, note: Notification) -> None:
        body = msgspec.json.encode(webhook_payload(note, self.external_url))
        env = {**os.environ, "FLOWSIGHT_STATUS": note.status, "FLOWSIGHT_RECEIVER": note.receiver,
               "FLOWSIGHT_IDEMPOTENCY_KEY": note.idempotency_key}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env)
        except OSError as exc:
            raise DeliveryError(f"command {self.argv[0]!r} cannot run: {exc}", permanent=True) from exc
        try:
            out, _ = await asyncio.wait_for(proc.communicate(body), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise DeliveryError(f"command {self.argv[0]!r} did not finish within {self.timeout}s") from None
        if proc.returncode != 0:
            tail = out.decode(errors="replace").strip()[-300:]
            raise DeliveryError(f"command {self.argv[0]!r} exited {proc.returncode}: {tail}")
