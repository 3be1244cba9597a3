"""``flowsight alerts`` and ``flowsight silence add|ls|expire``.

They work on the store, like the other commands: a silence added here is
picked up by a running server within a second; the alerts shown are the
server's last saved state, with silences and inhibition applied as the
server's configuration says.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from flowsight.errors import FlowsightError
from flowsight.model.alerts import new_silence
from flowsight.server.views import ALERT_STATUSES, alert_views, silence_view
from flowsight.store.database import safe_url
from flowsight.store.interface import Store

#: rows of the table at most by default: past a few hundred a table is read by nobody, and
#: drawing 100,000 rows took minutes (--json lists every alert)
TABLE_ROWS = 200


def add_parsers(sub: Any, duration: Callable[[str], float], positive: Callable[[str], int]) -> None:
    alerts = sub.add_parser("alerts", help="alerts: firing, pending, silenced, inhibited, flapping")
    alerts.add_argument("--status", choices=ALERT_STATUSES, help="only alerts in this status")
    alerts.add_argument(
        "--limit",
        type=positive,
        default=TABLE_ROWS,
        metavar="N",
        help=f"the table's newest N alerts (default {TABLE_ROWS}); --json lists them all",
    )
    alerts.add_argument("--config", help="flowsight.toml (default: $FLOWSIGHT_CONFIG or ./flowsight.toml)")
    alerts.add_argument("--json", action="store_true")

    silence = sub.add_parser("silence", help="silences: add, ls, expire")
    ssub = silence.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    add = ssub.add_parser("add", help="mute the alerts these matchers select, for a while")
    add.add_argument(
        "matchers",
        nargs="+",
        metavar="MATCHER",
        help="name=value, name!=value, name=~regex or name!~regex (all must match)",
    )
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--for", dest="duration", type=duration, help="how long, e.g. 2h")
    when.add_argument("--until", type=float, help="until this time (seconds since the epoch)")
    add.add_argument("-c", "--comment", required=True, help="why (the next person on call will ask)")
    add.add_argument("--author", default=None, help="who (default: your user name)")
    ls = ssub.add_parser("ls", help="active and pending silences")
    ls.add_argument("--all", action="store_true", help="expired ones too")
    ls.add_argument("--json", action="store_true")
    expire = ssub.add_parser("expire", help="end a silence now")
    expire.add_argument("id")


def cmd_alerts(store: Store, args: argparse.Namespace, out: Console) -> int:
    from flowsight.alerting.manager import AlertManager
    from flowsight.config import config_or_default

    cfg = config_or_default(
        args.config, lambda what: print(f"flowsight: {what}", file=sys.stderr), "its routes and inhibit rules"
    )
    am = AlertManager(
        cfg.route, inhibit_rules=cfg.inhibit_rules, flap_policy=cfg.flap_policy, dependencies=cfg.dependencies()
    )
    am.restore(store.alerts.load_alerts())
    for s in store.alerts.list_silences():
        am.add_silence(s)
    rows = alert_views(am, args.status)
    if args.json:
        print(json.dumps({"alerts": msgspec.to_builtins(rows)}, indent=2))
        return 0
    if not rows:
        status = f" in status {args.status}" if args.status else ""
        out.print(
            f"no alerts{status} in {store.dialect} store {safe_url(store.url)} (a running `flowsight serve` raises "
            "them from the runs and keeps them there, as `flowsight run` does for its log rules)",
            soft_wrap=True,
        )
        return 0
    shown = rows[: args.limit]
    title = f"{len(rows)} alert{'s' if len(rows) != 1 else ''}"
    if len(shown) < len(rows):
        title += f", the newest {len(shown)} shown"
    table = Table(title=title)
    for col in ("status", "severity", "alert", "about", "since", "summary"):
        table.add_column(col)
    colors = {"firing": "red", "resolved": "green", "silenced": "dim", "inhibited": "dim", "flapping": "yellow"}
    for r in shown:
        labels = r.labels
        where = " / ".join(labels[k] for k in ("workflow", "run_id", "step", "service", "receiver") if k in labels)
        status = f"[{colors.get(r.status, 'white')}]{r.status}[/]"
        if r.muted_by:
            status += f"\n[dim]{r.muted_by}[/dim]"
        when = _ago(r.starts_at)
        if r.status == "resolved" and r.ends_at is not None:
            when += f"\n[dim]resolved {_ago(r.ends_at)}[/dim]"
        table.add_row(
            status,
            r.severity,
            labels.get("alertname", r.fingerprint),
            where,
            when,
            r.annotations.get("summary", ""),
        )
    out.print(table)
    if len(shown) < len(rows):
        out.print(
            f"{len(rows) - len(shown)} older alerts not shown: --limit N shows more, --status one status, "
            "--json all of them"
        )
    return 0


def cmd_silence(store: Store, args: argparse.Namespace, out: Console) -> int:
    now = time.time()
    if args.silence_command == "add":
        s = new_silence(
            args.matchers,
            now=now,
            duration=args.duration,
            ends_at=args.until,
            created_by=args.author or _user(),
            comment=args.comment,
        )
        store.alerts.add_silence(s, now)
        out.print(
            f"silence {s.id} until {_date(s.ends_at)}: {' '.join(silence_view(s, now).matchers)}", highlight=False
        )
        return 0
    if args.silence_command == "ls":
        rows = [silence_view(s, now) for s in store.alerts.list_silences() if args.all or s.ends_at > now]
        if args.json:
            print(json.dumps({"silences": msgspec.to_builtins(rows)}, indent=2))
            return 0
        if not rows:
            out.print("no silences" if args.all else "no active or pending silences (--all shows expired ones)")
            return 0
        table = Table()
        for col in ("id", "state", "matchers", "ends", "by", "comment"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.id, r.state, " ".join(r.matchers), _date(r.ends_at), r.created_by, r.comment)
        out.print(table)
        return 0
    if not store.alerts.expire_silence(args.id, now):
        raise FlowsightError(f"no active or pending silence {args.id!r}; `flowsight silence ls` lists them")
    out.print(f"silence {args.id} expired")
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _date(ts: float) -> str:
    """Local date and time; the number itself for one past what the platform's
    calendar holds (a silence stored before ends were capped)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return f"{ts:g}"


def _ago(ts: float) -> str:
    secs = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{secs:.0f}s ago"
