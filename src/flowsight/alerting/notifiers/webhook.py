"""A generic webhook: POSTs Alertmanager's webhook payload (version 4)."""

from __future__ import annotations

import httpx
import msgspec

from flowsight.alerting.manager import Notification
from flowsight.alerting.payload import webhook_payload
from flowsight.alerting.notifiers.http import post_json


class WebhookNotifier:
    def __init__(self, url: str, *, timeout: float = 10.0, headers: dict[str, str] | None = None,
                 external_url: str = "", transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.headers = headers or {}
        self.external_url = external_url
        self.transport = transport

    async def send(self, note: Notification) -> None:
        body = msgspec.json.encode(webhook_payload(note, self.external_url))
        await post_json(self.url, body, idempotency_key=note.idempotency_key, kind="webhook",
                        timeout=self.timeout, transport=self.transport, headers=self.headers)
