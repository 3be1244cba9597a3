"""ProcessOutput with real child processes (``python -c`` scripts): both
streams, tracebacks, bad bytes, a 10 MB line, a child killed, and no orphan
left when the consumer stops early."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowsight.collect import LogSource, ProcessOutput, RawLine
from flowsight.errors import ConfigError
from tests.helpers import run


class Problems(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def script(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", textwrap.dedent(code)]


def collect(argv: list[str], **kw: object) -> tuple[list[RawLine], ProcessOutput, Problems]:
    problems = Problems()
    kw.setdefault("multiline_idle", 0.05)
    out = ProcessOutput(argv, name="job", on_problem=problems, **kw)  # type: ignore[arg-type]

    async def take() -> list[RawLine]:
        return [line async for line in out]

    return run(lambda: asyncio.wait_for(take(), 60)), out, problems


def of(lines: list[RawLine], stream: str) -> list[str]:
    return [x.text for x in lines if x.path == f"process:job:{stream}"]


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody will run again)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.02)


def test_process_output_is_a_log_source() -> None:
    assert isinstance(ProcessOutput(["true"]), LogSource)


def test_both_streams_come_in_their_own_order_with_their_own_label() -> None:
    lines, out, problems = collect(
        script("""
        import sys
        for i in range(200):
            print(f"out {i}")
            print(f"err {i}", file=sys.stderr)
    """)
    )
    assert of(lines, "stdout") == [f"out {i}" for i in range(200)]
    assert of(lines, "stderr") == [f"err {i}" for i in range(200)]
    assert out.returncode == 0 and problems == []


def test_a_traceback_on_stderr_is_one_entry_and_the_exit_status_is_kept() -> None:
    lines, out, _ = collect(
        script("""
        print("working")
        def load():
            raise ValueError("boom")
        load()
    """)
    )
    assert of(lines, "stdout") == ["working"]
    [tb] = of(lines, "stderr")
    assert tb.startswith("Traceback (most recent call last):") and tb.endswith("ValueError: boom")
    assert "in load" in tb
    assert out.returncode == 1


def test_a_last_line_without_newline_is_not_lost() -> None:
    lines, _, _ = collect(
        script("""
        import sys
        sys.stdout.write("one\\ntwo")
        sys.stderr.write("half")
    """)
    )
    assert of(lines, "stdout") == ["one", "two"] and of(lines, "stderr") == ["half"]


def test_binary_garbage_and_invalid_utf8_are_replaced_and_said_once_per_stream() -> None:
    lines, out, problems = collect(
        script("""
        import os, sys
        for _ in range(3):
            sys.stdout.buffer.write(b"bad \\xff\\xfe bytes\\n")
        sys.stdout.buffer.write(os.urandom(5000) + b"\\n")
        sys.stdout.buffer.write(b"nul\\x00\\x00\\n")
        sys.stdout.buffer.write(b"still here\\n")
    """),
        multiline=False,
    )
    texts = of(lines, "stdout")
    assert texts[:3] == ["bad \ufffd\ufffd bytes"] * 3
    assert texts[-2:] == ["nul\ufffd\ufffd", "still here"]
    assert all("\x00" not in t for t in texts)
    utf8 = [p for p in problems if "invalid UTF-8" in p]
    assert len(utf8) == 1 and utf8[0].startswith("process:job:stdout: ")
    assert len([p for p in problems if "NUL" in p]) == 1
    assert out.returncode == 0


def test_a_10_mb_line_is_cut_into_pieces_with_one_warning() -> None:
    lines, out, problems = collect(
        script("""
        import sys
        sys.stdout.write("x" * 10_000_000 + "\\nafter\\n")
    """),
        max_line=1 << 20,
    )
    texts = of(lines, "stdout")
    assert texts[-1] == "after"
    assert "".join(texts[:-1]) == "x" * 10_000_000
    assert max(len(t) for t in texts) == 1 << 20 and len(texts) == 11
    assert len(problems) == 1 and "longer than max_line=1048576 bytes" in problems[0]
    assert out.returncode == 0


def test_a_child_that_is_killed_ends_the_stream_with_its_signal() -> None:
    lines, out, _ = collect(
        script("""
        import os, signal
        print("before")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    )
    assert of(lines, "stdout") == ["before"]
    assert out.returncode == -signal.SIGKILL


def test_an_entry_still_open_goes_out_after_idle_while_the_program_runs(tmp_path: Path) -> None:
    go = tmp_path / "go"
    out = ProcessOutput(
        script(f"""
        import os, sys, time
        print("Traceback (most recent call last):\\n  File 'x'\\nKeyError: 'k'", file=sys.stderr)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
    """),
        name="job",
        multiline_idle=0.05,
    )

    async def first() -> tuple[str, int | None]:
        async with contextlib.aclosing(out.__aiter__()) as lines:
            async for line in lines:
                code = out.returncode  # the program is still waiting for "go"
                go.touch()
                return line.text, code
        raise AssertionError("no line")

    text, code = run(lambda: asyncio.wait_for(first(), 30))
    assert text.endswith("KeyError: 'k'") and code is None


