"""The OpenAPI document, generated from the routes' declared schemas
(:mod:`flowsight.server.schemas`), never written by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from flowsight.model.faults import FaultKind
from flowsight.model.performance import RESOURCE_METRICS
from flowsight.server import dashboard_api as D
from flowsight.server import schemas as S
from flowsight.server.logs_api import LOG_CURSOR_PATTERN
from flowsight.server.views import ALERT_STATUSES
from flowsight.server.wire_checks import refine
from flowsight.store.runs import CURSOR_PATTERN

FAULT_KINDS = tuple(k.value for k in FaultKind)


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # query | path | header
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    responses: dict[int, tuple[str, type | None]]  # status -> (description, schema type)
    params: list[Param] = field(default_factory=list)
    body: Any = None
    scope: str | None = None
    content_type: str = "application/json"
    #: OpenAPI links of the 2xx answer: name -> (target operation, {parameter: runtime expression})
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)


STR = {"type": "string"}
#: a query parameter's text: any but a NUL, which no name holds (flowsight.server.params.text_param refuses it)
TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}
INT = {"type": "integer"}
NUM = {"type": "number"}
#: a time: epoch seconds, RFC 3339, or a duration ago (flowsight.model.durations.parse_time)
TIME = {
    "anyOf": [
        NUM,
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"},
    ]
}
SCOPE = {"type": "string", "pattern": "^(host|run|workflow):.+"}
STATE = {"type": "string", "enum": ["pending", "running", "completed", "failed", "suspended", "cancelled"]}

#: a workflow's name in a path: no slash, no NUL, 1 to 512 characters
WORKFLOW = {"type": "string", "pattern": "^[^/\\x00]{1,512}$"}
PING_PARAMS = [
    Param("workflow", "path", WORKFLOW, required=True),
    Param(
        "run_id",
        "query",
        {"type": "string", "pattern": "^[^\\x00]{0,512}$"},
        "the run (a retry with it counts once; empty: none)",
    ),
    Param("manual", "query", {"type": "string", "enum": ["1", "0", "true", "false"]}, "a run started by hand"),
]
RUN_FILTERS = [
    Param("workflow", "query", TEXT, "only runs of this workflow"),
    Param("state", "query", {"type": "array", "items": STATE}, "only runs in these states (repeat the parameter)"),
    Param("since", "query", NUM, "only runs created at or after (seconds since the epoch)"),
    Param("until", "query", NUM, "only runs created before (seconds since the epoch)"),
    Param(
        "q",
        "query",
        TEXT,
        "text in the run id, workflow, current step or error (case-insensitive, every run "
        "searched; from 3 characters the runs holding it are found in a trigram index, shorter texts are "
        "looked for in the runs newest first until the page is full)",
    ),
]
LEVEL = {"type": "string", "enum": ["trace", "debug", "info", "warn", "error", "fatal"]}
LOG_FILTERS = [
    Param("workflow", "query", TEXT, "only entries of this workflow"),
    Param("step", "query", TEXT, "only entries of this step"),
    Param("level", "query", LEVEL, "only entries at this level or above"),
    Param("template", "query", TEXT, "only entries with this template id"),
    Param("q", "query", TEXT, "text in the message (case-insensitive)"),
    Param("since", "query", TIME, "only entries at or after: epoch seconds, RFC 3339, or a duration ago (2h)"),
    Param("until", "query", TIME, "only entries before: epoch seconds, RFC 3339, or a duration ago (30m)"),
    Param(
        "after",
        "query",
        {"type": "integer", "minimum": 0, "maximum": 2**62},
        "only entries stored after this seq (to follow: the last seq seen)",
    ),
    Param(
        "order", "query", {"type": "string", "enum": ["asc", "desc"]}, "asc: oldest first (default); desc: newest first"
    ),
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
    Param(
        "cursor",
        "query",
        {"type": "string", "pattern": f"^$|{LOG_CURSOR_PATTERN}"},
        "the cursor of the previous page (keeps its order)",
    ),
]
ERRORS: dict[int, tuple[str, type | None]] = {
    400: ("bad request", S.Error),
    401: ("no or unknown token", S.Error),
    403: ("token lacks the scope", S.Error),
    503: ("the store is unavailable (retry later)", S.Error),
}
#: every write route reads its body alike (flowsight.server.ingest.read_json_body)
BODY_ERRORS: dict[int, tuple[str, type | None]] = {
    413: ("too many items or too large a body", S.Error),
    415: ("not application/json", S.Error),
    **ERRORS,
}
#: a write of one item or an array: a bad item in an array costs only itself (200, answered per item);
#: one object sent alone and refused is a refused request
BAD_ITEM = (
    "bad request: malformed, or not an object or an array of them; or one object sent alone that is not as "
    "this document describes it (its per-item answer, with the reason as `error`)"
)
RULE_ITEM = (
    "one object sent alone, as this document describes it, but refused by a rule its description states in "
    "words (its per-item answer, with the reason as `error`)"
)
ITEM_ERRORS: dict[int, tuple[str, type | None]] = {
    **BODY_ERRORS,
    400: (BAD_ITEM, S.IngestRefused),
    422: (RULE_ITEM, S.IngestRefused),
}

OPS = [
    Op(
        "post",
        "/api/v1/events",
        "Ingest one event or an array of events",
        {
            200: ("each event's fate: accepted, duplicate or rejected (with the reason)", S.IngestResponse),
            **ITEM_ERRORS,
        },
        body=list[S.EventIn] | S.EventIn,
        scope="ingest",
    ),
    Op(
        "post",
        "/api/v1/logs",
        "Ingest one log entry or an array (structured, or raw lines to parse)",
        {
            200: ("each entry's fate: accepted, duplicate or rejected (with the reason)", S.IngestResponse),
            **ITEM_ERRORS,
        },
        body=list[S.LogIn] | S.LogIn,
        scope="ingest",
    ),
    Op(
        "get",
        "/api/v1/logs",
        "Log entries, filtered, one page at a time",
        {200: ("a page of log entries", S.LogPage), **ERRORS},
        params=[Param("run_id", "query", TEXT, "only entries of this run"), *LOG_FILTERS],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/runs/{run_id}/logs",
        "A run's log entries, filtered, one page at a time",
        {
            200: ("a page of log entries (empty for a run with none)", S.LogPage),
            404: ("no such path: a run id with a line break is no path; use /api/v1/logs?run_id=", S.Error),
            **ERRORS,
        },
        params=[Param("run_id", "path", STR, required=True), *LOG_FILTERS],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/logs/templates",
        "The log templates with the most lines in a time range, with counts",
        {200: ("templates by lines, most first", S.TemplatePage), **ERRORS},
        params=[
            Param(
                "since", "query", TIME, "from: epoch seconds, RFC 3339, or a duration ago (2h); default: an hour ago"
            ),
            Param("until", "query", TIME, "until: epoch seconds, RFC 3339, or a duration ago"),
            Param("workflow", "query", TEXT, "only lines of this workflow"),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/runs",
        "Runs, newest first, filtered, one page at a time",
        {200: ("a page of runs", S.RunPage), **ERRORS},
        params=[
            *RUN_FILTERS,
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
            Param(
                "cursor",
                "query",
                {"type": "string", "pattern": f"^$|{CURSOR_PATTERN}"},
                "the cursor of the previous page",
            ),
        ],
        scope="read",
        links={
            "FirstRun": ("get_/api/v1/runs/{run_id}", {"run_id": "$response.body#/runs/0/run_id"}),
            "FirstRunEvents": ("get_/api/v1/runs/{run_id}/events", {"run_id": "$response.body#/runs/0/run_id"}),
            "FirstRunLogs": ("get_/api/v1/runs/{run_id}/logs", {"run_id": "$response.body#/runs/0/run_id"}),
        },
    ),
    Op(
        "get",
        "/api/v1/runs/{run_id}",
        "One run: steps, state history, ETA, stall flag",
        {200: ("the run", S.RunDetailOut), 404: ("no such run", S.Error), **ERRORS},
        params=[Param("run_id", "path", STR, required=True)],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/runs/{run_id}/events",
        "A run's events in store order",
        {200: ("a page of events", S.EventPage), 404: ("no such run", S.Error), **ERRORS},
        params=[
            Param("run_id", "path", STR, required=True),
            Param(
                "after",
                "query",
                {"type": "integer", "minimum": 0, "maximum": 2**62},
                "seq of the last event already seen",
            ),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000}),
        ],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/workflows",
        "Workflows with runs by state, success rate, duration p50/p95",
        {200: ("the workflows", S.WorkflowList), **ERRORS},
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/stream",
        "Live events as Server-Sent Events; resumes after Last-Event-ID",
        {200: ("text/event-stream; each event's id is its seq", None), **ERRORS},
        params=[
            Param("workflow", "query", TEXT),
            Param("run_id", "query", TEXT),
            Param("Last-Event-ID", "header", STR, "seq of the last event received"),
        ],
        scope="read",
        content_type="text/event-stream",
    ),
    Op(
        "get",
        "/api/v1/alerts",
        "Alerts the manager holds: firing, pending, resolved, silenced, inhibited, flapping",
        {200: ("the alerts, newest first", S.AlertList), **ERRORS},
        params=[Param("status", "query", {"type": "string", "enum": list(ALERT_STATUSES)}, "only this status")],
        scope="read",
    ),
    Op(
        "post",
        "/api/v1/alerts",
        "Send one alert or an array (same labels = same alert; ends_at past = resolved)",
        {
            200: ("each alert's fate: accepted, or rejected (with the reason)", S.AlertsAccepted),
            **BODY_ERRORS,
            400: (BAD_ITEM, S.AlertRefused),
        },
        body=list[S.AlertIn] | S.AlertIn,
        scope="ingest",
    ),
    Op(
        "get",
        "/api/v1/silences",
        "Active and pending silences (all=true: expired too)",
        {200: ("the silences", S.SilenceList), **ERRORS},
        params=[Param("all", "query", {"type": "string", "enum": ["true", "false"]}, "expired ones too")],
        scope="read",
    ),
    Op(
        "post",
        "/api/v1/silences",
        "Mute the alerts matchers select, for a while",
        {
            201: ("the silence", S.SilenceOut),
            **BODY_ERRORS,
            422: ("as this document describes it, but refused by a rule its description states in words", S.Error),
        },
        body=S.SilenceIn,
        scope="admin",
        links={"EndSilence": ("delete_/api/v1/silences/{silence_id}", {"silence_id": "$response.body#/id"})},
    ),
    Op(
        "delete",
        "/api/v1/silences/{silence_id}",
        "End a silence now",
        {200: ("expired", S.Expired), 404: ("no such active or pending silence", S.Error), **ERRORS},
        params=[Param("silence_id", "path", STR, required=True)],
        scope="admin",
    ),
    Op(
        "get",
        "/api/v1/faults",
        "Faults: open ones and resolved ones, newest first; the detectors' states",
        {200: ("the faults and the detectors", S.FaultList), **ERRORS},
        links={"FirstFault": ("get_/api/v1/faults/{fault_id}", {"fault_id": "$response.body#/faults/0/id"})},
        params=[
            Param("status", "query", {"type": "string", "enum": ["open", "resolved"]}, "only this status"),
            Param(
                "since",
                "query",
                TIME,
                "open faults, and resolved ones that ended at or after this: "
                "epoch seconds, RFC 3339, or a duration ago (24h)",
            ),
            Param(
                "kind",
                "query",
                {"type": "string", "enum": [*FAULT_KINDS, *(k.alertname for k in FaultKind)]},
                "only this kind (service_unavailable or ServiceUnavailable, ...)",
            ),
            Param("detector", "query", TEXT, "only faults this detector found"),
            Param("run_id", "query", TEXT, "only faults that hurt this run"),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/faults/{fault_id}",
        "One fault, open or resolved (its alert links to /faults/ID)",
        {200: ("the fault", S.FaultOut), 404: ("no such fault", S.Error), **ERRORS},
        params=[Param("fault_id", "path", {"type": "string", "pattern": "^[0-9]{1,18}$"}, required=True)],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/metrics",
        "The scopes (host, runs, workflows) with resource samples, and their metrics",
        {200: ("scopes and metrics", S.MetricScopes), **ERRORS},
        params=[Param("since", "query", TIME, "with samples since (default 24h)")],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/metrics/summary",
        "A scope's throughput, latency quantiles and latest resources",
        {200: ("the summary", S.PerfSummary), **ERRORS},
        params=[Param("scope", "query", SCOPE, "host:NAME, run:RUN_ID or workflow:NAME", required=True)],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/metrics/series",
        "One resource metric of a scope over a time range",
        {200: ("the points, oldest first", S.Series), **ERRORS},
        params=[
            Param("scope", "query", SCOPE, "host:NAME, run:RUN_ID or workflow:NAME", required=True),
            Param("metric", "query", {"type": "string", "enum": list(RESOURCE_METRICS)}, required=True),
            Param("since", "query", TIME, "from (default 1h ago)"),
            Param("until", "query", TIME, "until"),
            Param(
                "step",
                "query",
                {"type": "number", "minimum": 60, "maximum": 366 * 86400, "multipleOf": 60},
                "bucket width in seconds (rollups); default: every sample within the raw retention",
            ),
        ],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/overview",
        "The dashboard's overview: runs per state, stalled runs, alerts per status, "
        "open faults; per workflow its success rate, runs per state, duration p50/p95 and trend",
        {200: ("the aggregates", D.Overview), **ERRORS},
        params=[
            Param(
                "trend",
                "query",
                {"type": "integer", "minimum": 0, "maximum": 200},
                "ended runs per workflow in its duration trend (default 30)",
            )
        ],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/performance",
        "Per workflow and step over a time range: runs and steps per hour, duration percentiles",
        {200: ("the figures, per workflow", D.PerfPage), **ERRORS},
        params=[
            Param("since", "query", TIME, "runs started at or after (default 24h ago)"),
            Param("until", "query", TIME, "runs started before (default now)"),
            Param("workflow", "query", TEXT, "only this workflow"),
        ],
        scope="read",
    ),
    Op(
        "get",
        "/api/v1/schedules",
        "Each workflow with expectations: its last slots judged (ok, late, missed, ...), next expected start, streak",
        {200: ("the schedules, and how many workflows stand at each status", S.ScheduleList), **ERRORS},
        params=[Param("slots", "query", {"type": "integer", "minimum": 0, "maximum": 50}, "slots per workflow (20)")],
        scope="read",
        links={
            "FirstSchedule": ("get_/api/v1/schedules/{workflow}", {"workflow": "$response.body#/schedules/0/workflow"})
        },
    ),
    Op(
        "get",
        "/api/v1/schedules/{workflow}",
        "One workflow's schedule",
        {200: ("the schedule", S.ScheduleOut), 404: ("the workflow has no expectations", S.Error), **ERRORS},
        params=[
            Param("workflow", "path", WORKFLOW, required=True),
            Param("slots", "query", {"type": "integer", "minimum": 0, "maximum": 50}, "slots (50)"),
        ],
        scope="read",
    ),
    Op(
        "put",
        "/api/v1/schedules/{workflow}",
        "Set a workflow's expectations (those in flowsight.toml are changed there: 409)",
        {
            200: ("set", S.ExpectationsOut),
            409: ("the workflow's expectations are in flowsight.toml", S.Error),
            **BODY_ERRORS,
            422: (
                "as this document describes it, but refused by a rule its description states in words: an "
                "invalid cron expression, an unknown time zone, a grace not shorter than the interval, ...",
                S.Error,
            ),
        },
        params=[Param("workflow", "path", WORKFLOW, required=True)],
        body=S.ExpectationsIn,
        scope="ingest",
    ),
    Op(
        "delete",
        "/api/v1/schedules/{workflow}",
        "Remove the expectations set through the API",
        {
            200: ("removed", S.ExpectationsOut),
            404: ("none set through the API", S.Error),
            409: ("the workflow's expectations are in flowsight.toml", S.Error),
            **ERRORS,
        },
        params=[Param("workflow", "path", WORKFLOW, required=True)],
        scope="ingest",
    ),
    Op(
        "post",
        "/api/v1/ping/{workflow}",
        "A run of the workflow succeeded (as /success); the body, any text, is kept as the run's log",
        {200: ("the events the ping made", S.PingOut), 409: ("the run is another workflow's", S.Error), **ERRORS},
        params=PING_PARAMS,
        scope="ingest",
    ),
    Op(
        "post",
        "/api/v1/ping/{workflow}/{action}",
        "A run started (start), succeeded (success, 0) or failed (fail, an exit code 1-255)",
        {
            200: ("the events the ping made", S.PingOut),
            404: ("not a ping this path knows", S.Error),
            409: ("the run is another workflow's", S.Error),
            **ERRORS,
        },
        params=[
            *PING_PARAMS,
            Param("action", "path", {"type": "string", "pattern": "^(start|success|fail|[0-9]{1,3})$"}, required=True),
        ],
        scope="ingest",
    ),
    Op(
        "get",
        "/metrics",
        "Prometheus metrics (text exposition format)",
        {200: ("metrics", None), **ERRORS},
        scope="read",
        content_type="text/plain",
    ),
    Op(
        "get",
        "/api/v1/cluster",
        "The replicas on this store and who leads each singleton duty (alerting, detectors, retention, export)",
        {200: ("the cluster", S.Cluster), **ERRORS},
        scope="read",
    ),
    Op("get", "/healthz", "Liveness", {200: ("ok", S.Health)}),
]


#: what the checks' patterns exclude beside NUL: lone UTF-16 surrogates, which a
#: JSON text can hold and no store keeps; a schema's regular expression has no
#: way to name them (ECMA and Rust regexes have no surrogates), so the
#: document's patterns leave them out and the descriptions say it
_SURROGATES = "\\ud800-\\udfff"


def _document_patterns(node: Any) -> None:
    """The checks' patterns as a schema's regex can say them (see ``_SURROGATES``)."""
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and _SURROGATES in pattern:
            node["pattern"] = pattern.replace(_SURROGATES, "")
            note = "no NUL character and no lone UTF-16 surrogate (refused: no store keeps them)"
            node["description"] = f"{node['description']}; {note}" if node.get("description") else note
        for value in node.values():
            _document_patterns(value)
    elif isinstance(node, list):
        for item in node:
            _document_patterns(item)


def _batch_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A body of one item or an array of them: the array's items are any
    JSON values, each answered by itself in the 200 (a bad one rejected with
    the reason, the rest kept), so no item makes the array a bad request."""
    for option in schema.get("anyOf", []):
        if option.get("type") == "array":
            item = option["items"]["$ref"].rsplit("/", 1)[-1]
            option["items"] = {}
            option["description"] = (
                f"an array of items, each as {item} describes it; each is answered by itself in "
                "the 200: a bad one is rejected with the reason, the others are kept"
            )
    return schema


