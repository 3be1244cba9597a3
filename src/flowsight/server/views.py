"""What the API answers and the CLI prints about runs, log entries, alerts,
silences, faults and detectors: the structs of :mod:`flowsight.server.schemas`, made once here and
encoded as they are (no second dict of the same shape). No web framework is
imported, so the CLI formats its rows from these without loading one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast, get_args

from flowsight.model.alerts import AlertStatus, Silence
from flowsight.logs.records import StoredLog
from flowsight.model.faults import FaultRecord
from flowsight.query import RunDetail, RunView
from flowsight.model.schedules.judge import PENDING, SlotJudgement
from flowsight.model.schedules.slots import NEVER, local_text
from flowsight.server import schemas as S

if TYPE_CHECKING:
    from flowsight.alerting.manager import AlertManager
    from zoneinfo import ZoneInfo

    from flowsight.monitors.fault_decide import DetectorState
    from flowsight.monitors.schedules import ScheduleState

#: an alert's status as people see it: firing, pending or resolved, or why a firing one is quiet
ALERT_STATUSES: tuple[str, ...] = get_args(S.AlertStatusName)


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


def log_out(stored: StoredLog) -> S.LogOut:
    """A stored log entry (``GET /api/v1/logs``, ``flowsight logs --json``)."""
    e = stored.record.entry
    return S.LogOut(
        seq=stored.seq,
        id=stored.record.id,
        ts=e.timestamp,
        level=e.level.value,
        message=e.message,
        source=e.source,
        workflow=e.workflow,
        run_id=e.run_id,
        step=e.step,
        template_id=stored.record.template_id,
        fields=dict(e.fields),
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


def run_out(view: RunView) -> S.RunOut:
    """A run as the API and ``flowsight runs --json`` show it."""
    return S.RunOut(**_run_fields(view))


def run_detail_out(detail: RunDetail) -> S.RunDetailOut:
    """One run with its steps, transitions and the faults that hurt it."""
    return S.RunDetailOut(
        **_run_fields(detail.view),
        attrs=detail.attrs,
        steps=[
            S.StepOut(
                step=s.step,
                attempt=s.attempt,
                status=cast(S.StepStatus, s.status),
                started_at=s.started_at,
                ended_at=s.ended_at,
                duration_seconds=_round(s.duration),
                error=s.error,
                traceback=s.traceback,
            )
            for s in detail.steps
        ],
        transitions=[
            S.TransitionOut(
                timestamp=t.timestamp,
                old_state=t.old_state.value,
                new_state=t.new_state.value,
                reason=t.reason,
                source=t.source,
                applied=t.applied,
            )
            for t in detail.transitions
        ],
        faults=[
            S.RunFaultOut(
                id=f.id,
                status=f.status.value,
                severity=f.severity.value,
                kind=f.fault.kind.value,
                alertname=f.fault.kind.alertname,
                target=f.fault.target,
                detector=f.fault.detector,
                message=f.fault.message,
                opened_at=f.timestamp,
                resolved_at=f.resolved_at,
            )
            for f in detail.faults
        ],
    )


def _run_fields(view: RunView) -> dict[str, Any]:
    m, stall, eta = view.run, view.stall, view.eta
    return {
        "run_id": m.workflow_id,
        "workflow": m.workflow,
        "state": m.state.value,
        "stalled": view.stalled,
        "idle_seconds": round(stall.idle_for, 3) if stall else None,
        "stall_bound_seconds": round(stall.bound, 3) if stall else None,
        "current_step": m.current_step,
        "completed_steps": m.completed_steps,
        "failed_steps": m.failed_steps,
        "total_steps": m.total_steps,
        "retries": m.retries,
        "percent_done": None if m.percent_done is None else round(m.percent_done, 1),
        "start_time": m.start_time,
        "end_time": m.end_time,
        "duration_seconds": _round(m.duration(view.now)),
        "usual_duration_seconds": _round(view.usual_duration),
        "eta": None
        if eta is None
        else S.Eta(seconds=round(eta.seconds, 3), finish_at=eta.finish_at, confidence=eta.confidence, basis=eta.basis),
        "error": m.error,
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


# ---- schedules --------------------------------------------------------------------
def schedule_out(s: ScheduleState, slots: int = 20) -> S.ScheduleOut:
    """One workflow's schedule: its last ``slots`` slots, the last judged one's status and streak."""
    zone = s.exp.zone
    judged = [j for j in s.slots if j.status != PENDING]
    status = judged[-1].status if judged else "none"
    streak = 0
    for j in reversed(judged):
        if j.status != status:
            break
        streak += 1
    nxt = s.next_at if s.next_at < NEVER else None
    return S.ScheduleOut(
        workflow=s.exp.workflow,
        schedule=s.exp.describe(),
        expectations=s.exp.to_doc(),
        source=s.source,
        status=status,
        streak=streak,
        next_at=nxt,
        next_local=local_text(nxt, zone) if nxt is not None else None,
        firing=list(s.firing),
        slots=[slot_out(j, zone) for j in s.slots[-slots:]] if slots > 0 else [],
    )


def slot_out(j: SlotJudgement, zone: ZoneInfo) -> S.SlotOut:
    return S.SlotOut(
        at=j.at,
        at_local=local_text(j.at, zone),
        next_at=j.next_at,
        status=cast(S.SlotStatus, j.status),
        run_id=j.run_id,
        started_at=j.started_at,
        ended_at=j.ended_at,
        run_state=j.run_state,
        deadline_at=j.deadline_at,
        deadline=j.deadline,
        findings=list(j.findings),
    )


def schedule_list(states: list[ScheduleState], slots: int = 20) -> S.ScheduleList:
    views = [schedule_out(s, slots) for s in states]
    counts: dict[str, int] = {}
    for v in views:
        counts[v.status] = counts.get(v.status, 0) + 1
    return S.ScheduleList(schedules=views, counts=counts)
