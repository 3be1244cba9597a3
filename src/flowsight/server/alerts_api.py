"""``/api/v1/alerts`` and ``/api/v1/silences``: what fires, what is quiet and
why; silences made and ended (admin scope for writes).

A POST body goes through the ingest's reader
(:func:`flowsight.server.ingest.read_json_body`), as events and log entries
do: only ``application/json`` (a web page cannot send that to a local server
without the browser asking it first), ``--max-body``, gzip, malformed or too
deeply nested JSON refused as a whole. An alerts body is one alert or an
array of them (at most ``--max-events``), answered alert by alert: a bad
one is rejected with the reason and the field, the others are taken.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from flowsight.errors import AlertError, EventError, FlowsightError, HttpError
from flowsight.model.alerts import Alert, AlertStatus, Severity, new_silence
from flowsight.model.durations import parse_duration
from flowsight.model.runs.events import explain
from flowsight.server import schemas as S
from flowsight.server.ingest import decode_any, decode_items, decode_off_loop, read_json_body, write_answer
from flowsight.server.http import error, json, route
from flowsight.server.views import ALERT_STATUSES, alert_views, silence_view
from starlette.routing import Route

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext

_fast = msgspec.json.Decoder(list[S.AlertIn] | S.AlertIn)
_ALLOWED = "labels, annotations, severity, source, starts_at, ends_at, link"


def finish_alert(wire: S.AlertIn, now: float, resolve_timeout: float) -> Alert:
    """The alert a valid wire item stands for. Without ``ends_at``, it ends
    ``resolve_timeout`` from now unless it is sent again (Alertmanager's meaning)."""
    ends_at = wire.ends_at if wire.ends_at is not None else now + resolve_timeout
    alert = Alert(
        wire.labels,
        wire.annotations,
        Severity(wire.severity),
        wire.source,
        wire.starts_at if wire.starts_at is not None else now,
        ends_at,
        AlertStatus.RESOLVED if ends_at <= now else AlertStatus.FIRING,
        wire.link,
    )
    _ = alert.fingerprint  # hashed here, off the event loop for a big batch
    return alert


def parse_alerts(items: list[Any], now: float, resolve_timeout: float) -> list[Alert | EventError]:
    """Validate a batch item by item: a bad alert never costs the good ones."""
    out: list[Alert | EventError] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            out.append(AlertError(f"alert {i}: expected an object, got {type(item).__name__}", index=i))
            continue
        try:
            wire = msgspec.convert(item, S.AlertIn)
        except msgspec.ValidationError as exc:
            text, field = _explain(exc, _ALLOWED)
            out.append(AlertError(f"alert {i}: {text}", field=field, index=i))
            continue
        out.append(finish_alert(wire, now, resolve_timeout))
    return out


def _explain(exc: msgspec.ValidationError, allowed: str) -> tuple[str, str | None]:
    """msgspec's message about an alert or a silence as one a person reads
    (``field 'x': ...``), and the field it names."""
    text, field = explain(exc, allowed)
    if " - at `key` in `$." in text:  # a label or annotation name
        field = text.partition(" - at `key` in `$.")[2].rstrip("`")
        text = "a name must be letters, digits and _, not first a digit (as Prometheus' label names)"
    elif field is not None:
        field = field.split("[", 1)[0]  # labels[...]: the label is not named
        if "matching regex" in text:
            text = _PATTERN_MEANS.get(field, _UNKEPT)
        elif field == "labels" and "length >= 1" in text:
            text = "give at least one label (alertname=...)"
    return (f"field '{field}': {text}" if field else text), field


_UNKEPT = "contains a NUL character or a lone UTF-16 surrogate, which no store can keep"
_SILENCE_FIELDS = "matchers, comment, created_by, duration, starts_at, ends_at"
#: what a field's pattern (in flowsight.server.schemas) asks for, in words
_PATTERN_MEANS = {
    "link": "not an http:// or https:// URL with a host (a link of another kind, such as javascript:, is refused)",
    "duration": "not a duration; write e.g. 90s, 15m, 2h, 30d, 1h30m",
    "comment": "give a comment (why is this quiet?), with no NUL character or lone UTF-16 surrogate",
}


def answer_alerts(items: list[Alert | EventError]) -> S.AlertsAccepted:
    """The per-alert answer."""
    results: list[S.AlertResult] = []
    fingerprints: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, EventError):
            results.append(S.AlertResult(index=i, status="rejected", error=str(item), field=item.field))
        else:
            fingerprints.append(item.fingerprint)
            results.append(S.AlertResult(index=i, status="accepted", fingerprint=item.fingerprint))
    return S.AlertsAccepted(
        accepted=len(fingerprints), rejected=len(items) - len(fingerprints), fingerprints=fingerprints, results=results
    )


