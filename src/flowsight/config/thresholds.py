"""``[[thresholds]]``: the performance monitor's alert thresholds (the
specification's ``alert_thresholds: name -> Threshold``), checked at load.

Two kinds. ``kind = "threshold"`` (the default): ``metric`` of each
``scope`` (host, run or workflow) ``above`` or ``below`` a value for ``for``,
resolved past ``resolve``. ``kind = "baseline"``: a ``run_duration`` or
``step_duration`` against the same workflow's last ``runs`` durations
(``factor`` x the ``quantile``, or a robust ``zscore``). Every problem names
the file, the line, the threshold and the field.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flowsight.options.fields import (
    Invalid,
    Reader,
    Table,
    choice,
    duration,
    found,
    integer,
    nonempty_string,
    number,
)
from flowsight.model.alerts import Severity
from flowsight.model.performance import ScopeKind
from flowsight.model.performance.thresholds import BASELINE_METRICS, THRESHOLD_METRICS, Baseline, Direction, Threshold

COMMON = ("name", "kind", "severity", "workflow")
THRESHOLD_FIELDS = (*COMMON, "metric", "scope", "above", "below", "resolve", "for")
BASELINE_FIELDS = (*COMMON, "metric", "step", "quantile", "factor", "runs", "min_runs", "zscore")
KINDS = ("threshold", "baseline")


def _quantile(value: Any) -> float:
    """0.95, or "p95" / "p99.9"."""
    if isinstance(value, str) and value.lower().startswith("p"):
        try:
            q = float(value[1:]) / 100
        except ValueError:
            q = -1.0
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        q = float(value)
    else:
        q = -1.0
    if not 0 < q < 1:
        raise Invalid(f'expected a quantile such as 0.95 or "p95", got {found(value)}')
    return q


def _severity(value: Any) -> Severity:
    return Severity(choice(s.value for s in Severity)(value))


def read_thresholds(reader: Reader, top: Table) -> tuple[list[Threshold], list[Baseline]]:
    """The valid thresholds and baselines, in file order; problems go to ``reader``."""
    thresholds: list[Threshold] = []
    baselines: list[Baseline] = []
    names: dict[str, int] = {}
    for path, raw in top.tables("thresholds"):
        if not isinstance(raw, dict):
            reader.error(path, f"expected a table, got {found(raw)}")
            continue
        before = len(reader.problems)
        kind = reader.convert((*path, "kind"), raw.get("kind", "threshold"), choice(KINDS))
        t = Table(reader, path, raw, THRESHOLD_FIELDS if kind != "baseline" else BASELINE_FIELDS)
        name = t.unique_name(names, "threshold")
        severity = t.get("severity", _severity) or Severity.WARNING
        workflow = t.get("workflow", nonempty_string)
        if kind == "baseline":
            made: Any = _baseline(t, name, severity, workflow)
        elif kind == "threshold":
            made = _threshold(reader, t, name, severity, workflow)
        else:
            continue
        if len(reader.problems) > before and name is not None:
            # "thresholds[2].for: ..." says where; the name says which one to a reader of the file
            reader.problems[before:] = [
                replace(p, message=f"threshold {name!r}: {p.message}") if not p.message.startswith("threshold ") else p
                for p in reader.problems[before:]
            ]
        if made is None or len(reader.problems) > before or name is None:
            continue
        (baselines if isinstance(made, Baseline) else thresholds).append(made)
    return thresholds, baselines


def _threshold(
    reader: Reader, t: Table, name: str | None, severity: Severity, workflow: str | None
) -> Threshold | None:
    metric = t.get("metric", choice(THRESHOLD_METRICS), required=True)
    scope = t.get("scope", choice(s.value for s in ScopeKind), required=True)
    above, below = t.get("above", number()), t.get("below", number())
    if ("above" in t) == ("below" in t):
        reader.error(t.path, "give exactly one of 'above' and 'below' (the value it fires past)")
        return None
    resolve = t.get("resolve", number())
    for_ = t.get("for", duration()) or 0.0
    value = above if above is not None else below
    if name is None or metric is None or scope is None or value is None:
        return None
    try:
        return Threshold(
            name,
            metric,
            ScopeKind(scope),
            value,
            Direction.ABOVE if above is not None else Direction.BELOW,
            for_,
            resolve,
            severity,
            workflow,
        )
    except ValueError as exc:
        reader.error(
            t.at("resolve") if "resolve" in str(exc) else t.path, str(exc).removeprefix(f"threshold {name!r}: ")
        )
        return None


def _baseline(t: Table, name: str | None, severity: Severity, workflow: str | None) -> Baseline | None:
    metric = t.get("metric", choice(BASELINE_METRICS), required=True)
    step = t.get("step", nonempty_string)
    quantile = t.get("quantile", _quantile)
    factor = t.get("factor", number())
    runs = t.get("runs", integer(2))
    min_runs = t.get("min_runs", integer(2))
    zscore = t.get("zscore", number(above=0))
    if name is None or metric is None:
        return None
    if step is not None and metric != "step_duration":
        t.reader.error(t.at("step"), "only a step_duration baseline names a step")
        return None
    given: dict[str, Any] = {
        k: v
        for k, v in (
            ("quantile", quantile),
            ("factor", factor),
            ("runs", runs),
            ("min_runs", min_runs),
            ("zscore", zscore),
        )
        if v is not None
    }
    if "runs" in given and "min_runs" not in given:
        given["min_runs"] = min(10, given["runs"])
    try:
        return Baseline(name, metric, severity=severity, workflow=workflow, step=step, **given)
    except ValueError as exc:
        t.reader.error(t.path, str(exc).removeprefix(f"baseline {name!r}: "))
        return None


PERFORMANCE = ("interval", "raw_retention", "rollup_retention")


def read_performance(reader: Reader, top: Table) -> dict[str, float]:
    """``[performance]``: ``interval`` (how often the server samples the host
    and its runs' process trees), ``raw_retention`` (how long every sample is
    kept) and ``rollup_retention`` (how long the 1-minute rollups are kept):
    those given, in seconds."""
    t = top.sub("performance", PERFORMANCE)
    if t is None:
        return {}
    return {k: v for k in PERFORMANCE if (v := t.get(k, duration(positive=True))) is not None}