def test_stopping_early_ends_the_program_and_what_it_started(tmp_path: Path) -> None:
    out = ProcessOutput(
        script("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(child.pid)
        while True:
            print("tick")
            time.sleep(0.01)
    """),
        name="job",
    )

    async def main() -> int:
        async with contextlib.aclosing(out.__aiter__()) as lines:
            async for line in lines:
                return int(line.text)
        raise AssertionError("no line")

    grandchild = run(main)
    assert out.returncode == -signal.SIGTERM
    assert out.pid is not None
    wait_gone(out.pid)
    wait_gone(grandchild)


def test_a_cancelled_consumer_ends_the_program() -> None:
    out = ProcessOutput(
        script("""
        import time
        print("started")
        time.sleep(600)
    """),
        name="job",
    )
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in out:
            started.set()

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main)
    assert out.returncode == -signal.SIGTERM
    assert out.pid is not None and gone(out.pid)


def test_a_program_that_ignores_sigterm_is_killed_after_kill_after() -> None:
    problems = Problems()
    out = ProcessOutput(
        script("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stubborn")
        time.sleep(600)
    """),
        name="job",
        kill_after=0.3,
        on_problem=problems,
    )

    async def main() -> None:
        async with contextlib.aclosing(out.__aiter__()) as lines:
            async for _ in lines:
                return

    run(main)
    assert out.returncode == -signal.SIGKILL
    assert any("still running 0.3s after SIGTERM; killed" in p for p in problems)


def test_forwarded_signals_reach_the_program_and_our_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    out = ProcessOutput(
        script("""
        import signal, sys, time
        def bye(sig, frame):
            print("got", sig)
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready")
        time.sleep(600)
    """),
        name="job",
        forward_signals=True,
    )

    async def main() -> list[str]:
        texts = []
        async for line in out:
            texts.append(line.text)
            if line.text == "ready":
                os.kill(os.getpid(), signal.SIGTERM)  # to us: forwarded, not fatal
        return texts

    assert run(lambda: asyncio.wait_for(main(), 30)) == ["ready", f"got {int(signal.SIGTERM)}"]
    assert out.returncode == 0
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    """A directory with job scripts that cannot run: not executable, an
    interpreter that is not installed; and a directory."""
    (tmp_path / "plain.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "lost.sh").write_text("#!/usr/bin/flowsight-no-such-shell\necho hi\n")
    (tmp_path / "lost.sh").chmod(0o755)
    (tmp_path / "adir").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "cwd", "says"),
    [
        (["flowsight-no-such-program"], None, "no such program (is it installed, and on PATH?)"),
        ([__file__], None, f"not executable: {__file__} (chmod +x it"),
        (["true"], "/nonexistent/dir", "working directory '/nonexistent/dir' does not exist"),
        (["./job.sh"], "SCRIPTS", "no such file: ./job.sh (in "),
        (["./plain.sh"], "SCRIPTS", "not executable: ./plain.sh"),
        (["./lost.sh"], "SCRIPTS", "its interpreter (#!/usr/bin/flowsight-no-such-shell) was not found"),
        (["./adir"], "SCRIPTS", "permission denied"),
    ],
)
def test_a_program_that_cannot_start_says_why(argv: list[str], cwd: str | None, says: str, scripts: Path) -> None:
    async def main() -> None:
        async for _ in ProcessOutput(argv, cwd=scripts if cwd == "SCRIPTS" else cwd):
            pass

    with pytest.raises(ConfigError, match="cannot start") as info:
        run(main)
    assert says in str(info.value)


def test_a_path_without_cwd_is_looked_for_in_the_current_directory(
    scripts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(scripts)

    async def main() -> None:
        async for _ in ProcessOutput(["./job.sh"]):
            pass

    with pytest.raises(ConfigError, match=r"no such file: \./job\.sh \(in ") as info:
        run(main)
    assert str(scripts) in str(info.value)


def test_tee_copies_each_stream_as_it_comes_and_the_lines_are_still_collected(tmp_path: Path) -> None:
    out_copy, err_copy = open(tmp_path / "out", "wb"), open(tmp_path / "err", "wb")
    with out_copy, err_copy:
        lines, _, problems = collect(
            script("""
            import sys
            print("INFO to stdout")
            sys.stdout.write("WARN no newline at the end")
            print("ERROR to stderr", file=sys.stderr)
        """),
            tee=(out_copy, err_copy),
        )
    assert (tmp_path / "out").read_bytes() == b"INFO to stdout\nWARN no newline at the end"
    assert (tmp_path / "err").read_bytes() == b"ERROR to stderr\n"
    assert of(lines, "stdout") == ["INFO to stdout", "WARN no newline at the end"]
    assert of(lines, "stderr") == ["ERROR to stderr"] and problems == []


def test_a_tee_that_breaks_is_said_once_and_collecting_goes_on(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)  # nobody reads: writing fails with a broken pipe
    broken = os.fdopen(w, "wb")
    lines, _, problems = collect(
        script("""
        for i in range(3):
            print(f"line {i}")
    """),
        tee=(broken, None),
    )
    with contextlib.suppress(OSError):
        broken.close()
    assert of(lines, "stdout") == ["line 0", "line 1", "line 2"]
    assert len(problems) == 1 and "can no longer be copied out" in problems[0]


def test_env_and_cwd_are_the_programs(tmp_path: Path) -> None:
    lines, _, _ = collect(
        script("""
        import os
        print(os.environ.get("FLOWSIGHT_X"), os.getcwd())
    """),
        env={**os.environ, "FLOWSIGHT_X": "42"},
        cwd=tmp_path,
    )
    assert of(lines, "stdout") == [f"42 {tmp_path}"]


def test_a_process_output_runs_once() -> None:
    out = ProcessOutput(["true"])
    out.__aiter__()
    with pytest.raises(RuntimeError, match="runs its program once"):
        out.__aiter__()
