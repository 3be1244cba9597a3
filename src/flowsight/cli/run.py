"""``flowsight run``: any command as a monitored run of a workflow.

::

    flowsight run -- ./nightly.sh --full           # workflow "nightly.sh"
    flowsight run --workflow etl --run-id etl-42 -- make all

The run is Started as the command is launched (attrs ``command``, and the SDK's
``pid`` and ``host``: flowsight's pid, whose process tree holds the command),
Completed when it exits 0, Failed when it exits non-zero ("exited with status
3") or dies of a signal ("killed by signal SIGKILL"), and Cancelled when
flowsight itself gets SIGINT or SIGTERM: the signal is forwarded to the
command's process group (SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded
too, without cancelling), the group is sent SIGKILL if it is still there
``--kill-after`` seconds later, and the command's exit is the cancellation.
The exit status is the command's (128 + N when it died of signal N, as shells
say it), so ``flowsight run --`` can be put in front of any script or cron line.

The command reads our stdin when it is a pipe or a file (``... | flowsight
run -- import.sh``); a terminal is not handed on (the command has a process
group of its own, which the terminal would stop at its first read): it gets
/dev/null. The command's stdout and stderr go to ours byte for byte, and each line is
stored as a log line of the run, in the same store or server as the events
(``--db``, ``--url``/``FLOWSIGHT_URL``; a server that is down: the SDK's
spool). Stderr lines are stored at warn unless they name their own level.
A flood of output (more than ``--group-above`` lines a second, 10,000 by
default, or more than the store takes) is stored in groups of up to 1,000
lines an entry, each at the highest level a line of it names, and read from
a wider pipe at most every 20 ms: nothing is lost, the command is not slowed
down, and flowsight's own work per line drops to a fraction (markers and
``--step-regex`` lines inside a group still count, line by line).

Steps come from marker lines on stdout: ``::step NAME::`` completes the open
step and starts NAME; ``::step-end::`` completes the open step;
``::progress 3/10::`` is the open step's progress. The run is Suspended while
the command is stopped (SIGSTOP, SIGTSTP) and Running again when it is
continued (SIGCONT). At exit an
open step completes (exit 0) or fails (otherwise). Output before the first
marker, or of a command that prints none, belongs to an implicit step named
after the workflow, started with that first line: a script that starts with
its markers has just its own steps, a command without markers is one step,
and a silent command without markers has none (the run says it all). With
``--steps N`` there is no implicit step: the command says it has N steps of
its own, and what it prints before the first belongs to the run alone. Marker
lines pass through to the terminal but are not stored as log lines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from flowsight.collect import ProcessOutput
from flowsight.collect.process import FORWARDED_SIGNALS
from flowsight.errors import FlowsightError
from flowsight.model.runs.events import EventKind
from flowsight.logs.parse import parse_line
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.sdk.client import ENV_SERVER_URL, Client, Run

if TYPE_CHECKING:
    from flowsight.cli.run_log_rules import RunRules

__all__ = [
    "Outcome",
    "StepTracker",
    "cmd_run",
    "early_dispatch",
    "is_marker",
    "outcome",
    "progress_of",
    "stopped",
    "stored_level",
]

ENV_TOKEN = "FLOWSIGHT_TOKEN"

_log = logging.getLogger(__name__)

#: the signals to flowsight that cancel the run (the others are only forwarded)
CANCELLING = (signal.SIGINT, signal.SIGTERM)

_MARKER = re.compile(r"::step(?: +(?P<name>\S.*?)|(?P<end>-end))::")
_PROGRESS = re.compile(r"::progress +(?P<done>\d+(?:\.\d+)?)(?: */ *(?P<total>\d+(?:\.\d+)?))?::")
#: log lines waiting for the store beyond which output is stored in groups of lines (see `Supervisor`)
BEHIND_AT = 20_000
#: lines/s of output above which it is stored in groups of lines (``--group-above``)
GROUP_ABOVE = 10_000.0
#: how long an output line waits for continuation lines (a traceback's) before it is stored
JOIN_IDLE = 0.05
#: how often the command's state is looked at (stopped by SIGSTOP/SIGTSTP, continued by SIGCONT)
STATE_POLL = 0.2
# parse_line says Info both for "INFO: x" and for a line with no level: a stderr line keeps Info only when it says so
_SAYS_INFO = re.compile(r"\b(?:info|information|informational|notice)\b", re.IGNORECASE)

# a level word in a line of a group: upper case (ERROR, [WARN], FATAL:) or logfmt/JSON's level=error, "level":"error"
_LEVEL_WORD = re.compile(
    r"\b(WARN|WARNING|ERROR|ERR|CRITICAL|CRIT|FATAL|PANIC|EMERG|ALERT)\b"
    r"|level\"?[=:] ?\"?(warn|warning|error|err|critical|crit|fatal|panic)\b"
)
_WORD_LEVEL = {
    "warn": LogLevel.WARN,
    "warning": LogLevel.WARN,
    "error": LogLevel.ERROR,
    "err": LogLevel.ERROR,
    "critical": LogLevel.FATAL,
    "crit": LogLevel.FATAL,
    "fatal": LogLevel.FATAL,
    "panic": LogLevel.FATAL,
    "emerg": LogLevel.FATAL,
    "alert": LogLevel.FATAL,
}
_LEVEL_HINTS = ("WARN", "ERR", "CRIT", "FATAL", "PANIC", "EMERG", "ALERT", "level")
#: how far into a line of a group its level word may be
_LEVEL_WITHIN = 80

StepAction = tuple[Literal["start", "complete", "fail"], str]
_STEP_EVENTS = {"start": EventKind.STEP_STARTED, "complete": EventKind.STEP_COMPLETED, "fail": EventKind.STEP_FAILED}


# ---- decisions (pure) --------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """How a run ended: its final event, what it says, and our exit status."""

    kind: EventKind
    message: str | None
    exit_status: int


def outcome(returncode: int, cancelled_by: int | None) -> Outcome:
    """The end of a run whose command ended with ``returncode`` (``-N``:
    killed by signal N), ``cancelled_by`` the signal flowsight got first
    (SIGINT/SIGTERM), if any."""
    if returncode < 0:
        what, status = f"killed by signal {_signal_name(-returncode)}", 128 - returncode
    else:
        what, status = f"exited with status {returncode}", returncode
    if cancelled_by is not None:
        return Outcome(EventKind.CANCELLED, f"flowsight got {_signal_name(cancelled_by)}; the command {what}", status)
    if returncode == 0:
        return Outcome(EventKind.COMPLETED, None, 0)
    return Outcome(EventKind.FAILED, what, status)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def is_marker(line: str) -> bool:
    """Whether ``line`` is a marker: ``::step NAME::``, ``::step-end::`` or ``::progress N/M::``."""
    text = line.strip()
    return _MARKER.fullmatch(text) is not None or _PROGRESS.fullmatch(text) is not None


def progress_of(line: str) -> tuple[float, float | None] | None:
    """``(done, total)`` of a ``::progress 3/10::`` line (total None for ``::progress 3::``), else None."""
    m = _PROGRESS.fullmatch(line.strip())
    if m is None:
        return None
    total = m.group("total")
    return float(m.group("done")), float(total) if total is not None else None


def stopped(pid: int, proc_root: str = "/proc") -> bool | None:
    """Whether process ``pid`` is stopped (state T: SIGSTOP, SIGTSTP, ...);
    None when it is gone or cannot be read."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return None
    return state in (b"T", b"t")


