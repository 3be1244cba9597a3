"""Wire schemas of the HTTP API (msgspec); the OpenAPI document is generated
from these. Events themselves use :class:`flowsight.model.runs.events.Event`'s
wire form."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from flowsight.model.runs.events import MAX_TS, Event, WireEvent
from flowsight.logs.records import WireLog


#: An event as sent: ``id`` (recommended: it makes a retry safe) and ``ts``
#: (seconds since the epoch or RFC 3339) are filled in when absent.
EventIn = WireEvent


class EventOut(Event, kw_only=True, frozen=True):
    """An event as stored, with its place in the store's order."""

    seq: int | None = None


# An answer's field that is UNSET is left out of it (not null): an item's
# result has the keys of its fate only.
ItemStatus = Literal["accepted", "duplicate", "rejected"]


class ItemResult(msgspec.Struct, kw_only=True):
    index: int
    status: ItemStatus
    id: str | UnsetType = UNSET
    error: str | UnsetType = UNSET
    field: str | None | UnsetType = UNSET
    warning: str | UnsetType = UNSET


class IngestResponse(msgspec.Struct, kw_only=True):
    accepted: int
    duplicates: int
    rejected: int
    results: list[ItemResult]


class Error(msgspec.Struct, kw_only=True):
    error: str
    detail: str | UnsetType = UNSET


class IngestRefused(Error, kw_only=True):
    """A body refused as a whole; or one object sent alone and refused, with
    the field and the same per-item answer as a 200's."""

    field: str | None | UnsetType = UNSET
    accepted: int | UnsetType = UNSET
    duplicates: int | UnsetType = UNSET
    rejected: int | UnsetType = UNSET
    results: list[ItemResult] | UnsetType = UNSET


class Eta(msgspec.Struct, kw_only=True):
    seconds: float
    finish_at: float
    confidence: float
    basis: str


class RunOut(msgspec.Struct, kw_only=True):
    run_id: str
    workflow: str
    state: Literal["pending", "running", "completed", "failed", "suspended", "cancelled"]
    stalled: bool
    idle_seconds: float | None
    stall_bound_seconds: float | None
    current_step: str | None
    completed_steps: int
    failed_steps: int
    total_steps: int | None
    retries: int
    percent_done: float | None
    start_time: float | None
    end_time: float | None
    duration_seconds: float | None
    usual_duration_seconds: float | None
    eta: Eta | None
    error: str | None


class RunPage(msgspec.Struct, kw_only=True):
    runs: list[RunOut]
    cursor: str | None


StepStatus = Literal["running", "completed", "failed"]


class StepOut(msgspec.Struct, kw_only=True):
    step: str
    attempt: int
    status: StepStatus
    started_at: float | None
    ended_at: float | None
    duration_seconds: float | None
    error: str | None
    traceback: str | None = None


class TransitionOut(msgspec.Struct, kw_only=True):
    timestamp: float
    old_state: str
    new_state: str
    reason: str | None
    source: str | None
    applied: bool


class RunFaultOut(msgspec.Struct, kw_only=True):
    id: int | None
    status: Literal["open", "resolved"]
    severity: Literal["info", "warning", "error", "critical"]
    kind: str
    alertname: str
    target: str
    detector: str
    message: str
    opened_at: float
    resolved_at: float | None


class RunDetailOut(RunOut, kw_only=True):
    attrs: dict[str, Any]
    steps: list[StepOut]
    #: faults that hurt this run (declared while it ran and depended on their target), newest first
    faults: list[RunFaultOut]
    transitions: list[TransitionOut]


class EventPage(msgspec.Struct, kw_only=True):
    events: list[EventOut]
    next_after: int | None


class WorkflowOut(msgspec.Struct, kw_only=True):
    workflow: str
    runs: int
    by_state: dict[str, int]
    last_run_at: float | None
    success_rate: float | None
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None


class WorkflowList(msgspec.Struct, kw_only=True):
    workflows: list[WorkflowOut]


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok"]
    store: str
    version: str


