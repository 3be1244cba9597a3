"""``flowsight.toml``: the :class:`Config` it describes, and reading it.

Everything wrong in a file is reported at once, each problem with the file,
the line, the dotted path of the field, what was expected and what was
found (:class:`~flowsight.options.fields.Problem`); see
``docs/flowsight.example.toml`` for every field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path as FsPath
from typing import Any

from flowsight.options.fields import (
    Converter,
    Invalid,
    Problem,
    Reader,
    Table,
    array,
    boolean,
    choice,
    duration,
    found,
    integer,
    matchers,
    matcher,
    nonempty_string,
    number,
    string,
    suggest,
    url,
)
from flowsight.options.locate import Path, format_path, locate
from flowsight.config.detectors import DetectorConfig, read_detectors
from flowsight.config.thresholds import read_performance, read_thresholds
from flowsight.config.logs import LogRuleConfig, LogSettings, read_log_rules, read_logs
from flowsight.config.otlp import OtlpExport, read_export, read_otlp
from flowsight.config.schedules import FIELDS as SCHEDULE_FIELDS, read_expectations, read_schedules
from flowsight.config.receivers import ReceiverConfig, build_notifier, field_of, read_receivers
from flowsight.errors import ConfigError
from flowsight.model.alerts import InhibitRule, Severity
from flowsight.model.alerts.flapping import FlapPolicy
from flowsight.model.schedules import Expectations
from flowsight.model.hosts import PATTERN_HINT, allowed_pattern
from flowsight.logs.alert_rules import LogAlertRule
from flowsight.model.alerts.routing import Route
from flowsight.model.performance.thresholds import Baseline, Threshold
from flowsight.model.alerts.builtin_rules import (
    RuleSettings,
    RunFailed,
    RunSlow,
    RunStalled,
    StepFailed,
    WorkflowSettings,
)


class ConfigFileError(ConfigError):
    """A configuration file with problems. ``problems`` lists every one found
    (in file order); the message is one ``FILE:LINE: FIELD: message`` line each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Config:
    """What ``flowsight.toml`` says. The defaults are :meth:`default`'s."""

    file: str = ""
    external_url: str = ""
    #: names the server answers to besides its own ([server] allowed_hosts; see flowsight.server.hosts)
    allowed_hosts: tuple[str, ...] = ()
    resolve_timeout: float = 300.0
    flap_policy: FlapPolicy = field(default_factory=FlapPolicy)
    route: Route = field(default_factory=lambda: Route("log"))
    inhibit_rules: tuple[InhibitRule, ...] = ()
    receivers: tuple[ReceiverConfig, ...] = field(default_factory=lambda: (ReceiverConfig("log", "log"),))
    rules: RuleSettings = field(default_factory=RuleSettings)
    workflows: dict[str, WorkflowSettings] = field(default_factory=dict)
    #: what each workflow is expected to do and when ([workflows.NAME] schedule, every, ...)
    expectations: dict[str, Expectations] = field(default_factory=dict)
    #: [schedules]: the server's heartbeat (three missed make a gap nobody watched), and how long slots are kept
    schedule_heartbeat: float = 10.0
    schedule_keep: float = 35 * 86400.0
    logs: LogSettings = field(default_factory=LogSettings)
    log_rules: tuple[LogRuleConfig, ...] = ()
    detectors: tuple[DetectorConfig, ...] = ()
    #: the performance monitor's alert_thresholds, and its baselines
    thresholds: tuple[Threshold, ...] = ()
    baselines: tuple[Baseline, ...] = ()
    #: how often the server samples the host and the process trees of its runs (seconds)
    performance_interval: float = 5.0
    #: how long every sample is kept, and the 1-minute rollups (seconds)
    performance_raw_retention: float = 6 * 3600.0
    performance_rollup_retention: float = 14 * 86400.0
    #: [otlp.services.NAME] mapping: a service's spans held to one rule (flowsight.integrations.otlp)
    otlp_services: dict[str, str] = field(default_factory=dict)
    #: [export.otlp]: ended runs sent as traces to an OTLP/HTTP endpoint (None: no export)
    otlp_export: OtlpExport | None = None

    @classmethod
    def default(cls) -> Config:
        """No file: one ``log`` receiver named ``log`` takes every alert; the built-in rules."""
        return cls()

    def dependencies(self) -> dict[str, tuple[str, ...]]:
        """workflow -> the services it depends on (for ``AlertManager(dependencies=...)``)."""
        return {name: w.depends_on for name, w in self.workflows.items() if w.depends_on}

    def make_log_rules(self) -> list[LogAlertRule]:
        """The ``[[log_rules]]`` as new rules (empty windows and timers), in file order;
        hand them to :class:`~flowsight.logs.ruleset.LogRuleSet`."""
        return [rc.build() for rc in self.log_rules]

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((r for r in self.receivers if r.name == name), None)

    def route_count(self) -> int:
        """Routes in the tree, the root included."""

        def count(r: Route) -> int:
            return 1 + sum(count(c) for c in r.routes)

        return count(self.route)


