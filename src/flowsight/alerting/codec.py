"""A :class:`Notification` as JSON bytes for the outbox, and back.

The round trip is exact: the decoded notification equals the original, so
its idempotency key is the original's (floats are written in their shortest
exact form). The body carries a format version ``v``; a field added later
gets a default, so rows written by an older flowsight still decode.
"""

from __future__ import annotations

import msgspec

from flowsight.alerting.manager import Notification
from flowsight.model.alerts import Alert, AlertStatus, Severity

VERSION = 1


class _AlertWire(msgspec.Struct, array_like=True):
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    source: str
    starts_at: float
    ends_at: float | None
    status: str
    link: str | None


class _NoteWire(msgspec.Struct, kw_only=True):
    v: int = VERSION
    receiver: str
    group_key: str
    status: str
    alerts: list[_AlertWire]
    reason: str
    route: str
    at: float
    group_labels: list[tuple[str, str]] = []
    sequence: int = 0


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(_NoteWire)


def encode_notification(note: Notification) -> bytes:
    """``note`` as UTF-8 JSON."""
    return _enc.encode(
        _NoteWire(
            receiver=note.receiver,
            group_key=note.group_key,
            status=note.status,
            alerts=[
                _AlertWire(
                    dict(a.labels),
                    dict(a.annotations),
                    a.severity.value,
                    a.source,
                    a.starts_at,
                    a.ends_at,
                    a.status.value,
                    a.link,
                )
                for a in note.alerts
            ],
            reason=note.reason,
            route=note.route,
            at=note.at,
            group_labels=list(note.group_labels),
            sequence=note.sequence,
        )
    )


def decode_notification(body: bytes) -> Notification:
    """The notification :func:`encode_notification` made ``body`` from.

    Raises:
        ValueError: ``body`` is not one (says what is wrong with it).
    """
    try:
        w = _dec.decode(body)
        if w.v > VERSION:
            raise ValueError(f"format version {w.v} is newer than this flowsight's ({VERSION}); upgrade it")
        alerts = tuple(
            Alert(
                a.labels,
                a.annotations,
                Severity(a.severity),
                a.source,
                a.starts_at,
                a.ends_at,
                AlertStatus(a.status),
                a.link,
            )
            for a in w.alerts
        )
    except (msgspec.DecodeError, ValueError) as exc:
        raise ValueError(f"not an encoded notification: {exc}") from exc
    return Notification(
        w.receiver, w.group_key, w.status, alerts, w.reason, w.route, w.at, tuple((k, v) for k, v in w.group_labels),
        w.sequence,
    )  # fmt: skip
