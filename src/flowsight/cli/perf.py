"""``flowsight perf``: resource samples from the store (the server takes
them), per host, run or workflow; a workflow's duration quantiles."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from flowsight.cli.render import require_run_id
from flowsight.errors import FlowsightError
from flowsight.model.durations import format_duration
from flowsight.model.performance import RESOURCE_METRICS, Scope, ScopeKind, format_metric, parse_scope
from flowsight.model.performance.thresholds import quantile_of
from flowsight.store.interface import Store

_BLOCKS = " ▁▂▃▄▅▆▇█"


def add_parser(sub: Any, duration: Callable[[str], float]) -> None:
    perf = sub.add_parser("perf", help="resources per host, run or workflow; a workflow's durations")
    perf.add_argument(
        "scope",
        nargs="?",
        help="host:NAME, run:RUN_ID (or a run id, a unique prefix is enough) or workflow:NAME; none: what has samples",
    )
    perf.add_argument("--metric", choices=RESOURCE_METRICS, help="one metric over time")
    perf.add_argument("--since", type=duration, default=3600.0, help="how far back (default 1h)")
    perf.add_argument("--step", type=duration, help="bucket width for --metric (a multiple of 60s)")
    perf.add_argument("--json", action="store_true")


def _scope(store: Store, raw: str) -> Scope:
    """A scope as written, or a bare run id (a unique prefix is enough)."""
    try:
        scope = parse_scope(raw)
    except ValueError:
        scope = Scope.run(raw)
    if scope.kind is ScopeKind.RUN:
        scope = Scope.run(require_run_id(store, scope.id))
    return scope


def cmd_perf(store: Store, args: argparse.Namespace, out: Console) -> int:
    now = time.time()
    if args.scope is None:
        rows = store.perf.sample_scopes(now - args.since)
        scopes: dict[str, list[str]] = {}
        for kind, ident, metric in rows:
            scopes.setdefault(f"{kind}:{ident}", []).append(metric)
        if args.json:
            print(json.dumps({"scopes": [{"scope": s, "metrics": m} for s, m in sorted(scopes.items())]}, indent=2))
            return 0
        if not scopes:
            out.print(f"no resource samples in the last {format_duration(args.since)} (flowsight serve takes them)")
            return 0
        table = Table(title="scopes with samples")
        table.add_column("scope")
        table.add_column("metrics")
        for s, m in sorted(scopes.items()):
            table.add_row(s, ", ".join(m))
        out.print(table)
        return 0
    scope = _scope(store, args.scope)
    if args.metric is not None:
        return _series(store, scope, args, now, out)
    latest = store.perf.latest_samples(scope.kind.value, scope.id)
    durations = _durations(store, scope)
    if args.json:
        print(
            json.dumps(
                {
                    "scope": str(scope),
                    "latest": {k: {"ts": t, "value": v} for k, (t, v) in latest.items()},
                    "durations": durations,
                },
                indent=2,
            )
        )
        return 0
    if not latest and durations is None:
        out.print(
            f"no samples of {scope} (the server samples the runs of its own machine: the SDK reports the pid and host)"
        )
        return 0
    if latest:
        table = Table(title=f"{scope}: latest samples")
        for col in ("metric", "value", "at"):
            table.add_column(col)
        for metric in RESOURCE_METRICS:
            if metric in latest:
                ts, value = latest[metric]
                table.add_row(metric, format_metric(metric, value), f"{format_duration(max(0.0, now - ts))} ago")
        out.print(table)
    if durations is not None:
        out.print(
            f"{scope}: last {durations['runs']} completed runs took p50 "
            f"{format_duration(durations['p50_s'])}, p95 {format_duration(durations['p95_s'])}"
        )
    return 0


def _durations(store: Store, scope: Scope) -> dict[str, Any] | None:
    if scope.kind is not ScopeKind.WORKFLOW:
        return None
    h = store.stats.history(scope.id, 100)
    if not h.run_durations:
        return None
    return {
        "runs": len(h.run_durations),
        "p50_s": statistics.median(h.run_durations),
        "p95_s": quantile_of(h.run_durations, 0.95),
    }


def _series(store: Store, scope: Scope, args: argparse.Namespace, now: float, out: Console) -> int:
    try:
        points = store.perf.query_samples(
            scope.kind.value,
            scope.id,
            args.metric,
            now - args.since,
            None,
            args.step,
            raw_since=None if args.step is not None else now - args.since,
        )
    except ValueError as exc:
        raise FlowsightError(f"--step: {exc}") from None
    if args.json:
        print(
            json.dumps(
                {
                    "scope": str(scope),
                    "metric": args.metric,
                    "points": [
                        {"ts": p.ts, "avg": p.avg, "min": p.min, "max": p.max, "count": p.count} for p in points
                    ],
                },
                indent=2,
            )
        )
        return 0
    if not points:
        out.print(f"no samples of {args.metric} for {scope} in the last {format_duration(args.since)}")
        return 0
    top = max(p.max for p in points) or 1.0
    spark = "".join(_BLOCKS[min(8, int(8 * p.avg / top + 0.5))] if top > 0 else " " for p in points[-120:])
    out.print(
        f"{scope} {args.metric}: {len(points)} points, last {format_metric(args.metric, points[-1].avg)}, "
        f"max {format_metric(args.metric, top)}"
    )
    out.print(spark)
    return 0