# ---- the schema -----------------------------------------------------------------
TOP = (
    "server",
    "alerting",
    "rules",
    "workflows",
    "schedules",
    "logs",
    "log_rules",
    "detectors",
    "thresholds",
    "performance",
    "otlp",
    "export",
)
LOGS = ("retention", "sources")
SERVER = ("external_url", "allowed_hosts")
ALERTING = ("resolve_timeout", "flapping", "route", "inhibit_rules", "receivers")
FLAPPING: dict[str, Converter[Any]] = {
    "max_changes": integer(1),
    "window": duration(positive=True),
    "settle": duration(),
}
ROUTE = (
    "name",
    "receiver",
    "matchers",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "continue",
    "routes",
)
INHIBIT = ("source_matchers", "target_matchers", "equal")
WORKFLOW = ("depends_on", "rules", *SCHEDULE_FIELDS)


def severity(value: Any) -> Severity:
    return Severity(choice(s.value for s in Severity)(value))


_COMMON: dict[str, Converter[Any]] = {"enabled": boolean, "severity": severity}
RULES: dict[str, dict[str, Converter[Any]]] = {
    "run_failed": _COMMON,
    "run_stalled": _COMMON,
    "step_failed": {**_COMMON, "times": integer(1), "window": duration(positive=True)},
    "run_slow": {**_COMMON, "factor": number(above=0), "min_runs": integer(1)},
}
assert {f for f in RuleSettings.__dataclass_fields__} == set(RULES)
assert all(
    set(RULES[n]) <= set(c.__dataclass_fields__)
    for n, c in (
        ("run_failed", RunFailed),
        ("run_stalled", RunStalled),
        ("step_failed", StepFailed),
        ("run_slow", RunSlow),
    )
)


def group_by(value: Any) -> tuple[str, ...]:
    labels = array(nonempty_string)(value)
    if "..." in labels and len(labels) > 1:
        raise Invalid('expected "..." (every label) alone or a list of label names, got both')
    return tuple(labels)


def allowed_host(value: Any) -> str:
    try:
        return allowed_pattern(string(value))
    except ConfigError:
        raise Invalid(f"expected {PATTERN_HINT}, got {found(value)}") from None


nonempty_matchers = array(matcher, nonempty=True)
_FIELD = re.compile(r"field '(\w+)'")
_SYNTAX = re.compile(r"^(.*?)\s*\(at line (\d+), column (\d+)\)$", re.S)


