"""A generic webhook: POSTs Alertmanager's webhook payload (version 4)."""

from __future__ import annotations

from typing import ClassVar

import httpx
import msgspec

from flowsight.alerting.manager import Notification
from flowsight.alerting.payload import webhook_payload
from flowsight.alerting.notifiers.http import URL, post_body
from flowsight.options.fields import Options, Opt, duration, string_table


class WebhookNotifier:
    KIND: ClassVar[str] = "webhook"
    # a header may hold a token: a secret
    OPTIONS: ClassVar[Options] = {
        "url": URL,
        "headers": Opt(string_table, secret=True),
        "timeout": Opt(duration(positive=True)),
    }

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        external_url: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.headers = headers or {}
        self.external_url = external_url
        self.transport = transport

    async def send(self, note: Notification) -> None:
        body = msgspec.json.encode(webhook_payload(note, self.external_url))
        await post_body(
            self.url,
            body,
            idempotency_key=note.idempotency_key,
            kind="webhook",
            timeout=self.timeout,
            transport=self.transport,
            headers=self.headers,
        )
