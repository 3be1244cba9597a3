"""What the API answers and the CLI prints about alerts, silences and
faults: the structs of :mod:`flowsight.server.schemas`, made once here and
encoded as they are (no second dict of the same shape). No web framework is
imported, so the CLI formats its rows from these without loading one."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flowsight.model.alerts import AlertStatus, Silence
from flowsight.model.faults import FaultRecord
from flowsight.server import schemas as S

if TYPE_CHECKING:
    from flowsight.alerting.manager import AlertManager
    from flowsight.monitors.fault import DetectorState

#: an alert's status as people see it: firing, pending or resolved, or why a firing one is quiet
ALERT_STATUSES = ("firing", "pending", "resolved", "silenced", "inhibited", "flapping")


def alert_views(am: AlertManager, status: str | None = None) -> list[S.AlertOut]:
    """Every alert the manager holds (of ``status`` when given), newest first."""
    now = am.clock()
    told: dict[str, list[str]] = {}
    for receiver, fp in am.told_firing:
        told.setdefault(fp, []).append(receiver)
    out: list[S.AlertOut] = []
    for fp, entry in am.alerts.items():
        a = entry.alert
        shown = am.status_of(fp)
        if status is not None and shown != status:
            continue
        out.append(
            S.AlertOut(
                fingerprint=fp,
                labels=dict(a.labels),
                annotations=dict(a.annotations),
                severity=a.severity.value,
                source=cast(S.Source, a.source),
                status=cast(S.AlertStatusName, shown),
                muted_by=am.mute_reason(a, now) if a.status is AlertStatus.FIRING else None,
                starts_at=a.starts_at,
                ends_at=a.ends_at,
                link=a.link,
                receivers_told=sorted(told.get(fp, [])),
            )
        )
    out.sort(key=lambda r: r.starts_at, reverse=True)
    return out


def silence_view(s: Silence, now: float) -> S.SilenceOut:
    state = "active" if s.active(now) else "pending" if s.starts_at > now else "expired"
    return S.SilenceOut(
        id=s.id,
        matchers=[f"{m.name}{m.op}{m.value}" for m in s.matchers],
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        created_by=s.created_by,
        comment=s.comment,
        state=cast(S.SilenceState, state),
    )


def fault_view(r: FaultRecord, now: float) -> S.FaultOut:
    """A fault record as people and programs see it (the API's and the CLI's)."""
    f = r.fault
    return S.FaultOut(
        id=r.id,
        status=r.status.value,
        severity=r.severity.value,
        kind=f.kind.value,
        alertname=f.kind.alertname,
        target=f.target,
        detector=f.detector,
        message=f.message,
        evidence=dict(f.evidence),
        workflows=list(f.workflows),
        runs=list(f.runs),
        opened_at=r.timestamp,
        resolved_at=r.resolved_at,
        duration_s=r.duration(now),
    )


def detector_view(s: DetectorState) -> S.DetectorOut:
    """How a detector the fault monitor runs is doing."""
    return S.DetectorOut(
        name=s.name,
        status=cast(S.DetectorStatus, s.status),
        checks=s.checks,
        last_check=s.last_check,
        last_duration_s=s.last_duration,
        last_error=s.last_error,
        interval_s=s.schedule.interval,
    )
