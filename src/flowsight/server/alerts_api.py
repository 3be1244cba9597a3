"""``/api/v1/alerts`` and ``/api/v1/silences``: what fires, what is quiet and
why; silences made and ended (admin scope for writes)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from flowsight.errors import FlowsightError
from flowsight.model.alerts import Alert, AlertStatus, Severity, Silence, new_silence
from flowsight.model.durations import parse_duration
from flowsight.server import schemas as S
from flowsight.server.openapi import ALERT_STATUSES

if TYPE_CHECKING:
    from flowsight.alerting.manager import AlertManager
    from flowsight.server.app import ServerState



def alert_rows(am: AlertManager, status: str | None = None) -> list[dict[str, Any]]:
    """Every alert the manager holds, newest first, with its status for people."""
    now = am.clock()
    told: dict[str, list[str]] = {}
    for receiver, fp in am.told_firing:
        told.setdefault(fp, []).append(receiver)
    rows: list[dict[str, Any]] = []
    for fp, entry in am.alerts.items():
        a = entry.alert
        shown = am.status_of(fp)
        if status is not None and shown != status:
            continue
        rows.append({
            "fingerprint": fp, "labels": dict(a.labels), "annotations": dict(a.annotations),
            "severity": a.severity.value, "source": a.source, "status": shown,
            "muted_by": am.mute_reason(a, now) if a.status is AlertStatus.FIRING else None,
            "starts_at": a.starts_at, "ends_at": a.ends_at, "link": a.link,
            "receivers_told": sorted(told.get(fp, [])),
        })
    rows.sort(key=lambda r: r["starts_at"], reverse=True)
    return rows


def silence_row(s: Silence, now: float) -> dict[str, Any]:
    state = "active" if s.active(now) else "pending" if s.starts_at > now else "expired"
    return {"id": s.id, "matchers": [f"{m.name}{m.op}{m.value}" for m in s.matchers], "starts_at": s.starts_at,
            "ends_at": s.ends_at, "created_by": s.created_by, "comment": s.comment, "state": state}


def _decode(body: bytes, typ: Any) -> Any:
    try:
        return msgspec.json.decode(body, type=typ)
    except msgspec.ValidationError as exc:
        raise FlowsightError(f"body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise FlowsightError(f"malformed JSON: {exc}") from None


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


async def get_alerts(request: Request, st: ServerState) -> Response:
    status = request.query_params.get("status")
    if status is not None and status not in ALERT_STATUSES:
        raise FlowsightError(f"query parameter 'status': {status!r} is not one of {', '.join(ALERT_STATUSES)}")
    # encoded there too: 100,000 rows are tenths of a second of work
    body = await st.alerting.read(lambda am: msgspec.json.encode({"alerts": alert_rows(am, status)}))
    return Response(body, media_type="application/json")


async def post_alerts(request: Request, st: ServerState) -> Response:
    body = await request.body()
    items = _decode(body, list[S.AlertIn] | S.AlertIn)
    items = items if isinstance(items, list) else [items]
    now = time.time()
    alerts = []
    for i, a in enumerate(items):
        if not a.labels:
            raise FlowsightError(f"alert {i}: field 'labels': give at least one label (alertname=...)")
        # no end given: it ends resolve_timeout from now unless it is sent again (Alertmanager's meaning)
        ends_at = a.ends_at if a.ends_at is not None else now + st.alerting.config.resolve_timeout
        alerts.append(Alert(a.labels, a.annotations, Severity(a.severity), a.source,
                            a.starts_at if a.starts_at is not None else now, ends_at,
                            AlertStatus.RESOLVED if ends_at <= now else AlertStatus.FIRING, a.link))
    await st.alerting.send_alerts(alerts)
    return _json({"accepted": len(alerts), "fingerprints": [a.fingerprint for a in alerts]})


async def get_silences(request: Request, st: ServerState) -> Response:
    now = time.time()
    raw = request.query_params.get("all", "false")
    if raw not in ("true", "false"):
        raise FlowsightError(f"query parameter 'all': {raw!r} must be true or false")
    everything = raw == "true"
    # active and pending ones; expired ones too when asked for
    silences = [s for s in st.store.list_silences() if everything or s.ends_at > now]
    return _json({"silences": [silence_row(s, now) for s in sorted(silences, key=lambda s: s.starts_at)]})


async def post_silence(request: Request, st: ServerState) -> Response:
    body = _decode(await request.body(), S.SilenceIn)
    now = time.time()
    duration = parse_duration(body.duration, what="field 'duration'") if body.duration is not None else None
    silence = new_silence(body.matchers, now=now, duration=duration, starts_at=body.starts_at,
                          ends_at=body.ends_at, created_by=body.created_by or "api", comment=body.comment)
    st.alerting.add_silence(silence)
    return _json(silence_row(silence, now), 201)


async def delete_silence(request: Request, st: ServerState) -> Response:
    sid = request.path_params["silence_id"]
    if not st.alerting.expire_silence(sid):
        return _json({"error": f"no silence {sid!r} that is still active or pending"}, 404)
    return _json({"expired": sid})
