"""One POST for the HTTP receivers (webhook, Slack, Alertmanager: JSON) and
the OTLP export (protobuf), with the one rule for what a failure means:
network errors, 3xx, 429 and 5xx are temporary (retried); any other 4xx is
permanent (the receiver is broken)."""

from __future__ import annotations

import functools
import ssl

import httpx

from flowsight.options.fields import Opt, url
from flowsight.errors import DeliveryError
from flowsight.redact import redact, redact_url


# the ``url`` field of the HTTP receivers: it may hold their credentials (user
# info, a token in the query; a Slack webhook's path is one), so it is a secret
URL = Opt(url, required=True, secret=True)


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS settings, made once: making them reads the CA
    bundle from disk (tens of ms on the event loop for every send)."""
    return httpx.create_ssl_context()


async def post_body(
    url: str,
    body: bytes,
    *,
    idempotency_key: str,
    kind: str,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: dict[str, str] | None = None,
    secret_path: bool = False,
    content_type: str = "application/json",
) -> httpx.Response:
    """POST ``body`` (``content_type``); the answer, a 2xx. Errors name the receiver by ``kind`` and its URL without
    credentials (:func:`flowsight.redact.redact_url`; ``secret_path``: the
    path is one too), and every URL or query in their text is redacted.

    Raises:
        DeliveryError: permanent for a 4xx other than 429, else temporary.
    """
    label = f"{kind} {redact_url(url, secret_path=secret_path)}"
    sent = {"Content-Type": content_type, "Idempotency-Key": idempotency_key, **(headers or {})}
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport, verify=_tls()) as client:
            resp = await client.post(url, content=body, headers=sent)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{label}: {type(exc).__name__}: {redact(str(exc))}") from exc
    if resp.status_code >= 300:
        permanent = 400 <= resp.status_code < 500 and resp.status_code != 429
        # the answer may quote the URL: redacted whole (as far as it is read), then cut
        raise DeliveryError(
            f"{label}: HTTP {resp.status_code}: {redact(resp.text[:10_000])[:200]}", permanent=permanent
        )
    return resp
