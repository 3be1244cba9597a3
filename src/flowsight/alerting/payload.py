"""The JSON body receivers get: Prometheus Alertmanager's webhook payload,
version 4, so receivers written for Alertmanager work unchanged; plus an
``idempotencyKey`` (also sent as the ``Idempotency-Key`` header) and
``flowsight`` details (reason: group, flapping or settled)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flowsight.alerting.manager import Notification
from flowsight.model.alerts import Alert, AlertStatus

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def alert_json(a: Alert, external_url: str) -> dict[str, Any]:
    labels = {**a.labels, "severity": a.labels.get("severity", a.severity.value)}
    return {
        "status": "resolved" if a.status is AlertStatus.RESOLVED else "firing",
        "labels": labels,
        "annotations": dict(a.annotations),
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at) if a.status is AlertStatus.RESOLVED else ZERO_TIME,
        "generatorURL": a.link or external_url,
        "fingerprint": a.fingerprint,
    }


def webhook_payload(note: Notification, external_url: str = "") -> dict[str, Any]:
    alerts = [alert_json(a, external_url) for a in note.alerts]
    return {
        "version": "4",
        "groupKey": note.group_key,
        "truncatedAlerts": 0,
        "status": note.status,
        "receiver": note.receiver,
        "groupLabels": dict(note.group_labels),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
        "idempotencyKey": note.idempotency_key,
        "flowsight": {"reason": note.reason, "route": note.route},
    }
