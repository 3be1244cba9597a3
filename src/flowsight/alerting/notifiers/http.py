"""One JSON POST for the HTTP receivers (webhook, Slack, Alertmanager), with
the one rule for what a failure means: network errors, 3xx, 429 and 5xx are
temporary (retried); any other 4xx is permanent (the receiver is broken)."""

from __future__ import annotations

import functools
import ssl

import httpx

from flowsight.errors import DeliveryError


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS settings, made once: making them reads the CA
    bundle from disk (tens of ms on the event loop for every send)."""
    return httpx.create_ssl_context()


async def post_json(url: str, body: bytes, *, idempotency_key: str, label: str, timeout: float,
                    transport: httpx.AsyncBaseTransport | None = None,
                    headers: dict[str, str] | None = None) -> None:
    """POST ``body``; ``label`` names the receiver in errors (it may hide a secret URL).

    Raises:
        DeliveryError: permanent for a 4xx other than 429, else temporary.
    """
    sent = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key, **(headers or {})}
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport, verify=_tls()) as client:
            resp = await client.post(url, content=body, headers=sent)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{label}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code >= 300:
        permanent = 400 <= resp.status_code < 500 and resp.status_code != 429
        raise DeliveryError(f"{label}: HTTP {resp.status_code}: {resp.text[:200]}", permanent=permanent)
