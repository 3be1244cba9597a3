"""One JSON POST for the HTTP receivers (webhook, Slack, Alertmanager), with
the one rule for what a failure means: network errors, 3xx, 429 and 5xx are
temporary (retried); any other 4xx is permanent (the receiver is broken)."""

from __future__ import annotations

import httpx

from flowsight.errors import DeliveryError


async def post_json(url: str, body: bytes, *, idempotency_key: str, label: str, timeout: float,
                    transport: httpx.AsyncBaseTransport | None = None,
                    headers: dict[str, str] | None = None) -> None:
    """POST ``body``; ``label`` names the receiver in errors (it may hide a secret URL).

    Raises:
        DeliveryError: permanent for a 4xx other than 429, else temporary.
    """
    sent = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key, **(headers or {})}
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as client:
            resp = await client.post(url, content=body, headers=sent)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{label}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code >= 300:
        permanent = 400 <= resp.status_code < 500 and resp.status_code != 429
        raise DeliveryError(f"{label}: HTTP {resp.status_code}: {resp.text[:200]}", permanent=permanent)
