"""A generic webhook: POSTs Alertmanager's webhook payload (version 4)."""

from __future__ import annotations

import httpx
import msgspec

from flowsight.alerting.manager import Notification
from flowsight.alerting.payload import webhook_payload
from flowsight.errors import DeliveryError


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
        headers = {"Content-Type": "application/json", "Idempotency-Key": note.idempotency_key, **self.headers}
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                resp = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {self.url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 300:
            permanent = 400 <= resp.status_code < 500 and resp.status_code != 429
            raise DeliveryError(f"webhook {self.url}: HTTP {resp.status_code}: {resp.text[:200]}", permanent=permanent)