class StepTracker:
    """The steps of a run, from its stdout lines: each call returns the step
    events to emit, in order; `current` is the open step (lines belong to it)."""

    def __init__(self, implicit: str | None) -> None:
        self.implicit = implicit  # None: output before the first marker belongs to no step
        self.current: str | None = None
        self._marked = False  # a marker was seen: no implicit step any more

    def marker(self, line: str) -> list[StepAction] | None:
        """The events of ``line`` when it is a marker, else None."""
        m = _MARKER.fullmatch(line.strip())
        if m is None:
            return None
        self._marked = True
        actions = self._close("complete")
        name = m.group("name")
        if name is not None:
            self.current = name.strip()
            actions.append(("start", self.current))
        return actions

    def output(self) -> list[StepAction]:
        """A line of output (not a marker) came: the implicit step starts
        with the first one, unless a marker came before it."""
        if self.current is None and not self._marked:
            self._marked = True
            if self.implicit is None:
                return []
            self.current = self.implicit
            return [("start", self.implicit)]
        return []

    def finish(self, ok: bool) -> list[StepAction]:
        """The command ended: the open step completes (``ok``) or fails."""
        return self._close("complete" if ok else "fail")

    def _close(self, how: Literal["complete", "fail"]) -> list[StepAction]:
        if self.current is None:
            return []
        name, self.current = self.current, None
        return [(how, name)]


