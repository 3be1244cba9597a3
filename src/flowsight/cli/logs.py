"""``flowsight logs RUN``: a run's log entries from the store, oldest first,
filtered; ``--follow`` keeps printing new ones until Ctrl-C.

``flowsight logs WORD ...`` with WORD in :data:`SUBCOMMANDS` (``watch``) is
another command, parsed by its own code (:func:`subcommand`, called by
``main`` before the usual parser); a run whose id is such a word is reached
with ``flowsight logs -- watch``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.text import Text

from flowsight.errors import FlowsightError
from flowsight.model.durations import parse_time
from flowsight.logs.records import StoredLog
from flowsight.logs.entries import LogLevel, level_from_word
from flowsight.server.views import log_out
from flowsight.store.database import safe_url
from flowsight.store.interface import Store

PAGE = 1000
LEVEL_STYLE = {
    LogLevel.TRACE: "dim",
    LogLevel.DEBUG: "blue",
    LogLevel.INFO: "green",
    LogLevel.WARN: "yellow",
    LogLevel.ERROR: "bold red",
    LogLevel.FATAL: "bold white on red",
}


#: ``flowsight logs WORD ...`` commands by WORD: each is called with the
#: arguments after WORD and the ``--db`` given (None: the default) and
#: returns the exit code. None: reserved, not built yet.
def _watch(rest: list[str], db: str | None) -> int:
    from flowsight.cli.logwatch import cmd_logs_watch  # its imports (collectors, SDK) only when used

    return cmd_logs_watch(rest, db)


SUBCOMMANDS: dict[str, Callable[[list[str], str | None], int] | None] = {"watch": _watch}


def subcommand(argv: Sequence[str]) -> tuple[str, list[str], str | None] | None:
    """``(WORD, rest, db)`` when ``argv`` is ``[--db X] logs WORD ...`` with
    WORD in :data:`SUBCOMMANDS`; None for anything else (the usual parser's)."""
    i, db = 0, None
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "--db" and i + 1 < len(argv):
            db, i = argv[i + 1], i + 2
        elif argv[i].startswith("--db="):
            db, i = argv[i].partition("=")[2], i + 1
        else:
            return None
    if i + 1 < len(argv) and argv[i] == "logs" and argv[i + 1] in SUBCOMMANDS:
        return argv[i + 1], list(argv[i + 2 :]), db
    return None


def run_subcommand(word: str, rest: list[str], db: str | None) -> int:
    handler = SUBCOMMANDS[word]
    if handler is None:
        print(
            f"flowsight: `flowsight logs {word}` is not available in this version "
            f"(for the logs of a run named {word!r}: flowsight logs -- {word})",
            file=sys.stderr,
        )
        return 2
    return handler(rest, db)


def _level(text: str) -> LogLevel:
    level = level_from_word(text)
    if level is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a level; use one of {', '.join(v.value for v in LogLevel)}")
    return level


def _time(text: str) -> float:
    """A time as the API's ``since`` reads it (:func:`parse_time`), in epoch seconds."""
    try:
        return parse_time(text, now=time.time())
    except FlowsightError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: Any, duration: Callable[[str], float], positive: Callable[[str], int]) -> None:
    p = sub.add_parser("logs", help="a run's log entries: time, level, step, message")
    p.add_argument("run", help="run id (a unique prefix is enough: of a run's id, or of a run id in the logs)")
    p.add_argument("--level", "-l", type=_level, help="only entries at this level or above (e.g. warn)")
    p.add_argument("--step", help="only entries of this step")
    p.add_argument("--template", help="only entries with this template id")
    p.add_argument("--grep", "-g", metavar="TEXT", help="only entries whose message holds TEXT (any case)")
    p.add_argument(
        "--since",
        type=_time,
        metavar="WHEN",
        help="only entries from then on: a duration ago (15m, 2h), an RFC 3339 time "
        "(2024-05-01T12:00:00Z) or epoch seconds; by the time written in the line "
        "(its arrival when it has none)",
    )
    p.add_argument(
        "--limit",
        "-n",
        type=positive,
        metavar="N",
        help="only the LAST N entries (the newest, shown oldest first; default: all)",
    )
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new entries until Ctrl-C")
    p.add_argument("--interval", type=duration, default=0.5, help="--follow: how often to look (default 0.5s)")
    p.add_argument("--for", dest="duration", type=duration, help="--follow: stop after this long (e.g. 30s)")
    p.add_argument("--json", action="store_true", help="one JSON object per entry and line")


