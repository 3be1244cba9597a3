"""``[logs]`` and ``[[log_rules]]``: where logs are read from, how long they
are kept, and the log alert rules.

Every field is checked at load, each problem at its line; a problem in a rule
names the rule (``rule 'db-errors': invalid regex '(': ...``). A rule's
``options`` are exactly the keyword arguments of its kind's class in
:mod:`flowsight.logs.alert_rules`, so :meth:`LogRuleConfig.build` is
``make_rule(kind, name, **options)`` and makes a rule with fresh state.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path as FsPath
from typing import Any

from flowsight.options.fields import (
    Converter,
    Invalid,
    Reader,
    Table,
    array,
    boolean,
    choice,
    duration,
    found,
    integer,
    nonempty_string,
    number,
    string,
    string_table,
)
from flowsight.options.locate import Path
from flowsight.errors import ConfigError
from flowsight.model.alerts import Severity
from flowsight.logs.alert_rules import (
    DIRECTIONS,
    RESERVED_LABELS,
    LogAlertRule,
    compile_pattern,
    label_name,
    time_of_day,
    zone,
)
from flowsight.logs.ruleset import RULE_KINDS, make_rule
from flowsight.logs.entries import LogLevel, level_from_word

DEFAULT_RETENTION = 14 * 86400.0
STARTS = ("end", "beginning")


@dataclass(frozen=True)
class LogSource:
    """One ``[[logs.sources]]``: a file or glob (made absolute against the
    configuration file's directory), the workflow its lines belong to, where
    to start reading a file met for the first time, whether to join
    multi-line entries. ``line``: where its table starts in the file."""

    path: str
    workflow: str | None = None
    start: str = "end"
    multiline: bool = True
    line: int = 0


@dataclass(frozen=True)
class LogSettings:
    """``[logs]``: how long log entries are kept (seconds), and the sources."""

    retention: float = DEFAULT_RETENTION
    sources: tuple[LogSource, ...] = ()


@dataclass(frozen=True)
class LogRuleConfig:
    """One ``[[log_rules]]``, checked: ``options`` are the keyword arguments of
    its kind's rule class. ``line``: where its table starts in the file."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    line: int = 0

    def build(self) -> LogAlertRule:
        """A new rule (its windows and timers empty). Raises ConfigError (not for a loaded file)."""
        return make_rule(self.kind, self.name, **self.options)


# ---- converters ------------------------------------------------------------------------
def severity(value: Any) -> Severity:
    return Severity(choice(s.value for s in Severity)(value))


def level(value: Any) -> LogLevel:
    """A level word (``warn``, ``warning``, ``ERROR``...)."""
    lv = level_from_word(value) if isinstance(value, str) else None
    if lv is None:
        raise Invalid(f"expected a log level, one of {', '.join(repr(v.value) for v in LogLevel)}, got {found(value)}")
    return lv


def pattern(value: Any) -> str:
    text = string(value)
    try:
        compile_pattern(text)
    except ConfigError as exc:
        raise Invalid(str(exc)) from None
    return text


def time_of_day_value(value: Any) -> dt.time:
    """``"03:00"``, or a TOML local time ``03:00:00``."""
    if isinstance(value, dt.time) and not isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            raise Invalid("expected a local time of day; give the zone in timezone")
        return value
    if not isinstance(value, str):
        raise Invalid(f'expected a time of day as "HH:MM" such as "03:00", got {found(value)}')
    try:
        return time_of_day(value)
    except ConfigError:
        raise Invalid(f'expected a time of day as "HH:MM" such as "03:00", got {found(value)}') from None


def timezone(value: Any) -> str:
    text = nonempty_string(value)
    try:
        zone(text)
    except ConfigError as exc:
        raise Invalid(str(exc)) from None
    return text


def field_values(value: Any) -> dict[str, Any]:
    """A table of field name = string, number or boolean."""
    if not isinstance(value, dict):
        raise Invalid(f"expected a table of field = value, got {found(value)}")
    bad: list[tuple[Path, str]] = [
        ((k,), f"expected a string, number or boolean, got {found(v)}")
        for k, v in value.items()
        if isinstance(v, (dict, list, dt.date, dt.time))
    ]
    if bad:
        raise Invalid(problems=bad)
    return dict(value)


def group_by(value: Any) -> list[str]:
    names = array(nonempty_string)(value)
    bad: list[tuple[Path, str]] = [
        ((i,), f"field {n!r} would be the label {label_name(n)!r}, which the rule sets itself")
        for i, n in enumerate(names)
        if label_name(n) in RESERVED_LABELS
    ]
    if bad:
        raise Invalid(problems=bad)
    return names


def labels(value: Any) -> dict[str, str]:
    table = string_table(value)
    bad: list[tuple[Path, str]] = []
    for k in table:
        if k in RESERVED_LABELS:
            bad.append(((k,), f"the rule sets {k!r} itself (alertname is the rule's name)"))
        elif label_name(k) != k:
            bad.append(((k,), f"{k!r} is not a label name (letters, digits and _, not first a digit)"))
    if bad:
        raise Invalid(problems=bad)
    return table


COMMON: dict[str, Converter[Any]] = {
    "pattern": pattern,
    "contains": nonempty_string,
    "ignore_case": boolean,
    "level": level,
    "fields": field_values,
    "group_by": group_by,
    "severity": severity,
    "realert": duration(),
    "resolve_after": duration(positive=True),
    "labels": labels,
    "annotations": string_table,
}
KIND_FIELDS: dict[str, dict[str, Converter[Any]]] = {
    "match": {},
    "frequency": {"threshold": integer(1), "window": duration(positive=True)},
    "spike": {
        "window": duration(positive=True),
        "factor": number(above=1),
        "direction": choice(DIRECTIONS),
        "min_count": integer(1),
    },
    "absence": {"within": duration(positive=True), "by": time_of_day_value, "timezone": timezone},
    "new_template": {},
}
REQUIRED = {"frequency": ("threshold", "window"), "spike": ("window",)}
assert set(KIND_FIELDS) == set(RULE_KINDS)
SOURCE = ("path", "workflow", "start", "multiline")


# ---- reading -------------------------------------------------------------------------------
def read_logs(reader: Reader, t: Table, base_dir: FsPath) -> LogSettings:
    """``[logs]``."""
    retention = t.get("retention", duration(positive=True))
    sources: list[LogSource] = []
    paths: dict[str, int] = {}
    for path, raw in t.tables("sources"):
        st = reader.table(path, raw, SOURCE)
        if st is None:
            continue
        before = len(reader.problems)
        given = st.get("path", nonempty_string, required=True)
        workflow = st.get("workflow", nonempty_string)
        start = st.get("start", choice(STARTS))
        multiline = st.get("multiline", boolean)
        if given is None or len(reader.problems) > before:
            continue
        p = FsPath(given).expanduser()
        full = str(p if p.is_absolute() else base_dir / p)
        if full in paths:
            reader.error(st.at("path"), f"{given!r} is already read by the source on line {paths[full]}")
            continue
        paths[full] = reader.line(path)
        sources.append(LogSource(full, workflow, start or "end", multiline is not False, reader.line(path)))
    return LogSettings(DEFAULT_RETENTION if retention is None else retention, tuple(sources))


def read_log_rules(reader: Reader, top: Table) -> tuple[LogRuleConfig, ...]:
    """Every ``[[log_rules]]``; each problem in one names it."""
    out: list[LogRuleConfig] = []
    names: dict[str, int] = {}
    for path, raw in top.tables("log_rules"):
        before = len(reader.problems)
        rule = _read_rule(reader, path, raw, names)
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and name.strip():
            prefix = f"rule {name!r}: "
            reader.problems[before:] = [
                p if p.message.startswith(prefix) else replace(p, message=prefix + p.message)
                for p in reader.problems[before:]
            ]
        if rule is not None and len(reader.problems) == before:
            out.append(rule)
    return tuple(out)


def _read_rule(reader: Reader, path: Path, raw: Any, names: dict[str, int]) -> LogRuleConfig | None:
    if not isinstance(raw, dict):
        reader.error(path, f"expected a table, got {found(raw)}")
        return None
    kinds = tuple(RULE_KINDS)
    kind = reader.convert((*path, "kind"), raw["kind"], choice(kinds)) if "kind" in raw else None
    if "kind" not in raw:
        reader.error((*path, "kind"), f"missing; this field is required (one of {', '.join(kinds)})")
    fields = {**COMMON, **KIND_FIELDS[kind]} if kind else {}
    # with an unknown kind the other fields cannot be judged: only name is read
    t = Table(reader, path, raw, ("name", "kind", *fields) if kind else tuple(raw))
    name = t.unique_name(names, "log rule", say_name=False)
    if kind is None or name is None:
        return None
    before = len(reader.problems)
    options = {
        k: v for k, conv in fields.items() if (v := t.get(k, conv, required=k in REQUIRED.get(kind, ()))) is not None
    }
    _together(reader, t, kind, options)
    if len(reader.problems) > before:
        return None
    rc = LogRuleConfig(name, kind, options, reader.line(path))
    try:
        rc.build()  # what only the rule checks, now rather than at the first entry
    except ConfigError as exc:
        reader.error(path, str(exc))
        return None
    return rc


def _together(reader: Reader, t: Table, kind: str, options: dict[str, Any]) -> None:
    """What the fields of one rule need of each other."""
    if "pattern" in t and "contains" in t:
        reader.error(t.at("contains"), "give pattern (a regex) or contains (a substring), not both")
    keyed = {label_name(f) for f in options.get("group_by", RULE_KINDS[kind].default_group_by)}
    for k in options.get("labels", {}):
        if k in keyed:
            reader.error((*t.at("labels"), k), f"the label {k!r} comes from group_by (the entry's value)")
    if kind == "absence":
        if "within" in t and "by" in t:
            reader.error(t.at("by"), "give within (a duration) or by (a time of day), not both")
        elif "within" not in t and "by" not in t:
            reader.error(
                t.path, 'an absence rule needs within (a duration such as "2h") or by (a time of day such as "03:00")'
            )
        if "timezone" in t and "by" not in t:
            reader.error(t.at("timezone"), "timezone applies to by (a time of day) only")
        if "resolve_after" in t:
            reader.error(
                t.at("resolve_after"), "an absence alert resolves when the line comes; resolve_after does not apply"
            )
