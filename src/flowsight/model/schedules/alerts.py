"""The alerts schedules call for: which should be firing, from a workflow's
slot judgements and runs at ``now`` (:func:`wanted`), and why one that no
longer should has ended (:func:`cleared`). No I/O, no state: the schedule
monitor keeps what fired and sends the difference.

``RunLate`` (one per workflow)
    The current slot has no start and its grace has run out. Starts at slot
    + grace. Resolves when a run starts (or the slot is missed: then
    ``RunMissed`` takes over; or its judgement becomes ``unknown``).
``RunMissed`` (one per workflow)
    A slot passed with no start, and no run has started since: one alert
    however many slots are missed in a row (its description counts them).
    Starts at the next slot after the first one missed. Resolves when a run starts.
``RunOverran`` (one per run, and per step of a run)
    A live run (or step) has run longer than its ``max_runtime``. Starts at
    start + limit; resolves when it ends.
``RunTooShort`` (one per run)
    A run completed in less than ``min_runtime``. Resolves when a later run
    completes in a usual time.
``DeadlineMissed`` (one per deadline missed, with the slot's run)
    At the last deadline that came, the slot's run had not completed.
    Resolves when it completes, or when the next deadline comes (met, or
    missed: that one's own alert then fires).
``WorkflowFailing`` (one per workflow)
    The last ``failures_before_alert`` runs that ended all failed. Resolves
    when a run completes.

Every alert has the labels ``alertname``, ``workflow``, ``severity`` (and
``run_id``, ``step`` where one run or step is meant), and source
``execution``: a workflow's ``depends_on`` mutes them as its other alerts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import time

from flowsight.model.alerts import Alert, Severity
from flowsight.model.durations import format_duration
from flowsight.model.runs.state import WorkflowState
from flowsight.model.schedules import Expectations
from flowsight.model.schedules.judge import (
    LATE,
    MISSED,
    DEADLINE_MISSED,
    UNKNOWN,
    UNWATCHED,
    RunFacts,
    SlotJudgement,
    overran_steps,
    run_findings,
    OVERRAN,
    TOO_SHORT,
)
from flowsight.model.schedules.slots import local_text

RUN_LATE, RUN_MISSED, RUN_OVERRAN = "RunLate", "RunMissed", "RunOverran"
RUN_TOO_SHORT, DEADLINE_MISSED_ALERT, WORKFLOW_FAILING = "RunTooShort", "DeadlineMissed", "WorkflowFailing"
ALERT_NAMES = frozenset({RUN_LATE, RUN_MISSED, RUN_OVERRAN, RUN_TOO_SHORT, DEADLINE_MISSED_ALERT, WORKFLOW_FAILING})
SEVERITY = {
    RUN_LATE: Severity.WARNING,
    RUN_MISSED: Severity.ERROR,
    RUN_OVERRAN: Severity.WARNING,
    RUN_TOO_SHORT: Severity.WARNING,
    DEADLINE_MISSED_ALERT: Severity.ERROR,
    WORKFLOW_FAILING: Severity.ERROR,
}
#: (alertname, workflow, run id and step, or "")
AlertKey = tuple[str, str, str]
_COMPLETED, _FAILED = WorkflowState.COMPLETED, WorkflowState.FAILED


def alert_key(alert: Alert) -> AlertKey:
    labels = alert.labels
    return labels.get("alertname", ""), labels.get("workflow", ""), _which(labels)


def _which(labels: Mapping[str, str]) -> str:
    """What of the workflow an alert is about: its run (and step), or its deadline."""
    which = labels.get("run_id", "")
    if labels.get("step"):
        which = f"{which}/{labels['step']}"
    if labels.get("deadline"):
        which = f"{which}@{labels['deadline']}"
    return which


def _alert(
    name: str,
    e: Expectations,
    starts_at: float,
    summary: str,
    description: str,
    *,
    run_id: str | None = None,
    step: str | None = None,
    deadline: float | None = None,
    external_url: str = "",
) -> tuple[AlertKey, Alert]:
    severity = SEVERITY[name]
    labels = {"alertname": name, "workflow": e.workflow}
    if run_id is not None:
        labels["run_id"] = run_id
    if step:
        labels["step"] = step
    if deadline is not None:  # one alert per deadline missed, with a run or without
        labels["deadline"] = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(deadline))
    labels["severity"] = severity.value
    base = external_url.rstrip("/")
    link = (f"{base}/runs/{run_id}" if run_id else f"{base}/schedules") if base else None
    a = Alert(
        labels,
        {"summary": f"{e.workflow}: {summary}", "description": description},
        severity=severity,
        source="execution",
        starts_at=starts_at,
        link=link,
    )
    return (name, e.workflow, _which(labels)), a


def _when(t: float, e: Expectations) -> str:
    """``2026-01-15 02:05 CET (01:05 UTC)``: an instant as the workflow's zone reads it (and UTC's)."""
    text = local_text(t, e.zone)
    if e.timezone == "UTC":
        return text
    minutes = int(t // 60) % 1440  # of the UTC day (an epoch second count has no leap seconds)
    return f"{text} ({minutes // 60:02d}:{minutes % 60:02d} UTC)"


def wanted(
    e: Expectations,
    slots: Sequence[SlotJudgement],
    runs: Sequence[RunFacts],
    now: float,
    *,
    external_url: str = "",
) -> dict[AlertKey, Alert]:
    """The alerts that should be firing for ``e``'s workflow at ``now``.
    ``slots``: its slot judgements, oldest first, the current one last;
    ``runs``: its recent runs (any order)."""
    out: dict[AlertKey, Alert] = {}
    url = external_url
    grace = e.grace if e.scheduled else 0.0
    # ---- RunLate / RunMissed: what came after the last slot with a start
    last = max((k for k, j in enumerate(slots) if j.started), default=-1)
    after = slots[last + 1 :]
    missed = [j for j in after if j.status == MISSED]
    if missed:
        first = missed[0]
        many = f"{len(missed)} slots in a row, since " if len(missed) > 1 else ""
        out.update(
            [
                _alert(
                    RUN_MISSED,
                    e,
                    first.next_at,
                    f"the run expected at {(at := _when(first.at, e))} never started",
                    f"no run started between {at} and the next slot at "
                    f"{_when(first.next_at, e)}; missed: {many}{at} ({e.describe()})",
                    external_url=url,
                )
            ]
        )
    elif after and after[-1].next_at > now and after[-1].status in (LATE, DEADLINE_MISSED):
        cur = after[-1]
        out.update(
            [
                _alert(
                    RUN_LATE,
                    e,
                    cur.at + grace,
                    f"the run expected at {(at := _when(cur.at, e))} has not started",
                    f"no start within the grace of {e.grace_text} after {at}; "
                    f"it is missed if none comes before {_when(cur.next_at, e)} ({e.describe()})",
                    external_url=url,
                )
            ]
        )
    # ---- DeadlineMissed: the last deadline that came
    decided = [j for j in slots if j.deadline is not None and j.deadline_at is not None] if e.deadline else []
    if decided:
        j = decided[-1]
        if j.deadline == MISSED and not (j.run_state == _COMPLETED.value):
            assert j.deadline_at is not None
            what = f"run {j.run_id} is {j.run_state}" if j.run_id else "no run started"
            out.update(
                [
                    _alert(
                        DEADLINE_MISSED_ALERT,
                        e,
                        j.deadline_at,
                        f"not completed by the deadline {(by := _when(j.deadline_at, e))}",
                        f"the run of the slot {_when(j.at, e)} had to complete by {by}; {what}",
                        run_id=j.run_id,
                        deadline=j.deadline_at,
                        external_url=url,
                    )
                ]
            )
    # ---- per run: overran, too short
    normal_after: float | None = None  # the latest end of a completed run of usual length
    judged = e.max_runtime is not None or e.min_runtime is not None or e.steps
    for r in sorted(runs, key=lambda r: r.ended_at if r.ended_at is not None else now, reverse=True) if judged else ():
        found, _ = run_findings(e, r, now)
        if r.live and OVERRAN in found:
            if e.max_runtime is not None and now - r.started_at > e.max_runtime:
                out.update(
                    [
                        _alert(
                            RUN_OVERRAN,
                            e,
                            r.started_at + e.max_runtime,
                            f"run {r.run_id} is running past its max_runtime",
                            f"running for {format_duration(now - r.started_at)} since {_when(r.started_at, e)}; "
                            f"max_runtime is {format_duration(e.max_runtime)}",
                            run_id=r.run_id,
                            external_url=url,
                        )
                    ]
                )
            for step, began, limit in overran_steps(e, r, now):
                out.update(
                    [
                        _alert(
                            RUN_OVERRAN,
                            e,
                            began + limit,
                            f"step '{step}' of run {r.run_id} is running past its max_runtime",
                            f"step '{step}' running for {format_duration(now - began)}; "
                            f"its max_runtime is {format_duration(limit)}",
                            run_id=r.run_id,
                            step=step,
                            external_url=url,
                        )
                    ]
                )
        if r.state is _COMPLETED and r.ended_at is not None and e.min_runtime is not None:
            if TOO_SHORT in found:
                if normal_after is None:
                    took = r.ended_at - r.started_at
                    out.update(
                        [
                            _alert(
                                RUN_TOO_SHORT,
                                e,
                                r.ended_at,
                                f"run {r.run_id} completed in {format_duration(took)}, under its min_runtime",
                                f"completed at {_when(r.ended_at, e)} after {format_duration(took)}; "
                                f"min_runtime is {format_duration(e.min_runtime)}: did it do its work?",
                                run_id=r.run_id,
                                external_url=url,
                            )
                        ]
                    )
            elif r.start_known:
                normal_after = r.ended_at if normal_after is None else normal_after
    # ---- WorkflowFailing: the last N that ended, all failed
    n = e.failures_before_alert
    if n is not None:
        ended = sorted(
            (r for r in runs if r.ended_at is not None and r.state in (_COMPLETED, _FAILED)),
            key=lambda r: r.ended_at or 0.0,
            reverse=True,
        )
        streak = 0
        for r in ended:
            if r.state is not _FAILED:
                break
            streak += 1
        if streak >= n:
            nth = ended[streak - n]  # the failure that made it n
            latest = ended[0]
            error = f"; the last error: {latest.error.splitlines()[0]}" if latest.error else ""
            out.update(
                [
                    _alert(
                        WORKFLOW_FAILING,
                        e,
                        nth.ended_at or now,
                        f"{streak} runs failed in a row",
                        f"the last {streak} runs that ended all failed (failures_before_alert = {n}); "
                        f"the last: run {latest.run_id}{error}",
                        external_url=url,
                    )
                ]
            )
    return out


def cleared(
    alert: Alert, e: Expectations | None, slots: Sequence[SlotJudgement], runs: Sequence[RunFacts], now: float
) -> str:
    """Why ``alert``, firing and no longer wanted, has ended (its resolution)."""
    name = alert.labels.get("alertname", "")
    if e is None:
        return "the workflow's expectations were removed"
    if name in (RUN_LATE, RUN_MISSED):
        j = next((j for j in reversed(slots) if j.started and j.started_at is not None), None)
        if name == RUN_LATE and any(k.status == MISSED for k in slots if k.at + e.grace >= alert.starts_at):
            return "the slot was missed: RunMissed takes over"
        if j is not None and j.started_at is not None and j.next_at > alert.starts_at - e.grace:
            late = j.started_at - j.at
            how = f", {format_duration(late)} after its slot" if late > e.grace else ""
            return f"run {j.run_id} started at {_when(j.started_at, e)}{how}"
        seen = [k for k in slots if not k.started and k.at + e.grace <= alert.starts_at < k.next_at]
        if seen and (seen[-1].status == UNKNOWN or UNWATCHED in seen[-1].findings):
            return (
                "the slot ended while flowsight was not watching (server down or store unwritable): "
                "whether its run came is unknown"
            )
        return "no longer late" if name == RUN_LATE else "no longer missed"
    if name == RUN_OVERRAN:
        run = next((r for r in runs if r.run_id == alert.labels.get("run_id")), None)
        if run is not None and run.ended_at is not None:
            return f"run {run.state.value} after {format_duration(run.ended_at - run.started_at)}"
        step = alert.labels.get("step")
        if step and run is not None:
            span = run.steps.get(step)
            if span is not None and span[1] is not None:
                return f"step '{step}' ended after {format_duration(span[1] - span[0])}"
        return "the run is no longer running past its max_runtime"
    if name == RUN_TOO_SHORT:
        return "a later run completed in a usual time"
    if name == DEADLINE_MISSED_ALERT:
        run = next((r for r in runs if r.run_id == alert.labels.get("run_id")), None)
        if run is not None and run.state is _COMPLETED and run.ended_at is not None:
            return f"run {run.run_id} completed at {_when(run.ended_at, e)}, {format_duration(run.ended_at - alert.starts_at)} after the deadline"
        decided = [j for j in slots if j.deadline is not None and j.deadline_at is not None]
        if decided and decided[-1].deadline == MISSED and decided[-1].deadline_at is not None:
            return f"the next deadline came ({_when(decided[-1].deadline_at, e)}), missed as well: see its own alert"
        return "a later deadline was met"
    if name == WORKFLOW_FAILING:
        done = [r for r in runs if r.state is _COMPLETED and r.ended_at is not None]
        if done:
            last = max(done, key=lambda r: r.ended_at or 0.0)
            return f"run {last.run_id} completed"
        return "no longer failing"
    return "condition cleared"
