"""The ``command`` detector: a program that says whether something is well.

``CommandDetector(name, argv, timeout=10.0, fault="service_unavailable",
target=None, cwd=None, env=None)`` runs ``argv`` (no shell) in a session,
and so a process group, of its own (no controlling terminal), stdin from
``/dev/null``, stdout and stderr into one pipe; exit status 0 means all is
well. Otherwise the fault is of kind ``fault``
(a :class:`~flowsight.model.faults.FaultKind` value) about ``target``
(default: the detector's name):

- a non-zero exit: the message is the last non-empty lines of the output
  (about :data:`MESSAGE_CHARS` characters), or ``exited with status N``
  when it wrote nothing; evidence ``exit_code`` (negative: killed by that
  signal) and ``output`` (its last :data:`OUTPUT_KEPT` bytes, as text);
- still running after ``timeout`` seconds: the message says it did not
  finish in time; evidence ``timeout_s`` and ``output``.

Nothing it started outlives the check: at the timeout (or when the check is
cancelled) its process group is killed (SIGKILL; a check has nothing to save),
and so is what is left of the group when the program exited but something it
started still holds the output open (its exit status counts then). A process
that left the group (``setsid``) is beyond reach.

``env`` is laid over this process's environment; ``cwd`` is the working
directory. A program that cannot be started at all (no such file, not
executable, no such working directory) is no fault of the target: the
detector raises :class:`~flowsight.errors.ConfigError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from flowsight.options.fields import Options, Opt, array, choice, nonempty_string, string_table
from flowsight.detectors.tcp import check_name, check_seconds, check_target
from flowsight.errors import ConfigError
from flowsight.model.faults import Fault, FaultKind, fault_type

__all__ = ["MESSAGE_CHARS", "OUTPUT_KEPT", "CommandDetector"]

#: how much of the program's output is kept as evidence (its end), in bytes
OUTPUT_KEPT = 4096
#: about how long a message made of the output's last lines may be
MESSAGE_CHARS = 500
#: how long the output may stay open once the group is killed (a process
#: that left the group may hold it for ever)
_DRAIN = 1.0


class CommandDetector:
    """See the module docstring.

    Raises:
        ValueError: an option is not what it must be (the message names it).
    """

    KIND: ClassVar[str] = "command"
    # a variable may hold a token: a secret
    OPTIONS: ClassVar[Options] = {
        "argv": Opt(array(nonempty_string, nonempty=True), required=True),
        "fault": Opt(choice(k.value for k in FaultKind)),
        "target": Opt(nonempty_string),
        "cwd": Opt(nonempty_string, path=True),
        "env": Opt(string_table, secret=True),
    }

    def __init__(
        self,
        name: str,
        *,
        argv: Sequence[str],
        timeout: float = 10.0,
        fault: str = FaultKind.SERVICE_UNAVAILABLE.value,
        target: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = check_name(name)
        if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
            raise ValueError(
                f"detector {name!r}: argv must be a non-empty list of strings, the program "
                f"and its arguments (['/usr/local/bin/check-db', '--quick']), got {argv!r}"
            )
        self.argv = list(argv)
        self.timeout = check_seconds(name, "timeout", timeout)
        try:
            self.kind = FaultKind(fault)
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"detector {name!r}: fault must be one of {known}; got {fault!r}") from None
        self.target = check_target(name, "target", target)
        if cwd is not None and not isinstance(cwd, (str, os.PathLike)):
            raise ValueError(f"detector {name!r}: cwd must be a directory path, got {cwd!r}")
        self.cwd = cwd
        if env is not None and (
            not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError(f"detector {name!r}: env must be a table of variable names to string values, got {env!r}")
        self.env = dict(env or {})

    async def detect(self) -> Fault | None:
        """Run the program once: None when it exits 0, else the fault.

        Raises:
            ConfigError: the program cannot be started.
        """
        # The output goes to a pipe of our own, not one of the subprocess
        # transport's: the exit is seen when it happens (a child may keep the
        # output open longer), and our end can be closed whoever holds theirs.
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        stream = asyncio.StreamReader()
        try:
            pipe, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
            )
            try:
                # a session of its own is its own process group too: uvloop (the server's loop) has
                # start_new_session but not process_group
                proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=write_fd,
                    stderr=write_fd,
                    cwd=self.cwd,
                    env={**os.environ, **self.env},
                    start_new_session=True,
                )
            except OSError as exc:
                pipe.close()
                raise self._cannot_start(exc) from exc
            except BaseException:
                pipe.close()
                raise
        finally:
            os.close(write_fd)  # the program has its copy
        output = bytearray()
        reading = asyncio.create_task(_read_tail(stream, output))
        running = True
        try:
            async with asyncio.timeout(self.timeout):
                await proc.wait()
                running = False
                await asyncio.wait({reading})  # the rest of its output, until the pipe closes
        except TimeoutError:
            pass
        finally:
            if running or not reading.done():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                await asyncio.wait({reading}, timeout=_DRAIN)
            reading.cancel()
            pipe.close()
        text = output.decode(errors="replace").rstrip()
        if running:
            return self._fault(
                f"{self.argv[0]} did not finish within {self.timeout:g} s (killed)", timeout_s=self.timeout, output=text
            )
        code = proc.returncode
        assert code is not None
        if code == 0:
            return None
        return self._fault(_last_lines(text, MESSAGE_CHARS) or _status_text(code), exit_code=code, output=text)

    def _cannot_start(self, exc: OSError) -> ConfigError:
        """The error for a program that could not be started: what failed, and the file or directory."""
        what = exc.filename or self.argv[0]
        if self.cwd is not None and not os.path.isdir(self.cwd):  # uvloop's error does not name it
            what = os.fspath(self.cwd)
        return ConfigError(
            f"detector {self.name!r}: cannot start {self.argv[0]!r}: {(exc.strerror or str(exc)).lower()}: {what}"
        )

    def _fault(self, message: str, **evidence: Any) -> Fault:
        return Fault(fault_type(self.kind, self.target), message, detector=self.name, evidence=evidence)


async def _read_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    """Read ``stream`` to its end, keeping its last :data:`OUTPUT_KEPT` bytes in ``tail``."""
    while chunk := await stream.read(1 << 16):
        tail += chunk
        del tail[:-OUTPUT_KEPT]


def _last_lines(text: str, limit: int) -> str:
    """The last non-empty lines of ``text``, stripped, about ``limit`` characters in all; "" for none."""
    picked: list[str] = []
    size = 0
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line:
            continue
        if picked and size + len(line) > limit:
            break
        picked.append(line)
        size += len(line) + 1
    lines = "\n".join(reversed(picked))
    return lines if len(lines) <= limit else "…" + lines[-(limit - 1) :]


def _status_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"