async def get_alerts(request: Request, st: ServerContext) -> Response:
    status = request.query_params.get("status")
    if status is not None and status not in ALERT_STATUSES:
        raise FlowsightError(f"query parameter 'status': {status!r} is not one of {', '.join(ALERT_STATUSES)}")
    # encoded there too: 100,000 rows are tenths of a second of work
    body = await st.alerting.read(lambda am: msgspec.json.encode(S.AlertList(alerts=alert_views(am, status))))
    return Response(body, media_type="application/json")


async def post_alerts(request: Request, st: ServerContext) -> Response:
    body = await read_json_body(request, st.limits)
    now = time.time()
    timeout = st.alerting.config.resolve_timeout

    def finish(wire: S.AlertIn) -> Alert:
        return finish_alert(wire, now, timeout)

    def parse(data: list[Any]) -> list[Alert | EventError]:
        return parse_alerts(data, now, timeout)

    def decode(raw: bytes) -> list[Alert | EventError]:
        return decode_items(raw, st.limits, fast=_fast, finish=finish, parse=parse, noun="alert", plural="alerts")

    items = await decode_off_loop(body, decode)
    await st.alerting.send_alerts([alert for alert in items if isinstance(alert, Alert)])
    return json(*write_answer(body, items, answer_alerts(items)))


async def get_silences(request: Request, st: ServerContext) -> Response:
    now = time.time()
    raw = request.query_params.get("all", "false")
    if raw not in ("true", "false"):
        raise FlowsightError(f"query parameter 'all': {raw!r} must be true or false")
    everything = raw == "true"
    # active and pending ones; expired ones too when asked for
    silences = [s for s in st.store.alerts.list_silences() if everything or s.ends_at > now]
    return json(S.SilenceList(silences=[silence_view(s, now) for s in sorted(silences, key=lambda s: s.starts_at)]))


async def post_silence(request: Request, st: ServerContext) -> Response:
    data = await decode_off_loop(await read_json_body(request, st.limits), decode_any)
    try:
        body = msgspec.convert(data, S.SilenceIn)
    except msgspec.ValidationError as exc:
        raise FlowsightError(f"silence: {_explain(exc, _SILENCE_FIELDS)[0]}") from None
    if body.duration is None and body.ends_at is None:
        raise FlowsightError("silence: say how long ('duration', such as 2h) or until when ('ends_at')")
    now = time.time()
    try:  # as the document describes it, but refused by a rule it states in words: 422
        duration = parse_duration(body.duration, what="field 'duration'") if body.duration is not None else None
        silence = new_silence(
            body.matchers,
            now=now,
            duration=duration,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            created_by=body.created_by or "api",
            comment=body.comment,
        )
    except FlowsightError as exc:
        raise HttpError(422, str(exc)) from None
    st.alerting.add_silence(silence)
    return json(silence_view(silence, now), 201)


async def delete_silence(request: Request, st: ServerContext) -> Response:
    sid = request.path_params["silence_id"]
    # no silence has a NUL in its id (they are made here), and PostgreSQL cannot look one up
    if "\x00" in sid or not st.alerting.expire_silence(sid):
        return error(404, f"no silence {sid!r} that is still active or pending")
    return json(S.Expired(expired=sid))


def routes() -> list[Route]:
    return [
        route("/api/v1/alerts", GET=("read", get_alerts), POST=("ingest", post_alerts)),
        route("/api/v1/silences", GET=("read", get_silences), POST=("admin", post_silence)),
        route("/api/v1/silences/{silence_id}", DELETE=("admin", delete_silence)),
    ]