# ---- cluster -------------------------------------------------------------------
class ClusterReplica(msgspec.Struct, kw_only=True):
    """A server on the store, as its heartbeat last said."""

    replica_id: str
    host: str
    pid: int
    version: str
    started_at: float
    seen_at: float
    alive: bool  # heard from within two leases (and not stopped)
    stopped: bool  # it said it stopped
    this: bool  # the replica that answered
    leads: list[str]  # the duties it holds now


class ClusterDuty(msgspec.Struct, kw_only=True):
    """A singleton duty and who leads it."""

    duty: str
    leader: str | None  # the replica id holding the lease (None: nobody does now)
    epoch: int  # the fencing token: one more at every change of holder
    since: float | None  # when the leader took it
    expires_at: float | None  # when its lease ends unless renewed


class Cluster(msgspec.Struct, kw_only=True):
    replica_id: str  # the replica that answered
    store: str
    lease_seconds: float | None  # None: a server alone, leading every duty without a lease
    now: float  # the store's clock, as the times here are
    replicas: list[ClusterReplica]
    duties: list[ClusterDuty]


# ---- logs ----------------------------------------------------------------------
#: A log entry as sent: structured (``message``, with ``level``, ``ts``,
#: ``fields``) or a raw ``line`` read like a log file's (see
#: :mod:`flowsight.logs.records`). ``id`` makes a retry safe.
LogIn = WireLog


class LogOut(msgspec.Struct, kw_only=True):
    """A stored log entry; ``seq`` is its place in the store's order."""

    seq: int
    id: str
    ts: float
    level: Literal["trace", "debug", "info", "warn", "error", "fatal"]
    message: str
    source: str
    workflow: str | None
    run_id: str | None
    step: str | None
    template_id: str | None
    fields: dict[str, str | int | float | bool | None]


class LogPage(msgspec.Struct, kw_only=True):
    logs: list[LogOut]
    #: the next page, in the same order (None: nothing more now)
    cursor: str | None


class TemplateCountOut(msgspec.Struct, kw_only=True):
    template_id: str
    #: the message shape, variables as <*>
    template: str
    count: int


class TemplatePage(msgspec.Struct, kw_only=True):
    since: float
    until: float | None
    workflow: str | None
    templates: list[TemplateCountOut]


# ---- alerting ------------------------------------------------------------------
Severity = Literal["info", "warning", "error", "critical"]
Source = Literal["execution", "performance", "state", "fault", "log"]


AlertStatusName = Literal["firing", "pending", "resolved", "silenced", "inhibited", "flapping"]


class AlertOut(msgspec.Struct, kw_only=True):
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: Severity
    source: Source
    #: firing | pending | resolved, or why a firing one is quiet: silenced |
    #: inhibited | flapping
    status: AlertStatusName
    muted_by: str | None
    starts_at: float
    ends_at: float | None
    link: str | None
    #: receivers a "firing" notification of it was queued for (each will be
    #: told "resolved" too); whether it reached them is in the notification
    #: log and in /metrics (flowsight_notifications_pending)
    receivers_told: list[str]


class AlertList(msgspec.Struct, kw_only=True):
    alerts: list[AlertOut]