def group_level(level: LogLevel, text: str) -> LogLevel:
    """The level of a group of lines stored as one entry: ``level`` (its
    first line's) or the highest level a line of it names within its first
    80 characters (``... ERROR ...``, ``[WARN]``, ``FATAL:``, ``level=error``)."""
    if not any(word in text for word in _LEVEL_HINTS):  # most groups: no level word at all, found at C speed
        return level
    for m in _LEVEL_WORD.finditer(text):
        if m.start() - text.rfind("\n", 0, m.start()) - 1 <= _LEVEL_WITHIN:
            found = _WORD_LEVEL[(m.group(1) or m.group(2)).lower()]
            level = max(level, found)
    return level


def stored_level(level: LogLevel, text: str, stream: str) -> LogLevel:
    """The level a line is stored at: a stderr line that names no level is a warning."""
    if stream == "stderr" and level is LogLevel.INFO and _SAYS_INFO.search(text[:200]) is None:
        return LogLevel.WARN
    return level


# ---- the command line ----------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flowsight run",
        description="Run a command as a monitored run of a workflow: its state, steps (::step NAME:: lines "
        "on stdout) and output lines go to the store or a server; the exit status is the command's.",
    )
    p.add_argument("--workflow", "-w", help="the workflow (default: the command's file name)")
    p.add_argument("--run-id", help="the run's id (default: a new one)")
    p.add_argument(
        "--manual",
        action="store_true",
        help="a run started by hand: not counted against the workflow's schedule (trigger = manual)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--db",
        help="store: a file path, sqlite:///file.db or postgresql://... "
        "(default: $FLOWSIGHT_DATABASE_URL or ./flowsight.db)",
    )
    where.add_argument(
        "--url",
        help=f"send to this flowsight server instead, or to several replicas: URL,URL (default: ${ENV_SERVER_URL})",
    )
    p.add_argument("--token", default=os.environ.get(ENV_TOKEN), help=f"API token (default: ${ENV_TOKEN})")
    p.add_argument("--steps", type=int, metavar="N", help="how many steps the run has (for its progress and ETA)")
    p.add_argument(
        "--step-regex",
        metavar="REGEX",
        help="a stdout line matching it starts the next step, named by the regex's first group (or "
        "the whole match), e.g. '^==> (.+)$' or \"Entering directory '(.+)'\"; markers still work",
    )
    p.add_argument(
        "--rules",
        metavar="FILE",
        help="check the command's lines against the [[log_rules]] of FILE (flowsight.toml's format) "
        "and send their alerts (default, for a local store: $FLOWSIGHT_CONFIG or ./flowsight.toml "
        "when it has log rules; with --url the server's rules apply)",
    )
    p.add_argument(
        "--group-above",
        type=float,
        default=GROUP_ABOVE,
        metavar="LINES_PER_S",
        help="while the command prints more lines a second than this (or faster than the store takes "
        "them), store its lines in groups (up to 1000 lines an entry) instead of one entry a line: "
        f"nothing is lost and the command is not slowed down (default {GROUP_ABOVE:g})",
    )
    p.add_argument(
        "--kill-after",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="after flowsight is interrupted, SIGKILL the command's process group if it is still "
        "there this long after the forwarded signal (default 10)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    return p


def early_dispatch(argv: Sequence[str]) -> list[str] | None:
    """The arguments for `run` 's own parser when ``argv`` is ``[--db X] run
    ...`` (the ``--db`` kept: that parser has it too), else None. `run` is
    parsed before the main parser sees it, so the command's options stay its own."""
    for at in (0, 1, 2):
        head = list(argv[:at])
        db_only = len(head) == at and (
            at == 0 or (at == 1 and head[0].startswith("--db=")) or (at == 2 and head[0] == "--db")
        )
        if argv[at : at + 1] == ["run"] and db_only:
            return head + list(argv[at + 1 :])
    return None


def cmd_run(argv: list[str]) -> int:
    """``flowsight run``; returns the exit status (the command's; 2 for a
    usage problem, 127 when the command cannot be started)."""
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("flowsight: name the command to run: flowsight run [--workflow NAME] -- COMMAND ARGS...", file=sys.stderr)
        return 2
    try:
        client = Client(args.db, url=args.url, token=args.token)
    except FlowsightError as exc:
        print(f"flowsight: {exc}", file=sys.stderr)
        return 2
    if args.steps is not None and args.steps < 0:
        print(f"flowsight: --steps: {args.steps} is not a number of steps (0 or more)", file=sys.stderr)
        return 2
    try:
        step_regex = re.compile(args.step_regex) if args.step_regex else None
    except re.error as exc:
        print(f"flowsight: --step-regex: {args.step_regex!r} is not a regular expression: {exc}", file=sys.stderr)
        return 2
    try:
        rules = _rules(args.rules, client, args.token)
    except FlowsightError as exc:
        print(f"flowsight: --rules: {exc}", file=sys.stderr)
        client.close()
        return 2
    workflow = args.workflow or os.path.basename(command[0]) or command[0]
    run = Run(
        workflow,
        run_id=args.run_id,
        total_steps=args.steps,
        attrs={"command": shlex.join(command), **({"trigger": "manual"} if args.manual else {})},
        client=client,
    )
    try:
        logs = client.log_writer
        return asyncio.run(
            Supervisor(
                run,
                command,
                client.emit_log,
                kill_after=args.kill_after,
                step_regex=step_regex,
                backlog=lambda: logs.backlog,
                group_above=args.group_above,
                rules=rules,
            ).supervise()
        )
    finally:
        # close: everything to the store, or with a server to its spool and then
        # sent while the server answers (a server that is down costs no wait:
        # the next process that reports to it sends the rest)
        client.close()


def _rules(rules_file: str | None, client: Client, token: str | None) -> RunRules | None:
    """The log rules the run is checked against, if any (see `flowsight.cli.run_log_rules`)."""
    from flowsight.config import CONFIG_ENV, DEFAULT_FILE

    if rules_file is None and (
        client.url is not None or not (os.environ.get(CONFIG_ENV) or os.path.isfile(DEFAULT_FILE))
    ):
        return None  # nothing to check: the rules' machinery is not even loaded
    from flowsight.cli.run_log_rules import RunRules, rules_config

    config = rules_config(rules_file, to_server=client.url is not None)
    return RunRules(config, server=client.url, token=token, db_url=client.db) if config is not None else None


# ---- the supervisor ------------------------------------------------------------------
class Supervisor:
    """Runs ``command`` as ``run``: its events and steps go to the run, its
    log lines to ``emit_log``; signals to us are forwarded to it."""

    def __init__(
        self,
        run: Run,
        command: list[str],
        emit_log: Callable[[LogEntry], None],
        *,
        kill_after: float = 10.0,
        clock: Callable[[], float] = time.time,
        step_regex: re.Pattern[str] | None = None,
        backlog: Callable[[], int] = lambda: 0,
        group_above: float = GROUP_ABOVE,
        monotonic: Callable[[], float] = time.monotonic,
        rules: RunRules | None = None,
    ) -> None:
        self.run = run
        self.rules = rules
        self.backlog = backlog
        self.group_above = group_above
        self._monotonic = monotonic
        self._window = (monotonic(), 0)  # (start, lines since) of the current second
        self._rate = 0.0  # lines/s in the last full second
        self.step_regex = step_regex
        self.emit_log = emit_log
        # with --steps N the command names its N steps: what it prints before the first is the run's, no step's
        self.steps = StepTracker(run.workflow if run.total_steps is None else None)
        self.kill_after = kill_after
        self.clock = clock
        self.cancelled_by: int | None = None
        self._step_any = re.compile(step_regex.pattern, step_regex.flags | re.MULTILINE) if step_regex else None
        # a traceback comes in one burst: a short wait for continuation lines keeps each line's time (and a
        # step marker's) within 50 ms of when it was printed
        self.output = ProcessOutput(
            command,
            name=run.workflow,
            multiline_idle=JOIN_IDLE,
            on_problem=_quiet,
            tee=(sys.stdout.buffer, sys.stderr.buffer),
            behind=self._behind,
            stdin=None if not _terminal(0) else subprocess.DEVNULL,
        )
        self._unsent: list[int] = []  # signals that came before the command had a pid

    async def supervise(self) -> int:
        """Start the run and the command, follow it to its end; the exit status."""
        self.run.start()
        loop = asyncio.get_running_loop()
        for sig in FORWARDED_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        pending = asyncio.create_task(self._forward_pending())
        watching = asyncio.create_task(self._watch_state())
        rules_done = asyncio.Event()
        checking = asyncio.create_task(self.rules.run(rules_done)) if self.rules is not None else None
        try:
            return await self._follow()
        finally:
            pending.cancel()
            watching.cancel()
            for sig in FORWARDED_SIGNALS:
                loop.remove_signal_handler(sig)
            if self.rules is not None and checking is not None:
                rules_done.set()
                await checking
                await self.rules.close()

    async def _follow(self) -> int:
        """The command's output, to its end; the exit status."""
        try:
            async with aclosing(aiter(self.output)) as lines:
                async for raw in lines:
                    self._line(raw.text, raw.path.rpartition(":")[2], raw.path, raw.lines)
        except FlowsightError as exc:  # the command could not be started
            print(f"flowsight: {exc}", file=sys.stderr)
            self.run.fail(str(exc))
            return 127
        returncode = self.output.returncode
        assert returncode is not None  # the iteration ends when the command has exited
        end = outcome(returncode, self.cancelled_by)
        self._steps(self.steps.finish(end.kind is EventKind.COMPLETED), end.message)
        if end.kind is EventKind.COMPLETED:
            self.run.complete()
        elif end.kind is EventKind.CANCELLED:
            self.run.cancel(end.message)
        else:
            self.run.fail(end.message or "failed")
        return end.exit_status

    def _line(self, text: str, stream: str, source: str, lines: int = 1) -> None:
        """One entry of output: markers and step-regex lines (stdout only; an
        entry of several lines is looked at line by line) and log lines of
        the open step."""
        start, seen = self._window
        self._window = (start, seen + lines)
        if stream != "stdout" or not (
            "::step" in text
            or "::progress" in text
            or (self._step_any is not None and self._step_any.search(text) is not None)
        ):
            self._store(text, stream, source, lines)
            return
        held: list[str] = []
        for part in text.split("\n"):
            begins = self._step_begun(part)
            if not begins and not is_marker(part):
                held.append(part)
                continue
            if held:  # the lines before belong to the step it ends
                self._store("\n".join(held), stream, source, len(held) if lines > 1 else 1)
                held = []
            if begins:  # the line starts the next step, and belongs to it
                held.append(part)
                continue
            progress = progress_of(part)
            if progress is not None:  # the open step's
                done, total = progress
                extra = {"total": total} if total is not None else {}
                self.run.event(EventKind.PROGRESS, step=self.steps.current, done=done, **extra)
            else:
                self._steps(self.steps.marker(part) or [], None)
        if held:
            self._store("\n".join(held), stream, source, len(held) if lines > 1 else 1)

    def _behind(self) -> bool:
        """Whether output comes faster than it is worth storing line by line:
        more than ``group_above`` lines/s in the last second, or more than
        `BEHIND_AT` lines waiting for the store."""
        start, lines = self._window
        now = self._monotonic()
        if now - start >= 1.0:
            self._rate = lines / (now - start)
            self._window = (now, 0)
        return self._rate > self.group_above or self.backlog() > BEHIND_AT

    def _step_begun(self, line: str) -> bool:
        """Whether ``line`` matches ``--step-regex``; if so, its step is started."""
        if self.step_regex is None:
            return False
        m = self.step_regex.search(line)
        if m is None:
            return False
        name = (m.group(1) if m.re.groups and m.group(1) else m.group(0)).strip() or line.strip()
        self._steps(self.steps.marker(f"::step {name}::") or [], None)
        return True

    def _store(self, text: str, stream: str, source: str, lines: int = 1) -> None:
        self._steps(self.steps.output(), None)
        run = self.run
        entry = parse_line(text, source=source, now=self.clock())
        level = stored_level(entry.level, text, stream)
        fields = entry.fields
        if lines > 1:  # a group of lines stored as one entry: at the highest level any of them names
            level = group_level(level, text)
            fields = {**fields, "lines": lines}
        entry = replace(
            entry,
            level=level,
            fields=fields,
            workflow=entry.workflow or run.workflow,
            run_id=entry.run_id or run.run_id,
            step=entry.step or self.steps.current,
        )
        self.emit_log(entry)
        if self.rules is not None:
            self.rules.observe(entry)

    def _steps(self, actions: list[StepAction], error: str | None) -> None:
        for how, name in actions:
            if how == "fail":
                self.run.event(_STEP_EVENTS[how], step=name, error=error or "failed")
            else:
                self.run.event(_STEP_EVENTS[how], step=name)

    async def _watch_state(self) -> None:
        """Suspended while the command is stopped (SIGSTOP, SIGTSTP from
        anywhere), Running again when it is continued (SIGCONT): its state
        is looked at every ``STATE_POLL`` seconds (Linux /proc)."""
        was = False
        while True:
            await asyncio.sleep(STATE_POLL)
            pid = self.output.pid
            if pid is None:
                continue
            now = stopped(pid)
            if now is None:
                continue
            if now and not was:
                self.run.suspend("the command was stopped (SIGSTOP or SIGTSTP)")
            elif was and not now:
                self.run.resume("the command was continued (SIGCONT)")
            was = now

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig in CANCELLING:
            if self.cancelled_by is None:
                self.cancelled_by = sig
                asyncio.get_running_loop().call_later(self.kill_after, self._kill)
        pid = self.output.pid
        if pid is None:
            self._unsent.append(sig)
        else:
            _signal_group(pid, sig)

    async def _forward_pending(self) -> None:
        """Signals that came before the command was started reach it once it is."""
        while self.output.pid is None:
            await asyncio.sleep(0.01)
        for sig in self._unsent:
            _signal_group(self.output.pid, sig)
        self._unsent.clear()

    def _kill(self) -> None:
        pid = self.output.pid
        if pid is not None and self.output.returncode is None:
            _say(
                f"{self.run.workflow}: still running {self.kill_after:g}s after "
                f"{_signal_name(self.cancelled_by or 0)}; killed (SIGKILL)"
            )
            _signal_group(pid, signal.SIGKILL)


def _terminal(fd: int) -> bool:
    # A terminal is not handed on: the command runs in a process group of its
    # own (so signals reach its whole tree), and a read from the terminal by a
    # group that is not in the foreground would stop it (SIGTTIN).
    return os.isatty(fd)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the group is gone already


def _say(what: str) -> None:
    print(f"flowsight: {what}", file=sys.stderr, flush=True)


def _quiet(what: str) -> None:
    # how a line was stored (binary data, a long line cut) is not said on stderr: that is the command's own
    _log.info("%s", what)
