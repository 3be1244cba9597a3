"""Forwards alerts to a Prometheus Alertmanager, as Prometheus does:
``POST {url}/api/v2/alerts`` with the alerts of the notification (its
OpenAPI v2 ``postableAlerts``), so an existing Alertmanager setup — its
routes, receivers, silences, UI — takes over delivery.

End times: a resolved alert carries its ``ends_at`` (in the past), which
resolves it in Alertmanager. A firing alert carries its own ``ends_at`` when
that is later than the notification, else the notification's time plus
``FIRING_VALIDITY``. Without an end time Alertmanager would resolve it by
itself after its ``resolve_timeout`` (5 minutes by default), while flowsight
sends a still-firing group again only after the route's ``repeat_interval``
(hours); flowsight always sends the "resolved" it owes (also across
restarts), so a long validity is safe, and it still ends the alert if
flowsight goes away for good.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from flowsight.alerting.manager import Notification
from flowsight.alerting.notifiers.http import URL, post_body
from flowsight.alerting.payload import alert_json, rfc3339
from flowsight.options.fields import Options, Opt, duration
from flowsight.model.alerts import Alert, AlertStatus

# longer than any sensible repeat_interval (Alertmanager's default is 4h)
FIRING_VALIDITY = 3 * 24 * 3600.0


class AlertmanagerNotifier:
    """POSTs the alerts of each notification to the Alertmanager at ``url``
    (its base URL, e.g. ``http://alertmanager:9093``)."""

    KIND: ClassVar[str] = "alertmanager"
    OPTIONS: ClassVar[Options] = {"url": URL, "timeout": Opt(duration(positive=True))}

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        external_url: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        # the API's path goes after the base URL's path, before its query (?key=... of a proxy in front)
        parts = urlsplit(url)
        self.endpoint = urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/api/v2/alerts"))
        self.timeout = timeout
        self.external_url = external_url
        self.transport = transport

    def alerts(self, note: Notification) -> list[dict[str, Any]]:
        """The ``postableAlerts`` body for ``note``."""
        return [self._postable(a, note) for a in note.alerts]

    def _postable(self, a: Alert, note: Notification) -> dict[str, Any]:
        j = alert_json(a, self.external_url)
        out: dict[str, Any] = {"labels": j["labels"], "annotations": j["annotations"]}
        if a.starts_at:
            out["startsAt"] = j["startsAt"]
        if a.status is AlertStatus.RESOLVED:
            out["endsAt"] = rfc3339(a.ends_at if a.ends_at is not None else note.at)
        else:
            # from the notification's time, not the clock's: a retried
            # delivery sends the same body (never before the start, which
            # Alertmanager refuses)
            since = max(note.at, a.starts_at)
            out["endsAt"] = rfc3339(
                a.ends_at if a.ends_at is not None and a.ends_at > since else since + FIRING_VALIDITY
            )
        if j["generatorURL"]:
            out["generatorURL"] = j["generatorURL"]
        return out

    async def send(self, note: Notification) -> None:
        """Deliver ``note``'s alerts: a 2xx answer is success.

        Raises:
            DeliveryError: temporary on network errors, 429, 3xx and 5xx;
                permanent on other 4xx (Alertmanager refusing the alerts,
                e.g. an invalid label name; a wrong path).
        """
        body = msgspec.json.encode(self.alerts(note))
        await post_body(
            self.endpoint,
            body,
            idempotency_key=note.idempotency_key,
            kind="alertmanager",
            timeout=self.timeout,
            transport=self.transport,
        )