#: Prometheus' label names; values and annotations any text a store keeps:
#: no NUL, no lone UTF-16 surrogate (as in events and log entries)
LabelName = Annotated[str, msgspec.Meta(pattern="^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=256)]
KEPT_CHAR = "[^\\x00\\ud800-\\udfff]"  # a character both stores keep
Text = Annotated[str, msgspec.Meta(pattern=f"^{KEPT_CHAR}*$", max_length=16_384)]
Timestamp = Annotated[float, msgspec.Meta(ge=0, lt=MAX_TS)]
#: a page to open about an alert: http:// or https:// with a host (a link of
#: another kind, such as javascript:, is refused)
Link = Annotated[
    str,
    msgspec.Meta(
        pattern=f"^[hH][tT][tT][pP][sS]?://[^\\s/?#\\x00\\ud800-\\udfff]+([/?#]{KEPT_CHAR}*)?$", max_length=4096
    ),
]


class AlertIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An alert from outside (a script, another monitor): the same labels
    update the same alert; ``ends_at`` in the past resolves it; without it,
    the alert ends ``resolve_timeout`` after it was last sent."""

    labels: Annotated[dict[LabelName, Text], msgspec.Meta(min_length=1, max_length=64)]
    annotations: Annotated[dict[LabelName, Text], msgspec.Meta(max_length=64)] = {}
    severity: Severity = "warning"
    source: Source = "fault"
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    link: Link | None = None


class AlertResult(msgspec.Struct, kw_only=True):
    index: int
    status: Literal["accepted", "rejected"]
    fingerprint: str | UnsetType = UNSET
    error: str | UnsetType = UNSET
    field: str | None | UnsetType = UNSET


class AlertRefused(Error, kw_only=True):
    """A body refused as a whole; or one alert sent alone and refused, with
    the field and the same per-alert answer as a 200's."""

    field: str | None | UnsetType = UNSET
    accepted: int | UnsetType = UNSET
    rejected: int | UnsetType = UNSET
    fingerprints: list[str] | UnsetType = UNSET
    results: list[AlertResult] | UnsetType = UNSET


class AlertsAccepted(msgspec.Struct, kw_only=True):
    """Each alert's fate: a bad one is rejected (with the reason and the
    field), the others are taken."""

    accepted: int
    rejected: int
    #: of the alerts taken, in the order sent
    fingerprints: list[str]
    results: list[AlertResult]


#: ``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex`` (as :func:`flowsight.model.alerts.parse_matcher` reads it)
Matcher = Annotated[
    str, msgspec.Meta(pattern=f"^\\s*[a-zA-Z_][a-zA-Z0-9_]*\\s*(=~|!~|!=|=){KEPT_CHAR}*$", max_length=16_384)
]


class SilenceIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``matchers`` like ``workflow=nightly-etl``, ``severity!=info``,
    ``alertname=~Run.*``; give ``duration`` (``2h``) or ``ends_at``."""

    matchers: Annotated[list[Matcher], msgspec.Meta(min_length=1, max_length=64)]
    comment: Annotated[
        str, msgspec.Meta(pattern=f"^{KEPT_CHAR}*[^\\s\\x00\\ud800-\\udfff]{KEPT_CHAR}*$", max_length=16_384)
    ]
    created_by: Text = ""
    duration: Annotated[str, msgspec.Meta(pattern="^ *([0-9]+(\\.[0-9]+)?(ms|s|m|h|d|w) *)+$")] | None = None
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None


SilenceState = Literal["active", "pending", "expired"]


class SilenceOut(msgspec.Struct, kw_only=True):
    id: str
    matchers: list[str]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    state: SilenceState


class SilenceList(msgspec.Struct, kw_only=True):
    silences: list[SilenceOut]


class Expired(msgspec.Struct, kw_only=True):
    expired: str


# ---- faults --------------------------------------------------------------------
FaultKindName = Literal[
    "service_unavailable", "network_timeout", "resource_exhaustion", "data_corruption", "configuration_error"
]


FaultStatusName = Literal["open", "resolved"]


class FaultOut(msgspec.Struct, kw_only=True):
    id: int | None
    status: FaultStatusName
    severity: Severity
    kind: FaultKindName
    #: the specification's name of the kind (the alert's name): ServiceUnavailable, ...
    alertname: str
    #: what it is about: a service id, an endpoint, a resource, a data id or a config key
    target: str
    detector: str
    message: str
    evidence: dict[str, Any]
    workflows: list[str]
    #: the runs it hurt (running runs of workflows that depend on its target)
    runs: list[str]
    opened_at: float
    resolved_at: float | None
    duration_s: float


DetectorStatus = Literal["pending", "ok", "failing", "fault", "broken"]


class DetectorOut(msgspec.Struct, kw_only=True):
    name: str
    #: pending | ok | failing (failed, within its retries) | fault | broken (cannot check)
    status: DetectorStatus
    checks: int
    last_check: float | None
    last_duration_s: float | None
    last_error: str | None
    interval_s: float


class FaultList(msgspec.Struct, kw_only=True):
    faults: list[FaultOut]
    #: the detectors this server runs (empty when it runs none)
    detectors: list[DetectorOut]


# ---- performance ---------------------------------------------------------------
class MetricScopeOut(msgspec.Struct, kw_only=True):
    #: host:NAME, run:RUN_ID or workflow:NAME
    scope: str
    metrics: list[str]


class MetricScopes(msgspec.Struct, kw_only=True):
    scopes: list[MetricScopeOut]


class QuantilesOut(msgspec.Struct, kw_only=True):
    count: int
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None


class LatestOut(msgspec.Struct, kw_only=True):
    ts: float
    value: float


class PerfSummary(msgspec.Struct, kw_only=True):
    scope: str
    ts: float
    #: steps_per_s_1m, runs_per_s_5m, ...
    throughput: dict[str, float]
    #: "run" and "step:NAME" (for the host: "step:WORKFLOW/NAME"): duration quantiles in seconds
    latency: dict[str, QuantilesOut]
    cpu_usage: float | None
    memory_usage: int | None
    disk_io: dict[str, float] | None
    network_io: dict[str, float] | None
    #: the newest stored sample of each metric
    latest: dict[str, LatestOut]


class PointOut(msgspec.Struct, kw_only=True):
    ts: float
    avg: float
    min: float
    max: float
    count: int


class Series(msgspec.Struct, kw_only=True):
    scope: str
    metric: str
    #: raw (every sample) or the bucket width of the rollups ("60s", "300s", ...)
    resolution: str
    points: list[PointOut]


# ---- schedules -------------------------------------------------------------------
SlotStatus = Literal["pending", "ok", "late", "missed", "overran", "too_short", "deadline_missed", "unknown"]


class SlotOut(msgspec.Struct, kw_only=True):
    #: when a run was expected (epoch seconds), and as the workflow's zone reads it
    at: float
    at_local: str
    next_at: float
    status: SlotStatus
    run_id: str | None
    started_at: float | None
    ended_at: float | None
    run_state: str | None
    #: the deadline of this slot's run, and whether it was met ("met", "missed", "unknown"; null until it comes)
    deadline_at: float | None
    deadline: str | None
    #: every finding, the status being the worst (late, overran, too_short, deadline_missed)
    findings: list[str]


class ScheduleOut(msgspec.Struct, kw_only=True):
    workflow: str
    #: "0 2 * * * (Europe/Copenhagen)", "every 15m", or "not scheduled"
    schedule: str
    #: the fields as flowsight.toml writes them
    expectations: dict[str, Any]
    #: "config" (flowsight.toml) or "api" (the API or the SDK)
    source: str
    #: the last slot judged (not pending): ok, late, missed, ... ("none" before any)
    status: str
    #: how many slots in a row, up to the last one judged, have that status
    streak: int
    next_at: float | None
    next_local: str | None
    #: the alerts of this workflow's schedule firing now (RunLate, RunMissed, ...)
    firing: list[str]
    #: the last slots, oldest first
    slots: list[SlotOut]


class ScheduleList(msgspec.Struct, kw_only=True):
    schedules: list[ScheduleOut]
    #: workflows per status of their last slot judged (late, missed, ...)
    counts: dict[str, int]


class PingOut(msgspec.Struct, kw_only=True):
    workflow: str
    run_id: str
    #: the events the ping made (started, completed, failed)
    events: list[str]
    #: of those, how many were already stored (a retried ping)
    duplicates: int
    #: lines of the body kept as the run's log
    log_lines: int
    #: state changes the events asked for that the run's state refused (e.g. "completed -> failed: ...")
    refused: list[str] = []


class ExpectationsOut(msgspec.Struct, kw_only=True):
    workflow: str
    schedule: str
    #: the fields as flowsight.toml writes them ({} once removed)
    expectations: dict[str, Any]


class StepLimitIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_runtime: str | float


class ExpectationsIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A workflow's expectations (the fields of flowsight.toml's [workflows.NAME]); null is absent.
    Durations are text ("15m", "1h30m") or seconds."""

    #: a 5-field cron expression, or @daily, @hourly, ...
    schedule: str | None = None
    #: instead of schedule: a run every this long after the previous one started
    every: str | float | None = None
    #: the IANA zone the schedule and the deadline are read in (UTC)
    timezone: str | None = None
    start_grace: str | float | None = None
    max_runtime: str | float | None = None
    min_runtime: str | float | None = None
    #: a time of day ("06:00") by which the slot's run must have completed
    deadline: str | None = None
    failures_before_alert: int | None = None
    steps: dict[str, StepLimitIn] | None = None
