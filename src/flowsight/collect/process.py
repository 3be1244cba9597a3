"""Log lines from a program's stdout and stderr, as it writes them.

`ProcessOutput` starts a program (``flowsight logs watch -- CMD``) and hands
out its output as `RawLine` s, with the rules of
`flowsight.collect.lines.LineSplitter` applied to each stream on its own:
a traceback on stderr is joined into one entry however the program
interleaves it with stdout; a last line without a newline is handed out when
the stream ends; long lines are cut, invalid UTF-8 and NUL bytes replaced
(each said once per stream). The lines of one stream keep their order; the
two streams are merged in the order their bytes arrive. A line's ``path``
says where it came from: ``process:NAME:stdout`` or ``process:NAME:stderr``.

The program gets its own process group (and ``/dev/null`` as stdin), so that
ending it reaches the processes it started too: when the iteration is stopped
before the program ended (the consumer's task cancelled, the generator
closed), the group is sent SIGTERM, then SIGKILL after ``kill_after``
seconds. With ``forward_signals``, the signals a wrapper should pass on
(SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) are forwarded to the
group while the program runs — a terminal's Ctrl-C no longer reaches a
program in a group of its own otherwise — and the program decides when to
stop; the previous handlers are put back when the iteration ends.

With ``tee``, the bytes of each stream are also written, as they are read,
to a binary file of its own (``flowsight logs watch -- CMD`` passes
``sys.stdout.buffer`` and ``sys.stderr.buffer``: the program's output shows
in the terminal as without the wrapper, as ``tee`` does); a file that can no
longer be written (a closed pipe) is told once and dropped, the collecting
goes on.

The program's output is read as it comes; a program that buffers its output
when it goes to a pipe (Python without ``-u``/``PYTHONUNBUFFERED=1``, C stdio)
shows its lines when it flushes them. A consumer that falls behind makes the
program wait on its writes (the pipes fill up) rather than this process's
memory grow. The iteration ends when both streams are closed and the program
has exited (a background process it left holding the pipes keeps it going).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import BinaryIO

from flowsight.collect.lines import LineSplitter
from flowsight.collect.stream import CHUNK, READ_AHEAD, Chunk, pump, read_stream
from flowsight.collect.tail import RawLine
from flowsight.errors import ConfigError

__all__ = ["FORWARDED_SIGNALS", "ProcessOutput"]

_log = logging.getLogger(__name__)

#: what ``forward_signals=True`` passes on to the program's process group
FORWARDED_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


#: once behind, lines stay grouped this long (seconds) after the last time it was
GROUP_FOR = 1.0
#: while lines are grouped, each stream is read at most this often (seconds),
#: in chunks of up to FLOOD_CHUNK bytes: the output gathers in the pipe
#: (made FLOOD_CHUNK big, where the system allows) meanwhile
FLOOD_PAUSE = 0.02
FLOOD_CHUNK = 1 << 20


class ProcessOutput:
    """Run ``argv`` and iterate over the lines of its stdout and stderr.

    ``name`` labels the lines (default: the program's file name); ``env``
    replaces the environment (None: this process's), ``cwd`` the working
    directory. ``max_line``, ``multiline`` and ``multiline_idle`` are
    `FileTail` 's; ``on_problem`` receives one readable sentence per problem
    (logged as a warning by default); ``clock`` (monotonic seconds) times the
    multi-line flush. ``tee``: where to copy the stdout and the stderr bytes
    as they come (None: nowhere). ``behind``: asked at each chunk whether
    the consumer has fallen behind; while it has, or while reads keep
    find the pipe half full or more (two such chunks in a row),
    or the chunks read but not yet split fill half the read-ahead, lines are handed out in
    groups of up to ``group_size`` (`RawLine.lines`), and for `GROUP_FOR`
    seconds after, so a flood of output
    costs a chunk's work, not a line's (None: always line by line).
    ``stdin``: the program's standard input (default: nothing, /dev/null;
    None: this process's). Iterate once; `returncode` is set when the
    program has ended (negative: killed by that signal).

    Raises (when the iteration starts):
        ConfigError: the program cannot be started (not found, not
            executable, no such working directory).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        max_line: int = 1 << 20,
        multiline: bool = True,
        multiline_idle: float = 1.0,
        forward_signals: bool = False,
        kill_after: float = 5.0,
        on_problem: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tee: tuple[BinaryIO | None, BinaryIO | None] | None = None,
        behind: Callable[[], bool] | None = None,
        group_size: int = 1000,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        if isinstance(argv, str):
            raise TypeError("argv is a list of arguments (['python', '-u', 'job.py']), not one string")
        if not argv:
            raise ValueError("argv must name a program to run")
        self.argv = [os.fspath(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._problem = on_problem if on_problem is not None else _log.warning
        self._splitters = [
            LineSplitter(
                f"process:{self.name}:{stream}",
                max_line=max_line,
                multiline=multiline,
                idle=multiline_idle,
                on_problem=self._problem,
            )
            for stream in ("stdout", "stderr")
        ]
        self._idle = multiline_idle
        self._forward = forward_signals
        self._kill_after = kill_after
        self._clock = clock
        self._tee = tee or (None, None)
        self._stdin = stdin
        self._behind = behind
        self._until = [0.0]  # grouping lines until then (monotonic)
        self._group_size = group_size
        self._proc: asyncio.subprocess.Process | None = None
        self._used = False

    @property
    def pid(self) -> int | None:
        """The program's process id (also its process group's), once started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The program's exit status once it ended (``-N``: killed by signal N), else None."""
        return self._proc.returncode if self._proc is not None else None

    def __aiter__(self) -> AsyncGenerator[RawLine, None]:
        """Start the program and follow its output until both streams end and
        it exited. Close the generator (``contextlib.aclosing``) to stop early:
        the program is ended then."""
        if self._used:
            raise RuntimeError(f"ProcessOutput({self.name!r}) was iterated already; it runs its program once")
        self._used = True
        return self._run()

    async def _run(self) -> AsyncGenerator[RawLine, None]:
        proc = self._proc = await self._spawn()
        assert proc.stdout is not None and proc.stderr is not None
        if self._behind is not None:
            for fd in (1, 2):
                _widen_pipe(proc, fd, FLOOD_CHUNK)
        queue: asyncio.Queue[Chunk] = asyncio.Queue(READ_AHEAD)
        readers = [
            asyncio.create_task(
                read_stream(
                    stream,
                    i,
                    queue,
                    self._problem,
                    self._splitters[i].label,
                    self._copier(self._tee[i], self._splitters[i].label),
                    size=FLOOD_CHUNK if self._behind is not None else CHUNK,
                    pause=self._pause if self._behind is not None else None,
                    transport=_pipe(proc, i + 1),
                )
            )
            for i, stream in enumerate((proc.stdout, proc.stderr))
        ]
        restore = self._forward_signals(proc) if self._forward else []
        try:
            async for line in pump(
                queue.get, self._splitters, idle=self._idle, clock=self._clock, group=self._grouping(queue)
            ):
                yield line
            await proc.wait()
        finally:
            for task in readers:
                task.cancel()
            for undo in restore:
                undo()
            if proc.returncode is None:
                await self._end(proc)

    def _pause(self) -> float:
        return FLOOD_PAUSE if self._clock() < self._until[0] else 0.0

    def _grouping(self, queue: asyncio.Queue[Chunk]) -> Callable[[int], int] | None:
        behind = self._behind
        if behind is None:
            return None
        size = self._group_size
        clock = self._clock
        until = self._until
        full = [0]  # big chunks in a row: each read found the pipe (64 KiB on Linux) filling up

        def group(chunk: int) -> int:
            now = clock()
            full[0] = full[0] + 1 if chunk >= CHUNK // 2 else 0
            if full[0] >= 2 or queue.qsize() >= READ_AHEAD // 2 or behind():
                until[0] = now + GROUP_FOR  # a flood comes in waves: stay grouped a while
            return size if now < until[0] else 0

        return group

    def _copier(self, out: BinaryIO | None, label: str) -> Callable[[bytes], None] | None:
        """Write-and-flush to ``out`` until it fails once (told, then dropped)."""
        if out is None:
            return None
        target: list[BinaryIO] = [out]

        def copy(data: bytes) -> None:
            if not target:
                return
            try:
                target[0].write(data)
                target[0].flush()
            except (OSError, ValueError) as exc:  # a closed pipe (| head), a closed file
                target.clear()
                self._problem(f"{label}: can no longer be copied out ({exc}); its lines are still collected")

        return copy

    async def _spawn(self) -> asyncio.subprocess.Process:
        program = self.argv[0]
        try:
            # a group in this session, not a session of its own (start_new_session): a new session's group
            # is orphaned, and SIGTSTP would not stop it (`flowsight run` says Suspended). uvloop has no
            # process_group; the CLI runs this on the standard library's loop.
            return await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=self._stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                cwd=self._cwd,
                process_group=0,
                limit=FLOOD_CHUNK if self._behind is not None else CHUNK,
            )
        except FileNotFoundError as exc:
            if self._cwd is not None and not os.path.isdir(self._cwd):
                raise ConfigError(
                    f"cannot start {program!r}: working directory {os.fspath(self._cwd)!r} does not exist"
                ) from None
            if "/" not in program:
                raise ConfigError(f"cannot start {program!r}: no such program (is it installed, and on PATH?)") from exc
            raise ConfigError(f"cannot start {program!r}: {self._missing_file(program)}") from None
        except PermissionError:
            if "/" in program and os.path.isfile(self._where(program)):
                raise ConfigError(
                    f"cannot start {program!r}: not executable: {program} (chmod +x it, or run "
                    f"it with its interpreter, e.g. -- sh {program})"
                ) from None
            raise ConfigError(f"cannot start {program!r}: permission denied (is it an executable file?)") from None
        except OSError as exc:
            raise ConfigError(f"cannot start {program!r}: {exc.strerror or exc}") from None

    def _where(self, program: str) -> str:
        """``program`` (a path) as the program is looked for: against ``cwd``."""
        return os.path.join(os.fspath(self._cwd), program) if self._cwd is not None else program

    def _missing_file(self, program: str) -> str:
        """Why the file ``program`` (a path) could not be run, it being "not found"."""
        where = self._where(program)
        if not os.path.exists(where):
            base = os.path.abspath(self._cwd) if self._cwd is not None else os.getcwd()
            return f"no such file: {program}" + ("" if os.path.isabs(program) else f" (in {base})")
        try:
            with open(where, "rb") as f:  # there, yet "not found": the interpreter its #! line names is missing
                first = f.readline(256)
        except OSError:
            first = b""
        if first.startswith(b"#!"):
            shebang = first[2:].decode(errors="replace").strip()
            return f"its interpreter (#!{shebang}) was not found"
        return f"{program} is there, but what it needs to run (its loader or interpreter) is not"

    async def _end(self, proc: asyncio.subprocess.Process) -> None:
        """The iteration stopped first: SIGTERM to the group, SIGKILL after ``kill_after`` s."""
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(self._kill_after):
                await proc.wait()
        except TimeoutError:
            self._problem(f"process:{self.name}: still running {self._kill_after:g}s after SIGTERM; killed (SIGKILL)")
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        except BaseException:  # cancelled again while waiting: no orphan either, and the process reaped
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(BaseException):
                await asyncio.shield(proc.wait())
            raise

    def _forward_signals(self, proc: asyncio.subprocess.Process) -> list[Callable[[], None]]:
        """Forward `FORWARDED_SIGNALS` to the program's group; the undo actions."""
        loop = asyncio.get_running_loop()
        undo: list[Callable[[], None]] = []
        for sig in FORWARDED_SIGNALS:
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, _signal_group, proc.pid, sig)
            except (RuntimeError, ValueError) as exc:  # not the main thread, or a loop without signals
                self._problem(f"process:{self.name}: signals are not forwarded to the program ({exc})")
                break

            def put_back(sig: signal.Signals = sig, previous: object = previous) -> None:
                loop.remove_signal_handler(sig)
                if previous is not None:
                    signal.signal(sig, previous)  # type: ignore[arg-type]

            undo.append(put_back)
        return undo


def _pipe(proc: asyncio.subprocess.Process, fd: int) -> asyncio.ReadTransport | None:
    """The transport reading the program's ``fd`` (1, 2), if it can be had."""
    transport = getattr(proc, "_transport", None)  # asyncio has no public way to it
    pipe = transport.get_pipe_transport(fd) if isinstance(transport, asyncio.SubprocessTransport) else None
    return pipe if isinstance(pipe, asyncio.ReadTransport) else None


def _widen_pipe(proc: asyncio.subprocess.Process, fd: int, size: int) -> None:
    """Let the pipe of the program's ``fd`` hold ``size`` bytes (Linux; as
    much as the system allows, else as it is), so that a program printing
    faster than it is read goes on while its output waits in the pipe."""
    pipe = _pipe(proc, fd)
    end = pipe.get_extra_info("pipe") if pipe is not None else None
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)
    if end is None or setter is None:
        return
    try:
        fcntl.fcntl(end.fileno(), setter, size)
    except (OSError, ValueError):  # above /proc/sys/fs/pipe-max-size for this user, or closed already
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the group is gone already