# ---- entry points -------------------------------------------------------------------
def load_config(path: str | FsPath) -> Config:
    """The configuration in the file at ``path``; relative file names in it
    (``password_file``, ``ca_file``) are relative to the file's directory.

    Raises:
        ConfigFileError: the file has problems (every one listed).
        ConfigError: the file cannot be read.
    """
    p = FsPath(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such configuration file") from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError(
            [Problem(str(p), exc.object.count(b"\n", 0, exc.start) + 1, "", f"not UTF-8 text (byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the configuration file: {exc.strerror or exc}") from None
    return parse_config(text, file=str(p), base_dir=p.parent)


def parse_config(text: str, *, file: str = "<string>", base_dir: str | FsPath | None = None) -> Config:
    """The configuration in ``text`` (``file`` names it in errors; relative
    file names in it are relative to ``base_dir``, default the current directory).

    Raises:
        ConfigFileError: every problem found, TOML syntax first of all.
    """
    text = text.removeprefix("\ufeff")  # a byte order mark (Windows editors write one) is not TOML
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError([_syntax_problem(file, text, exc)]) from None
    reader = Reader(file, locate(text))
    cfg = _read(reader, data, FsPath(base_dir) if base_dir is not None else FsPath.cwd())
    if reader.problems:
        raise ConfigFileError(sorted(reader.problems, key=lambda p: p.line))
    return cfg


def _syntax_problem(file: str, text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    msg = str(exc)
    m = _SYNTAX.match(msg)
    if m is not None:
        return Problem(file, int(m.group(2)), "", f"TOML syntax error: {m.group(1)} (column {m.group(3)})")
    msg = msg.removesuffix(" (at end of document)")
    return Problem(file, max(1, len(text.splitlines())), "", f"TOML syntax error at the end of the file: {msg}")


# ---- reading ------------------------------------------------------------------------
def _read(reader: Reader, data: dict[str, Any], base_dir: FsPath) -> Config:
    top = Table(reader, (), data, TOP)
    cfg = Config(file=reader.file)

    server = top.sub("server", SERVER)
    if server is not None:
        cfg = replace(
            cfg,
            external_url=server.get("external_url", url) or "",
            allowed_hosts=tuple(server.get("allowed_hosts", array(allowed_host)) or ()),
        )

    alerting = top.sub("alerting", ALERTING)
    if alerting is not None:
        cfg = _alerting(reader, alerting, cfg, base_dir)

    rules = top.sub("rules", RULES)
    if rules is not None:
        cfg = replace(cfg, rules=_rules(rules, cfg.rules))

    if "workflows" in top:
        workflows, expectations = _workflows(reader, top, cfg.rules)
        cfg = replace(cfg, workflows=workflows, expectations=expectations)

    sched = read_schedules(top)
    if sched:
        cfg = replace(
            cfg,
            schedule_heartbeat=sched.get("heartbeat", cfg.schedule_heartbeat),
            schedule_keep=sched.get("keep", cfg.schedule_keep),
        )

    logs = top.sub("logs", LOGS)
    if logs is not None:
        cfg = replace(cfg, logs=read_logs(reader, logs, base_dir))
    if "log_rules" in top:
        cfg = replace(cfg, log_rules=read_log_rules(reader, top))
    if "detectors" in top:
        cfg = replace(cfg, detectors=tuple(read_detectors(reader, top, base_dir)))
    if "thresholds" in top:
        thresholds, baselines = read_thresholds(reader, top)
        cfg = replace(cfg, thresholds=tuple(thresholds), baselines=tuple(baselines))
    perf = read_performance(reader, top)
    if perf:
        cfg = replace(
            cfg,
            performance_interval=perf.get("interval", cfg.performance_interval),
            performance_raw_retention=perf.get("raw_retention", cfg.performance_raw_retention),
            performance_rollup_retention=perf.get("rollup_retention", cfg.performance_rollup_retention),
        )

    otlp = read_otlp(top)
    if otlp:
        cfg = replace(cfg, otlp_services=otlp)
    export = read_export(top)
    if export is not None:
        cfg = replace(cfg, otlp_export=export)

    if not reader.problems:
        _build_receivers(reader, cfg)
    return cfg


def _alerting(reader: Reader, t: Table, cfg: Config, base_dir: FsPath) -> Config:
    cfg = replace(cfg, resolve_timeout=t.get("resolve_timeout", duration(positive=True)) or cfg.resolve_timeout)
    flapping = t.sub("flapping", FLAPPING)
    if flapping is not None:
        given = {k: v for k, conv in FLAPPING.items() if (v := flapping.get(k, conv)) is not None}
        cfg = replace(cfg, flap_policy=FlapPolicy(**given))

    receivers, names = read_receivers(reader, t, base_dir)
    if "receivers" in t:
        cfg = replace(cfg, receivers=tuple(receivers))
    if "route" in t:
        route = _route(reader, t.at("route"), t.data["route"], None, names, {})
        if route is not None:
            cfg = replace(cfg, route=route)
    elif "receivers" in t:
        reader.error(
            t.at("route"),
            "missing; with [[alerting.receivers]] give [alerting.route] and its "
            "receiver (the one that takes the alerts no child route takes)",
        )

    rules = []
    for path, raw in t.tables("inhibit_rules"):
        it = reader.table(path, raw, INHIBIT)
        if it is None:
            continue
        source = it.get("source_matchers", nonempty_matchers, required=True)
        target = it.get("target_matchers", nonempty_matchers, required=True)
        equal = it.get("equal", array(nonempty_string)) or []
        if source is not None and target is not None:
            rules.append(InhibitRule(tuple(source), tuple(target), tuple(equal)))
    return replace(cfg, inhibit_rules=tuple(rules))


def _route(
    reader: Reader, path: Path, raw: Any, parent: Route | None, receivers: set[str], names: dict[str, Path]
) -> Route | None:
    """One route and its children; a child takes its parent's receiver,
    grouping and timings unless it gives its own."""
    t = reader.table(path, raw, ROUTE)
    if t is None:
        return None
    if parent is None:
        for key in ("matchers", "continue"):
            if key in t:
                reader.error(
                    t.at(key),
                    f"the root route takes every alert: it cannot have {key!r} "
                    "(put it on a child route in [[alerting.route.routes]])",
                )
    receiver = t.get("receiver", nonempty_string, required=parent is None)
    if receiver is not None and receiver not in receivers:
        known = (
            f"{suggest(receiver, receivers)}"
            if receivers
            else "; no receivers are defined (add [[alerting.receivers]])"
        )
        reader.error(t.at("receiver"), f"unknown receiver {receiver!r}{known}")
    name = t.get("name", nonempty_string)
    if name is not None:
        if name in names:
            reader.error(t.at("name"), f"duplicate route name {name!r} (also at {format_path(names[name])})")
        names[name] = t.at("name")
    base = parent if parent is not None else Route(receiver or "")
    here = Route(
        receiver=receiver or base.receiver,
        matchers=tuple(t.get("matchers", matchers) or ()),
        group_by=t.get("group_by", group_by) or base.group_by,
        group_wait=_or(t.get("group_wait", duration()), base.group_wait),
        group_interval=_or(t.get("group_interval", duration(positive=True)), base.group_interval),
        repeat_interval=_or(t.get("repeat_interval", duration(positive=True)), base.repeat_interval),
        continue_=bool(t.get("continue", boolean)) if parent is not None else False,
        name=name or "",
    )
    kids = [_route(reader, p, r, here, receivers, names) for p, r in t.tables("routes")]
    return replace(here, routes=tuple(k for k in kids if k is not None))


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _rules(t: Table, base: RuleSettings) -> RuleSettings:
    """``base`` with what ``t`` (``[rules]`` or ``[workflows.NAME.rules]``) changes."""
    changed: dict[str, Any] = {}
    for rule, fields in RULES.items():
        sub = t.sub(rule, fields)
        if sub is None:
            continue
        given = {k: v for k, conv in fields.items() if (v := sub.get(k, conv)) is not None}
        changed[rule] = replace(getattr(base, rule), **given)
    return replace(base, **changed)


def _workflows(
    reader: Reader, top: Table, rules: RuleSettings
) -> tuple[dict[str, WorkflowSettings], dict[str, Expectations]]:
    raw = top.data["workflows"]
    if not isinstance(raw, dict):
        reader.error(top.at("workflows"), f"expected a table of workflows ([workflows.NAME]), got {found(raw)}")
        return {}, {}
    out: dict[str, WorkflowSettings] = {}
    expectations: dict[str, Expectations] = {}
    for name, value in raw.items():
        wt = reader.table(("workflows", name), value, WORKFLOW)
        if wt is None:
            continue
        depends = wt.get("depends_on", array(nonempty_string)) or []
        own = wt.sub("rules", RULES)
        out[name] = WorkflowSettings(name, tuple(depends), _rules(own, rules) if own is not None else None)
        exp = read_expectations(reader, name, wt)
        if exp is not None:
            expectations[name] = exp
    return out, expectations


def _build_receivers(reader: Reader, cfg: Config) -> None:
    """Make each notifier once, so what only the notifier checks (a CA file
    that is not PEM...) is reported now, not at the first alert."""
    for i, rc in enumerate(cfg.receivers):
        try:
            build_notifier(rc, cfg.external_url)
        except ImportError:  # pragma: no cover - a notifier module still being written
            continue
        except ConfigError as exc:
            # "email field 'ca_file': ..." -> the problem goes to that field's line
            path: Path = ("alerting", "receivers", i)
            m = _FIELD.search(str(exc))
            if m is not None:
                key = field_of(rc.kind, m.group(1))
                path = (*path, key) if (*path, key) in reader.lines else path
            reader.error(path, str(exc))
