"""``flowsight faults`` (open and recent faults, from the store) and
``flowsight detectors check`` (every configured detector once, now)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowsight.cli.render import require_run_id
from flowsight.errors import FlowsightError
from flowsight.model.durations import format_duration
from flowsight.model.faults import FaultStatus
from flowsight.server.views import fault_view
from flowsight.store.database import safe_url
from flowsight.store.interface import Store


def add_parsers(sub: Any, duration: Callable[[str], float]) -> None:
    faults = sub.add_parser("faults", help="faults: open ones and those resolved lately")
    faults.add_argument(
        "--since", type=duration, default=24 * 3600.0, help="resolved faults that ended within this long (default 24h)"
    )
    faults.add_argument("--open", action="store_true", help="open faults only")
    faults.add_argument("--detector", help="only faults this detector found")
    faults.add_argument("--run", dest="run_id", help="only faults that hurt this run")
    faults.add_argument("--limit", type=int, default=100)
    faults.add_argument("--json", action="store_true")

    det = sub.add_parser("detectors", help="fault detectors: check them once now")
    dsub = det.add_subparsers(dest="detectors_command", required=True, metavar="ACTION")
    check = dsub.add_parser("check", help="run every detector of flowsight.toml once and print what each found")
    check.add_argument("--config", help="the file (default: $FLOWSIGHT_CONFIG or ./flowsight.toml)")
    check.add_argument("--json", action="store_true")


def cmd_faults(store: Store, args: argparse.Namespace, out: Console) -> int:
    now = time.time()
    run_id = args.run_id
    if run_id is not None:  # a unique prefix is enough, as for `show`
        run_id = require_run_id(store, run_id)
    records = store.faults.list_faults(
        status=FaultStatus.OPEN if args.open else None,
        since=now - args.since,
        detector=args.detector,
        run_id=run_id,
        limit=args.limit,
    )
    rows = [fault_view(r, now) for r in records]
    if args.json:
        print(json.dumps({"faults": msgspec.to_builtins(rows)}, indent=2))
        return 0
    if not rows:
        out.print(
            "no open faults"
            + ("" if args.open else f" and none resolved in the last {format_duration(args.since)}")
            + (f" for run {run_id}" if run_id else "")
            + f" in {store.dialect} store {safe_url(store.url)}",
            highlight=False,
        )
        return 0
    table = Table(title=f"{len(rows)} fault{'s' if len(rows) != 1 else ''}")
    for col in ("status", "severity", "fault", "target", "detector", "when", "message"):
        table.add_column(col)
    colors = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}
    for r in rows:
        status = "[red]open[/red]" if r.status == "open" else "[green]resolved[/green]"
        if r.runs:
            status += f"\n[dim]{len(r.runs)} run{'s' if len(r.runs) != 1 else ''} hurt[/dim]"
        lasted = format_duration(r.duration_s)
        when = (
            f"for {lasted}\n[dim]since {_clock(r.opened_at)}[/dim]"
            if r.status == "open"
            else f"resolved {_ago(r.resolved_at if r.resolved_at is not None else now, now)}\n[dim]lasted {lasted}[/dim]"
        )
        sev = r.severity
        table.add_row(
            status,
            f"[{colors.get(sev, 'white')}]{sev}[/]",
            r.alertname,
            escape(r.target),
            escape(r.detector),
            when,
            escape(r.message.splitlines()[0] if r.message else ""),
        )
    out.print(table)
    return 0


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _ago(ts: float, now: float) -> str:
    return f"{format_duration(max(0.0, now - ts))} ago"


def cmd_detectors(args: argparse.Namespace) -> int:
    """0: every detector passed; 1: some found a fault or could not check;
    2: no configuration or no detectors in it. Needs no store."""
    from flowsight.config import ConfigFileError, config_for
    from flowsight.config.detectors import build_detector
    from flowsight.monitors.fault import FaultMonitor

    try:
        cfg = config_for(args.config)
    except ConfigFileError as exc:
        for problem in exc.problems:
            print(problem)
        return 2
    except FlowsightError as exc:
        print(f"flowsight: {exc}", file=sys.stderr)
        return 2
    if not cfg.file:
        print(
            "flowsight: no configuration file: ./flowsight.toml does not exist and $FLOWSIGHT_CONFIG is not "
            "set; give it with --config PATH (docs/flowsight.example.toml shows each detector kind)",
            file=sys.stderr,
        )
        return 2
    if not cfg.detectors:
        print(
            f"flowsight: no [[detectors]] in {cfg.file}; docs/flowsight.example.toml shows each kind", file=sys.stderr
        )
        return 2
    store = None
    if any(dc.options.get("registered") for dc in cfg.detectors):  # the outputs runs registered are in the store
        from flowsight.store import open_store

        store = open_store(args.db)
    detectors = [build_detector(dc, store) for dc in cfg.detectors]
    monitor = FaultMonitor(detectors, schedules={dc.name: dc.schedule for dc in cfg.detectors})

    async def run() -> list[Any]:
        try:
            return await monitor.check_once()
        finally:
            for d in detectors:
                close = getattr(d, "aclose", None)
                if close is not None:
                    await close()

    try:
        results = asyncio.run(run())
    finally:
        if store is not None:
            store.close()
    kinds = {dc.name: dc.kind for dc in cfg.detectors}
    rows = [
        {
            "detector": r.detector,
            "kind": kinds[r.detector],
            "result": "ok" if r.ok else "fault" if r.fault is not None else "broken",
            "fault": None
            if r.fault is None
            else {
                "kind": r.fault.kind.value,
                "target": r.fault.target,
                "message": r.fault.message,
                "evidence": dict(r.fault.evidence),
            },
            "error": r.error,
            "took_s": round(r.duration, 4),
        }
        for r in results
    ]
    if args.json:
        print(json.dumps({"detectors": rows}, indent=2))
    else:
        out = Console(width=160) if not sys.stdout.isatty() else Console()
        table = Table()
        for col in ("detector", "kind", "result", "took"):
            table.add_column(col)
        for row, r in zip(rows, results):
            if r.fault is not None:
                what = f"[red]{r.fault.kind.alertname}[/red] {escape(r.fault.target)}: {escape(r.fault.message)}"
            elif r.error is not None:
                what = f"[yellow]broken[/yellow]: {escape(r.error)}"
            else:
                what = "[green]ok[/green]"
            table.add_row(escape(row["detector"]), row["kind"], what, f"{r.duration * 1000:.0f} ms")
        out.print(table)
    return 0 if all(r.ok for r in results) else 1
