"""``flowsight logs watch``: collect log lines from files, stdin or a program
into the store, or to a server.

::

    flowsight logs watch /var/log/app/*.log           # follow files (new ones too)
    some-job 2>&1 | flowsight logs watch -            # stdin
    flowsight logs watch --run nightly-42 -- ./job.sh # run a program, collect its stdout and stderr

Lines are parsed (level, time, fields), given ids and written in batches to
the store (``--db``, as other commands) or sent to ``flowsight serve``
(``--url`` or ``FLOWSIGHT_URL``, through a disk spool). File offsets are
saved next to the store (``--state``) after each batch is written, so a
watcher stopped or killed carries on where it was, without losing or
repeating a line. Templates and rules are the server's job: it analyzes
every stored line that has no template yet.

With ``-- CMD``, the program's stdout and stderr also go to ours (as
``tee`` does; ``--quiet``: not), and the exit status is the program's. With
``--once``, a named file (not a glob) that does not exist is an error: the
others are read, and the exit status is 1.

The last line on stderr says what became of the lines: how many were
collected into the store, or read, delivered to the server and kept in the
spool for later.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from flowsight.collect import FileTail, ProcessOutput, StreamSource
from flowsight.config import CONFIG_ENV, DEFAULT_FILE, config_or_default
from flowsight.errors import FlowsightError
from flowsight.logs.records import LogRecord
from flowsight.monitors.log import Feed, LogMonitor, Sink
from flowsight.sdk.http import HttpOptions
from flowsight.sdk.logsinks import server_log_sink
from flowsight.store.base import ENV_URL
from flowsight.store.opener import open_store

ENV_SERVER = "FLOWSIGHT_URL"
ENV_TOKEN = "FLOWSIGHT_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flowsight logs watch",
        description="Collect log lines from files (paths or globs), stdin (-) or a program (-- CMD ...) "
        "into the store or a server.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or globs to follow (quote globs so new files are picked up); - for stdin",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="flowsight.toml whose [[logs.sources]] are followed too (default: ./flowsight.toml if any)",
    )
    p.add_argument("--workflow", help="workflow the lines belong to (unless a line names its own)")
    p.add_argument("--run", dest="run_id", help="run id the lines belong to")
    p.add_argument("--step", help="step the lines belong to")
    p.add_argument(
        "--from-beginning",
        action="store_true",
        help="read files met for the first time from their start (default: from their end)",
    )
    p.add_argument(
        "--state",
        type=Path,
        help="where file offsets are kept between runs (default: next to the store, or "
        "~/.cache/flowsight/watch-offsets.json for a server)",
    )
    p.add_argument(
        "--no-multiline", action="store_true", help="do not join tracebacks and stack traces to the line they belong to"
    )
    p.add_argument("--db", help="the store (as flowsight --db; the later one counts)")
    p.add_argument(
        "--url",
        default=os.environ.get(ENV_SERVER),
        help=f"send to this flowsight server instead of the store (default: ${ENV_SERVER})",
    )
    p.add_argument("--token", default=os.environ.get(ENV_TOKEN), help=f"API token (default: ${ENV_TOKEN})")
    p.add_argument(
        "--once",
        action="store_true",
        help="read what the files hold now, then stop (default: follow until Ctrl-C); a named "
        "file that does not exist is then an error (exit status 1)",
    )
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="do not copy the program's stdout and stderr to ours (-- CMD), and no summary on stderr",
    )
    return p


def _say(what: str) -> None:
    """A problem of a source, told as it happens (the watch goes on)."""
    print(f"flowsight: {what}", file=sys.stderr, flush=True)


def lines(n: int) -> str:
    """``1 log line``, ``3 log lines``."""
    return f"{n} log line{'' if n == 1 else 's'}"


def cmd_logs_watch(argv: list[str], db: str | None) -> int:
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    db = args.db or db
    try:
        return asyncio.run(_watch(args, command, db))
    except FlowsightError as exc:
        print(f"flowsight: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _state_path(args: argparse.Namespace, db: str | None) -> Path:
    if args.state is not None:
        return Path(args.state)
    url = db or os.environ.get(ENV_URL) or "flowsight.db"
    if args.url is None and "://" not in url or url.startswith("sqlite:"):
        base = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        return base.with_name(base.name + ".watch-offsets.json")
    return Path.home() / ".cache" / "flowsight" / "watch-offsets.json"


def _feeds(args: argparse.Namespace, command: list[str], state: Path) -> tuple[list[Feed], ProcessOutput | None]:
    names = dict(workflow=args.workflow, run_id=args.run_id, step=args.step)
    multiline = not args.no_multiline
    start: Literal["end", "beginning"] = "beginning" if args.from_beginning else "end"
    wait = not args.once  # with --once nothing waits for a file to appear
    feeds: list[Feed] = []
    paths = [p for p in args.paths if p != "-"]
    if "-" in args.paths:
        feeds.append(Feed(StreamSource(multiline=multiline, on_problem=_say), **names))
    config = (
        config_or_default(args.config, _say, "its [[logs.sources]]")
        if args.config is not None or os.environ.get(CONFIG_ENV) or Path(DEFAULT_FILE).exists()
        else None
    )
    sources = list(config.logs.sources) if config is not None else []
    if paths:
        feeds.append(
            Feed(
                FileTail(paths, state_path=state, start=start, multiline=multiline, wait=wait, on_problem=_say), **names
            )
        )
    for i, src in enumerate(sources):
        tail = FileTail(
            [src.path],
            state_path=state.with_name(f"{state.stem}.source{i}{state.suffix}"),
            start="beginning" if args.from_beginning or src.start == "beginning" else "end",
            multiline=src.multiline,
            wait=wait,
            on_problem=_say,
        )
        feeds.append(Feed(tail, workflow=src.workflow or args.workflow, run_id=args.run_id, step=args.step))
    process = None
    if command:
        tee = None if args.quiet else (sys.stdout.buffer, sys.stderr.buffer)
        process = ProcessOutput(command, forward_signals=True, multiline=multiline, on_problem=_say, tee=tee)
        feeds.append(Feed(process, **names))
    if not feeds:
        raise FlowsightError(
            "nothing to watch: name files, - for stdin, or -- CMD (or [[logs.sources]] in flowsight.toml)"
        )
    return feeds, process


async def _watch(args: argparse.Namespace, command: list[str], db: str | None) -> int:
    state = _state_path(args, db)
    state.parent.mkdir(parents=True, exist_ok=True)
    feeds, process = _feeds(args, command, state)
    monitor = LogMonitor(feeds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if process is None:  # with a program, its end ends the watch; signals go to it
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    tails = [f.source for f in feeds if isinstance(f.source, FileTail)]
    sink, close = _sink(args, db)
    summary = ""
    try:
        if args.once and tails:
            await _once(monitor, sink, stop)
        elif process is not None and tails:
            await _with_program(monitor, sink, stop, process)
        else:
            await monitor.monitor_logs(sink, stop=stop)
    finally:
        summary = close(monitor.collected)
    if not args.quiet:
        print(f"flowsight: {summary}", file=sys.stderr)
    if process is not None and process.returncode is not None:
        return process.returncode if process.returncode >= 0 else 128 - process.returncode
    missing = [path for tail in tails for path in tail.missing]
    if args.once and missing:  # each was said when it was looked for ("PATH: no such file")
        return 1
    return 0


async def _once(monitor: LogMonitor, sink: Sink, stop: asyncio.Event) -> None:
    stop.set()  # one round: every file read to its end, held-back lines included
    await monitor.monitor_logs(sink, stop=stop, drain=True)


async def _with_program(monitor: LogMonitor, sink: Sink, stop: asyncio.Event, process: ProcessOutput) -> None:
    task = asyncio.create_task(monitor.monitor_logs(sink, stop=stop))
    while not task.done() and process.returncode is None:
        await asyncio.sleep(0.1)
    stop.set()
    await task


def _sink(args: argparse.Namespace, db: str | None) -> tuple[Sink, Callable[[int], str]]:
    """Where the lines go, and how to close it: given how many lines were
    read, it closes and returns what became of them (the summary line)."""
    if args.url:
        http = server_log_sink(args.url, args.token, options=HttpOptions(), spool_root=None, transport=None)
        http.start()

        async def send(records: list[LogRecord]) -> None:
            await asyncio.to_thread(http.write, records)  # in the spool on disk when it returns

        def close_http(read: int) -> str:
            # a server that does not answer is not waited for: the summary says where the lines are
            http.wait(30.0, while_reachable=True)
            http.close(5.0, report=False)
            return delivery_summary(
                read,
                http.url,
                kept=http.left_in_spool,
                spool=str(http.spool.dir),
                refused=http.stats.failed + http.stats.rejected,
            )

        return send, close_http
    store = open_store(db)

    async def save(records: list[LogRecord]) -> None:
        await asyncio.to_thread(store.logs.save_logs, records)

    def close_store(read: int) -> str:
        store.close()
        return f"{lines(read)} collected into {db or os.environ.get(ENV_URL) or 'flowsight.db'}"

    return save, close_store


def delivery_summary(read: int, url: str, *, kept: int, spool: str, refused: int = 0) -> str:
    """What became of ``read`` lines sent to ``url``: delivered, refused by
    the server (each refusal was told as it came), kept in the spool."""
    delivered = max(0, read - kept - refused)
    text = f"{lines(read)} read; {delivered} delivered to {url}"
    if refused:
        text += f", {refused} refused by the server (see above)"
    if kept:
        text += (
            f", {kept} kept in the spool at {spool} (sent when the server is back, by the next "
            "`flowsight logs watch` or SDK process for it)"
        )
    return text