def build_openapi(version: str) -> dict[str, Any]:
    types: list[Any] = []
    for op in OPS:
        types.extend(t for _, t in op.responses.values() if t is not None)
        if op.body is not None:
            types.append(op.body)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    refine(components)
    refs = dict(zip(map(id, types), schemas))
    paths: dict[str, Any] = {}
    for op in OPS:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": f"{op.method}_{op.path}", "responses": {}}
        if op.params:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "schema": p.schema,
                    **({"description": p.description} if p.description else {}),
                    **({"style": "form", "explode": True} if p.schema.get("type") == "array" else {}),
                }
                for p in op.params
            ]
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _batch_body(refs[id(op.body)])}},
            }
        for status, (desc, typ) in op.responses.items():
            ctype = op.content_type if status == 200 else "application/json"
            schema = refs[id(typ)] if typ is not None else {"type": "string"}
            entry["responses"][str(status)] = {"description": desc, "content": {ctype: {"schema": schema}}}
            if 200 <= status < 300 and op.links:
                entry["responses"][str(status)]["links"] = {
                    name: {"operationId": target, "parameters": params} for name, (target, params) in op.links.items()
                }
        if op.scope is not None:
            entry["security"] = [{"bearer": []}, {}]
            entry["description"] = f"Needs a token with scope '{op.scope}' (or admin) once tokens exist."
        paths.setdefault(op.path, {})[op.method] = entry
    _document_patterns(components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flowsight",
            "version": version,
            "description": "Workflow observability: ingest events and logs, query runs and logs, stream live.",
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