def resolve_run(store: Store, run: str, *, follow: bool) -> str:
    """The run id ``run`` names: itself when the store has it (as a run or
    in logs), else the one run id it is a prefix of, among the stored runs
    and the run ids of log lines (a run may have lines and no events).

    Raises:
        FlowsightError: it is a prefix of several runs; or nothing has it
            and there is nothing to follow.
    """
    if store.runs.get_run(run) is not None or store.logs.query_logs(run_id=run, limit=1):
        return run
    shown = 5
    found = list(
        dict.fromkeys(
            [r.workflow_id for r in store.runs.find_runs(run, limit=shown + 1)]
            + store.logs.find_log_runs(run, limit=shown + 1)
        )
    )
    if len(found) > 1:
        ids = ", ".join(found[:shown]) + (", ..." if len(found) > shown else "")
        raise FlowsightError(f"run {run!r} is ambiguous: it could be any of {ids}; type more of it")
    if found:
        return found[0]
    if follow:
        return run  # its first lines may be on their way
    raise FlowsightError(
        f"no run {run!r} and no log entries of one in the {store.dialect} store {safe_url(store.url)}; "
        "`flowsight runs` lists runs (--db or FLOWSIGHT_DATABASE_URL picks the store)"
    )


def entry_text(s: StoredLog, today: str) -> Text:
    """One entry for people: time, level (coloured), step, message; the
    lines of a multi-line message under the first, indented."""
    e = s.entry
    dt = datetime.fromtimestamp(e.timestamp)
    stamp = dt.strftime("%H:%M:%S.%f")[:-3]
    if dt.strftime("%Y-%m-%d") != today:
        stamp = dt.strftime("%Y-%m-%d ") + stamp
    text = Text(stamp + " ", style="dim")
    text.append(f"{e.level.value.upper():<5}", style=LEVEL_STYLE[e.level])
    text.append(" ")
    if e.step:
        text.append(f"[{e.step}] ", style="cyan")
    indent = " " * len(text.plain)
    first, *rest = e.message.splitlines() or [""]
    text.append(first)
    for line in rest:
        text.append("\n" + indent + line)
    return text


def cmd_logs(store: Store, args: argparse.Namespace, out: Console) -> int:
    run = resolve_run(store, args.run, follow=args.follow)
    since = args.since
    filters: dict[str, Any] = {
        "run_id": run,
        "step": args.step,
        "min_level": args.level,
        "template_id": args.template,
        "text": args.grep or None,
        "since": since,
    }
    today = datetime.now().strftime("%Y-%m-%d")

    def show(rows: list[StoredLog]) -> None:
        for s in rows:
            if args.json:
                print(json.dumps(msgspec.to_builtins(log_out(s)), ensure_ascii=False), flush=True)
            else:
                out.print(entry_text(s, today), soft_wrap=True)

    last, shown = 0, 0
    if args.limit is not None:
        rows = store.logs.query_logs(**filters, newest_first=True, limit=args.limit)[::-1]
        show(rows)
        last, shown = (rows[-1].seq if rows else store.logs.last_log_seq()), len(rows)
    else:
        while True:
            rows = store.logs.query_logs(**filters, after_seq=last, limit=PAGE)
            show(rows)
            shown += len(rows)
            if rows:
                last = rows[-1].seq
            if len(rows) < PAGE:
                break
    if not shown and not args.json and not args.follow:
        out.print(
            f"[dim]no log entries of run {run} match[/dim]"
            if _filtered(args)
            else f"[dim]run {run} has no log entries[/dim]",
            highlight=False,
        )
    if not args.follow:
        return 0
    end = time.monotonic() + args.duration if args.duration else None
    try:
        while end is None or time.monotonic() < end:
            time.sleep(args.interval if end is None else max(0.0, min(args.interval, end - time.monotonic())))
            while True:
                rows = store.logs.query_logs(**filters, after_seq=last, limit=PAGE)
                show(rows)
                if rows:
                    last = rows[-1].seq
                if len(rows) < PAGE:
                    break
    except KeyboardInterrupt:
        pass
    return 0


def _filtered(args: argparse.Namespace) -> bool:
    return bool(args.level or args.step or args.template or args.grep or args.since is not None)
