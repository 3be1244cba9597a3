"""``flowsight``: demo, runs, show, watch, logs, prune, serve, ...

Parses arguments, calls the store and the read models, renders. ``--db`` (or
``FLOWSIGHT_DATABASE_URL``) chooses the store; ``--json`` prints for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console

from flowsight import __version__
from flowsight.cli.alerts import add_parsers as add_alert_parsers
from flowsight.cli.alerts import cmd_alerts, cmd_silence
from flowsight.cli.faults import add_parsers as add_fault_parsers
from flowsight.cli.schedules import add_parsers as add_schedule_parsers
from flowsight.cli.engines import add_parsers as add_engine_parsers
from flowsight.cli.engines import cmd_watch as cmd_engine_watch
from flowsight.cli.schedules import cmd_schedules
from flowsight.cli.faults import cmd_detectors, cmd_faults
from flowsight.cli.perf import add_parser as add_perf_parser
from flowsight.cli.perf import cmd_perf
from flowsight.cli.logs import add_parser as add_logs_parser
from flowsight.cli.logs import cmd_logs, run_subcommand, subcommand
from flowsight.cli.render import print_error, stderr_console
from flowsight.cli.run import cmd_run, early_dispatch
from flowsight.server import schemas as S
from flowsight.server.views import run_detail_out, run_out
from flowsight.cli.spool import add_parser as add_spool_parser
from flowsight.cli.spool import cmd_spool
from flowsight.errors import FlowsightError, NoSuchRun
from flowsight.model.durations import parse_duration
from flowsight.model.runs.state import WorkflowState
from flowsight.query import RunView, Views
from flowsight.store.base import ENV_URL
from flowsight.store.opener import open_store
from flowsight.store.database import safe_url
from flowsight.store.interface import Store
from flowsight.store.tokens import TokenInfo

STATES = [s.value for s in WorkflowState]


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except FlowsightError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _lease(text: str) -> float:
    seconds = _duration(text)
    if seconds < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: a lease lasts 1s at least (default 10s)")
    return seconds


def _replica_id(text: str) -> str:
    from flowsight.server.leadership import replica_id_problem

    problem = replica_id_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return text


def _retention(text: str) -> float | None:
    return None if text.strip().lower() == "off" else _duration(text)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port: use 1 to 65535 (0: any free port)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowsight", description="Workflow observability: runs, states, ETAs.")
    parser.add_argument(
        "--db",
        help=f"store: a file path, sqlite:///file.db or postgresql://... "
        f"(default: ${ENV_URL} or ./flowsight.db); also after the command",
    )
    parser.add_argument("--version", action="version", version=f"flowsight {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run several real instrumented workflows and show them")
    demo.add_argument("--no-live", action="store_true", help="print the result only, no live view")

    runs = sub.add_parser("runs", help="list runs with progress, state and ETA")
    _filters(runs)
    runs.add_argument("--limit", type=_positive, default=50)
    runs.add_argument("--cursor", help="continue after the page that printed this cursor")
    runs.add_argument("--json", action="store_true", help="print JSON for scripts")

    show = sub.add_parser("show", help="one run: steps with durations, state history")
    show.add_argument("run", help="run id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true")

    watch = sub.add_parser("watch", help="a live view of runs that updates as events arrive")
    _filters(watch)
    watch.add_argument("--limit", type=_positive, default=20)
    watch.add_argument("--interval", type=_duration, default=0.5, help="refresh interval (default 0.5s)")
    watch.add_argument("--for", dest="duration", type=_duration, help="stop after this long (e.g. 30s)")

    add_logs_parser(sub, _duration, _positive)

    sub.add_parser("init", help="create the store (or bring it up to date) and say where it is")

    prune = sub.add_parser("prune", help="delete events and ended runs older than an age now")
    prune.add_argument("--older-than", type=_duration, required=True, help="e.g. 30d")

    serve = sub.add_parser("serve", help="the HTTP API: ingest, query, live stream, /metrics")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs an API token to exist)",
    )
    serve.add_argument(
        "--port", type=_port, default=8640, help="port (default 8640; 0: any free one, printed at start)"
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the server is reached by, besides its own (repeatable; '*.example.com', "
        "'*' for any): requests with any other Host header are refused",
    )
    serve.add_argument("--max-events", type=int, default=10_000, help="events per request (default 10000)")
    serve.add_argument("--max-body", type=int, default=10 * 1024 * 1024, help="bytes per request body (default 10 MiB)")
    serve.add_argument(
        "--config",
        help="flowsight.toml: alert routes, receivers, rules (default: "
        "$FLOWSIGHT_CONFIG or ./flowsight.toml if present; else alerts go to the log)",
    )
    serve.add_argument(
        "--stall-timeout",
        type=_duration,
        default=1800.0,
        help="quiet time before a run without history counts as stalled (default 30m)",
    )
    serve.add_argument(
        "--replica-id",
        type=_replica_id,
        default=None,
        metavar="NAME",
        help="this server's name among the replicas on one PostgreSQL store (default: hostname:pid)",
    )
    serve.add_argument(
        "--lease",
        type=_lease,
        default=10.0,
        help="how long a replica's lease on a singleton duty lasts unless renewed (default 10s; "
        "a leader killed outright is replaced within it and a third more)",
    )
    serve.add_argument(
        "--log-retention",
        type=_retention,
        default=argparse.SUPPRESS,
        help="log entries older than this are purged hourly (default: [logs] retention of "
        "flowsight.toml, else 14d; off: keep them)",
    )

    token = sub.add_parser("token", help="API tokens: create, ls, revoke")
    tsub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="make a token (printed once; only its hash is kept)")
    create.add_argument("--scope", required=True, choices=["ingest", "read", "admin"])
    create.add_argument("--name", required=True)
    tsub.add_parser("ls", help="list tokens (names and scopes, never the tokens)")
    revoke = tsub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")

    sub.add_parser(
        "run", help="run a command as a monitored run: flowsight run [--workflow NAME] -- CMD ARGS...", add_help=False
    )  # parsed by flowsight.cli.run (early_dispatch), which has the --help

    add_alert_parsers(sub, _duration, _positive)
    add_fault_parsers(sub, _duration)
    add_schedule_parsers(sub)
    add_engine_parsers(sub, _duration)
    add_perf_parser(sub, _duration)

    add_spool_parser(sub)

    check = sub.add_parser("check", help="check flowsight.toml: every problem with its line and field")
    check.add_argument("--config", help="the file (default: $FLOWSIGHT_CONFIG or ./flowsight.toml)")
    _db_after_command(sub)
    return parser


def _db_after_command(sub: Any) -> None:
    """``--db`` after any command too (``flowsight runs --db X``), as ``flowsight run --db`` has it;
    given both before and after the command, the later one counts."""
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for action in nested:
                _db_after_command(action)
        elif not any("--db" in a.option_strings for a in parser._actions):
            parser.add_argument("--db", default=argparse.SUPPRESS, help="the store (as flowsight --db)")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workflow", "-w", help="only runs of this workflow")
    p.add_argument("--state", "-s", action="append", choices=STATES, help="only runs in this state (repeatable)")
    p.add_argument("--since", type=_duration, help="only runs started within this long (e.g. 2h)")


def _page(store: Store, args: argparse.Namespace, cursor: str | None = None) -> Any:
    since = time.time() - args.since if args.since is not None else None
    return store.runs.list_runs(workflow=args.workflow, states=args.state, since=since, limit=args.limit, cursor=cursor)


def cmd_runs(store: Store, args: argparse.Namespace, out: Console) -> int:
    from flowsight.cli.render import runs_table

    page = _page(store, args, args.cursor)
    views = Views(store, time.time()).views(page.runs)
    if args.json:
        print(
            json.dumps(msgspec.to_builtins(S.RunPage(runs=[run_out(v) for v in views], cursor=page.cursor)), indent=2)
        )
        return 0
    filtered = bool(args.workflow or args.state or args.since is not None or args.cursor)
    where = f"in {store.dialect} store {safe_url(store.url)}"
    empty = f"no runs match these filters {where}" if filtered else f"no runs yet {where}"
    out.print(runs_table(views, empty=empty, width=out.width))
    if page.cursor:
        out.print(f"[dim]more: {next_page_command(args, page.cursor)}[/dim]", highlight=False, soft_wrap=True)
    return 0


def next_page_command(args: argparse.Namespace, cursor: str) -> str:
    """The same command with the same filters, for the next page."""
    parts = ["flowsight"]
    if args.db:
        parts += ["--db", args.db]
    parts.append("runs")
    if args.workflow:
        parts += ["-w", args.workflow]
    for state in args.state or []:
        parts += ["-s", state]
    if args.since is not None:
        parts += ["--since", f"{args.since:g}s"]
    if args.limit != 50:
        parts += ["--limit", str(args.limit)]
    if args.json:
        parts.append("--json")
    parts += ["--cursor", cursor]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_show(store: Store, args: argparse.Namespace, out: Console) -> int:
    from flowsight.cli.render import detail_panel, require_run_id

    run = store.runs.get_run(require_run_id(store, args.run))
    if run is None:  # pruned between the two reads
        raise NoSuchRun(f"no run {args.run!r} in the {store.dialect} store {safe_url(store.url)}")
    detail = Views(store, time.time()).detail(run)
    if args.json:
        print(json.dumps(msgspec.to_builtins(run_detail_out(detail)), indent=2))
        return 0
    out.print(detail_panel(detail))
    return 0


def cmd_watch(store: Store, args: argparse.Namespace, out: Console) -> int:
    from rich.live import Live

    from flowsight.cli.render import runs_table

    def views() -> list[RunView]:
        return Views(store, time.time()).views(_page(store, args).runs)

    def table(shown: list[RunView], hint: str = "") -> Any:
        return runs_table(
            shown,
            title=f"flowsight watch · {time.strftime('%H:%M:%S')}{hint}",
            empty=f"no runs yet in {store.dialect} store {safe_url(store.url)}",
            width=out.width,
        )

    end = time.monotonic() + args.duration if args.duration else None
    try:
        if not out.is_terminal:
            _watch_to_a_pipe(views, table, out, args.interval, end)
            return 0
        with Live(table(views(), " · Ctrl-C to stop"), console=out, refresh_per_second=4, transient=False) as live:
            while end is None or time.monotonic() < end:
                time.sleep(args.interval)
                live.update(table(views(), " · Ctrl-C to stop"))
    except KeyboardInterrupt:
        pass
    return 0


def _watch_to_a_pipe(
    views: Callable[[], list[RunView]],
    table: Callable[[list[RunView]], Any],
    out: Console,
    interval: float,
    end: float | None,
) -> None:
    """``watch`` into a file or a pipe, which cannot be redrawn: a table each
    time a run appears or changes state, step or progress, printed at once."""
    shown: object = None
    while True:
        now = views()
        key = [(v.run.workflow_id, v.run.state, v.run.current_step, v.run.completed_steps, v.stalled) for v in now]
        if key != shown:
            shown = key
            out.print(table(now))
            out.file.flush()
        if end is not None and time.monotonic() >= end:
            return
        time.sleep(interval)


def cmd_init(store: Store, args: argparse.Namespace, out: Console) -> int:
    out.print(
        f"flowsight store at {safe_url(store.url)} ({store.dialect}, schema version {store.schema_version()}, "
        "up to date)",
        highlight=False,
    )
    return 0


def cmd_prune(store: Store, args: argparse.Namespace, out: Console) -> int:
    n = store.runs.prune(time.time() - args.older_than)
    out.print(f"pruned {n} events")
    return 0


def cmd_demo(store: Store, args: argparse.Namespace, out: Console) -> int:
    from flowsight.cli.demo import run_demo

    return run_demo(store, out, live=not args.no_live and out.is_terminal)  # a pipe or a file gets the result only


def cmd_serve(store: Store, args: argparse.Namespace, out: Console) -> int:
    from flowsight.config import config_for
    from flowsight.server.ingest import Limits
    from flowsight.server.serve import serve

    config = config_for(args.config)
    retention = args.log_retention if "log_retention" in vars(args) else config.logs.retention
    serve(
        store,
        host=args.host,
        port=args.port,
        limits=Limits(args.max_events, args.max_body),
        stall_timeout=args.stall_timeout,
        config=config,
        log_retention=retention,
        allowed_hosts=[*config.allowed_hosts, *args.allowed_host],
        replica_id=args.replica_id,
        lease=args.lease,
    )
    return 0


def cmd_token(store: Store, args: argparse.Namespace, out: Console) -> int:
    if args.token_command == "create":
        token, info = store.tokens.create_token(args.name, args.scope)
        print(token)
        stderr_console().print(
            f"token {info.name!r} (scope {info.scope}) created: it is shown only this "
            "once; send it as 'Authorization: Bearer <token>' or FLOWSIGHT_TOKEN"
        )
        return 0
    if args.token_command == "ls":
        tokens = store.tokens.list_tokens()
        for t in tokens:
            out.print(f"{t.name}\t{t.scope}\tcreated {when(t.created_at)}")
        if not tokens:
            out.print(
                f"no tokens in {store.dialect} store {safe_url(store.url)} (flowsight token create makes one)",
                highlight=False,
            )
        return 0
    revoked = next((t for t in store.tokens.list_tokens() if t.name == args.name), None)
    if revoked is None or not store.tokens.revoke_token(args.name):
        raise FlowsightError(f"no token named {args.name!r}; `flowsight token ls` lists them")
    out.print(f"token {args.name!r} revoked")
    warning = after_revoke(revoked, store.tokens.list_tokens())
    if warning is not None:
        print_error(stderr_console(), f"warning: {warning}")
    return 0


def after_revoke(revoked: TokenInfo, left: Sequence[TokenInfo]) -> str | None:
    """What revoking ``revoked`` leaves ``left`` unable to do, when it is
    something: no token at all, or no admin token."""
    make = "flowsight token create --scope admin --name NAME"
    if not left:
        return (
            "that was the last token. A running server stays closed (it never falls back to open): every "
            f"call but /healthz is refused until you make one: {make}. A server started again with no token "
            "is open to every process and browser on its machine, and refuses to listen beyond loopback"
        )
    if revoked.scope == "admin" and not any(t.scope == "admin" for t in left):
        return f"that was the last admin token: nobody can add or end silences until you make one: {make}"
    return None


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def cmd_check(args: argparse.Namespace) -> int:
    """0: the file is valid; 1: it has problems (each printed as FILE:LINE: FIELD: message);
    2: there is no file to check. Needs no store."""
    from flowsight.config import ConfigFileError, default_config_path, load_config

    path = Path(args.config) if args.config else default_config_path()
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        print(
            f"flowsight: {path} {what}; give the configuration file with --config PATH or "
            f"$FLOWSIGHT_CONFIG (docs/flowsight.example.toml shows every setting)",
            file=sys.stderr,
        )
        return 2
    try:
        cfg = load_config(path)
    except ConfigFileError as exc:
        # plain print, not rich: "[alerting.route]" in a message is not markup
        for problem in exc.problems:
            print(problem)
        n = len(exc.problems)
        print(f"{path}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        return 1
    except FlowsightError as exc:
        print(f"flowsight: {exc}", file=sys.stderr)
        return 2

    def count(n: int, what: str) -> str:
        return f"{n} {what}{'s' if n != 1 else ''}"

    print(
        f"{path}: OK ({count(len(cfg.receivers), 'receiver')}, {count(cfg.route_count(), 'route')}, "
        f"{count(len(cfg.inhibit_rules), 'inhibit rule')}, {count(len(cfg.log_rules), 'log rule')}, "
        f"{count(len(cfg.logs.sources), 'log source')}, {count(len(cfg.detectors), 'detector')}, "
        f"{count(len(cfg.thresholds) + len(cfg.baselines), 'threshold')}, "
        f"{count(len(cfg.expectations), 'workflow')} with expectations)"
    )
    return 0


def writes(args: argparse.Namespace) -> bool:
    """Whether the command writes to the store (and so may create or migrate
    it); every other command refuses a store that is not there."""
    if args.command in ("serve", "demo", "init"):
        return True
    if args.command == "token":
        return bool(args.token_command != "ls")
    if args.command == "silence":
        return bool(args.silence_command != "ls")
    return False


COMMANDS = {
    "init": cmd_init,
    "serve": cmd_serve,
    "token": cmd_token,
    "runs": cmd_runs,
    "show": cmd_show,
    "watch": cmd_watch,
    "prune": cmd_prune,
    "demo": cmd_demo,
    "alerts": cmd_alerts,
    "silence": cmd_silence,
    "logs": cmd_logs,
    "faults": cmd_faults,
    "schedules": cmd_schedules,
    "perf": cmd_perf,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_args = early_dispatch(argv)  # `flowsight run ... -- CMD`: the command's options stay its own
    if run_args is not None:
        return cmd_run(run_args)
    logs_sub = subcommand(argv)  # `flowsight logs watch ...`: a command of its own
    if logs_sub is not None:
        return run_subcommand(*logs_sub)
    args = build_parser().parse_args(argv)
    out = Console()
    if not out.is_terminal:
        # piped or captured: do not squeeze the tables into 80 columns, unless COLUMNS says how wide
        columns = os.environ.get("COLUMNS", "")
        out = Console(width=int(columns) if columns.isdigit() and int(columns) > 0 else 160)
    err = stderr_console()
    if args.command == "check":
        return cmd_check(args)
    if args.command == "detectors":
        return cmd_detectors(args)
    if args.command in ("celery", "prefect"):
        return cmd_engine_watch(args)
    if args.command == "spool":
        try:
            return cmd_spool(args)
        except FlowsightError as exc:
            print_error(err, str(exc))
            return 2
    try:
        with open_store(args.db, create=writes(args)) as store:
            return COMMANDS[args.command](store, args, out)
    except NoSuchRun as exc:
        print_error(err, str(exc))
        return 1
    except FlowsightError as exc:
        print_error(err, str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
