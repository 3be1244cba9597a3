"""``flowsight schedules``: each workflow with expectations, the judgement of
its last slot, its next expected start (in its own time zone) and its streak,
judged from the store as a server would (without writing anything)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from flowsight.monitors.schedules import ScheduleMonitor
from flowsight.server.views import schedule_list
from flowsight.store.database import safe_url
from flowsight.store.interface import Store

COLOURS = {
    "ok": "green",
    "late": "yellow",
    "missed": "bold red",
    "overran": "red",
    "too_short": "magenta",
    "deadline_missed": "red",
    "unknown": "dim",
    "pending": "cyan",
    "none": "dim",
}
MARKS = {
    "ok": "●",
    "late": "◐",
    "missed": "✕",
    "overran": "▲",
    "too_short": "▼",
    "deadline_missed": "◆",
    "unknown": "?",
    "pending": "○",
}


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "schedules", help="scheduled workflows: the last slot's judgement, the next expected start, the streak"
    )
    p.add_argument("--config", help="the file (default: $FLOWSIGHT_CONFIG or ./flowsight.toml if present)")
    p.add_argument("--slots", type=int, default=10, help="slots shown per workflow (default 10, at most 50)")
    p.add_argument("--json", action="store_true")


def cmd_schedules(store: Store, args: argparse.Namespace, out: Console) -> int:
    from flowsight.config import config_or_default

    cfg = config_or_default(args.config, lambda what: print(f"flowsight: {what}", file=sys.stderr), "its workflows")
    monitor = ScheduleMonitor(
        store, lambda alert: None, cfg.expectations, heartbeat=cfg.schedule_heartbeat, read_only=True
    )
    monitor.restore(s.alert for s in store.alerts.list_alerts("firing"))
    monitor.tick(time.time())
    board = schedule_list(monitor.snapshot(), max(0, min(50, args.slots)))
    if args.json:
        print(json.dumps(msgspec.to_builtins(board), indent=2))
        return 0
    if not board.schedules:
        out.print(
            f"no workflow has expectations in {store.dialect} store {safe_url(store.url)}"
            + (f" or {cfg.file}" if cfg.file else "")
            + ': give [workflows.NAME] schedule = "..." in flowsight.toml, or PUT /api/v1/schedules/NAME',
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return 0
    if not store.schedules.ever_watched():
        out.print(
            "[dim]no server has watched this store: late and missed are judged from the runs alone[/dim]",
            highlight=False,
        )
    table = Table(title=f"{len(board.schedules)} scheduled workflow{'s' if len(board.schedules) != 1 else ''}")
    for col in ("workflow", "schedule", "last", "streak", "next expected", "slots (oldest first)", "firing"):
        table.add_column(col)
    for s in board.schedules:
        colour = COLOURS.get(s.status, "")
        strip = " ".join(f"[{COLOURS.get(j.status, '')}]{MARKS.get(j.status, '·')}[/]" for j in s.slots)
        table.add_row(
            s.workflow,
            s.schedule,
            f"[{colour}]{s.status}[/]",
            f"{s.streak}×" if s.streak else "",
            s.next_local or "-",
            strip,
            ", ".join(s.firing),
        )
    out.print(table)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(board.counts.items()))
    out.print(f"[dim]{counts}; ● ok ◐ late ✕ missed ▲ overran ▼ too short ◆ deadline missed ? unknown ○ pending[/dim]")
    return 0
