"""``flowsight run``: real commands run through the real command line, into a
real SQLite store; signals sent from outside, pids checked."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from flowsight.cli.run import StepTracker, early_dispatch, group_level, outcome, stored_level
from flowsight.model.runs.events import EventKind
from flowsight.logs.entries import LogLevel
from flowsight.model.runs.state import WorkflowState
from flowsight.store import open_store

#: ``python -m flowsight``: not ``-m flowsight.cli.main``, whose runpy warning on stderr would spoil the byte comparisons
FLOWSIGHT = [sys.executable, "-m", "flowsight"]
#: a program that waits until the SQL query (argv[2]) finds a row in the SQLite database argv[1]
WAIT_ROW = """
import sqlite3, sys, time
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    db = sqlite3.connect(sys.argv[1])
    try:
        if db.execute(sys.argv[2]).fetchone():
            sys.exit(0)
    except sqlite3.OperationalError:  # busy for a moment
        pass
    finally:
        db.close()
    time.sleep(0.02)
sys.exit(f"never stored: {sys.argv[2]}")
"""


def _run(db: str, *command: str, run_id: str = "r-1", workflow: str = "job") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*FLOWSIGHT, "--db", db, "run", "--workflow", workflow, "--run-id", run_id, "--", *command],
        capture_output=True,
        timeout=60,
    )


def _start(db: str, script: str, *options: str) -> subprocess.Popen[bytes]:
    """``flowsight run`` of a bash script as run r-1, its output in pipes (use it in a ``with``)."""
    return subprocess.Popen(
        [*FLOWSIGHT, "run", "--db", db, "--run-id", "r-1", *options, "--", "bash", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _pids(stream: IO[bytes] | None, n: int) -> list[int]:
    assert stream is not None
    return [int(stream.readline()) for _ in range(n)]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"  # a zombie is dead, only not yet reaped
    except FileNotFoundError:
        return True


def _wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not all(_gone(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if not _gone(p)]


def test_a_script_with_step_markers_that_exits_0_is_a_completed_run_with_its_steps_and_lines(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")

    # the two pipes are merged as their bytes arrive: a stderr line belongs to the step that is open when it
    # comes, so the script goes on only once flowsight has stored what came before (however busy the machine)
    def stored(sql: str) -> str:
        return shlex.join([sys.executable, "-c", WAIT_ROW, db, sql])

    oops = stored("SELECT 1 FROM logs WHERE message = 'oops'")
    load = stored("SELECT 1 FROM events WHERE kind = 'step_started' AND step = 'load'")
    slow = stored("SELECT 1 FROM logs WHERE message = 'disk slow'")
    script = (
        f"echo '::step extract::'; echo 'extracting'; echo 'oops' >&2; {oops}; echo '::step load::'; {load}; "
        f"echo 'ERROR: disk slow' >&2; echo 'INFO: loaded'; {slow}; echo '::step-end::'; "
        "echo 'after the steps'"
    )
    out = _run(db, "bash", "-c", script)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (b"::step extract::\nextracting\n::step load::\nINFO: loaded\n::step-end::\nafter the steps\n")
    assert out.stderr == b"oops\nERROR: disk slow\n"
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.state is WorkflowState.COMPLETED and run.workflow == "job"
        assert run.attrs["command"] == f"bash -c {shlex.quote(script)}"
        assert run.attrs["pid"] != os.getpid() and run.attrs["host"]
        assert [(s.step, s.status) for s in store.runs.run_steps("r-1")] == [
            ("extract", "completed"),
            ("load", "completed"),
        ]
        logs = {
            (e.entry.message, e.entry.level, e.entry.step, e.entry.workflow)
            for e in store.logs.query_logs(run_id="r-1", limit=100)
        }
    assert logs == {
        ("extracting", LogLevel.INFO, "extract", "job"),
        ("oops", LogLevel.WARN, "extract", "job"),
        ("disk slow", LogLevel.ERROR, "load", "job"),
        ("loaded", LogLevel.INFO, "load", "job"),
        ("after the steps", LogLevel.INFO, None, "job"),
    }


def test_a_command_that_exits_3_fails_the_run_and_its_step_and_flowsight_exits_3(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    out = _run(db, "bash", "-c", "echo '::step build::'; echo 'compiling'; exit 3")
    assert out.returncode == 3, out.stderr
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.state is WorkflowState.FAILED
        assert run.error == "exited with status 3"
        [step] = store.runs.run_steps("r-1")
        assert (step.step, step.status, step.error) == ("build", "failed", "exited with status 3")


def test_a_command_without_markers_is_one_step_named_after_the_workflow(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    out = subprocess.run(
        [*FLOWSIGHT, "--db", db, "run", "--run-id", "r-1", "--", sys.executable, "-c", "print('hello')"],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    workflow = os.path.basename(sys.executable)
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.workflow == workflow and run.state is WorkflowState.COMPLETED
        assert [(s.step, s.status) for s in store.runs.run_steps("r-1")] == [(workflow, "completed")]


def test_a_command_killed_by_sigkill_from_outside_fails_the_run_and_flowsight_exits_137(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    with _start(db, "echo $$; exec sleep 300") as proc:
        [child] = _pids(proc.stdout, 1)
        os.kill(child, signal.SIGKILL)
        assert proc.wait(timeout=30) == 137
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.state is WorkflowState.FAILED
        assert run.error == "killed by signal SIGKILL"


def test_sigterm_to_flowsight_ends_the_commands_whole_tree_and_cancels_the_run(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    with _start(db, "sleep 300 & echo $!; sleep 300 & echo $!; echo $$; wait") as proc:
        tree = _pids(proc.stdout, 3)
        assert not any(_gone(p) for p in tree)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert _wait_gone(tree) == []
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.state is WorkflowState.CANCELLED
        kinds = [e.kind for e in store.runs.run_events("r-1")]
    assert kinds[-1] is EventKind.CANCELLED


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    with _start(db, "trap '' TERM; echo $$; while :; do sleep 0.1; done", "--kill-after", "0.5") as proc:
        [child] = _pids(proc.stdout, 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGKILL
        assert proc.stderr is not None and b"still running 0.5s after SIGTERM; killed" in proc.stderr.read()
    assert _wait_gone([child]) == []
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.state is WorkflowState.CANCELLED


def test_stdout_and_stderr_pass_through_byte_exact_binary_included(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    blob = bytes(range(256)) * 64 + b"\r\n\x00 a last line without newline \xff\xfe"
    code = (
        "import sys; b = bytes(range(256)) * 64 + b'\\r\\n\\x00 a last line without newline \\xff\\xfe'; "
        "sys.stdout.buffer.write(b); sys.stderr.buffer.write(b[::-1])"
    )
    out = _run(db, sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout == blob
    assert out.stderr == blob[::-1]


def test_a_command_that_cannot_start_fails_the_run_and_says_why(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    out = _run(db, "no-such-program-flowsight")
    assert out.returncode == 127
    assert b"no such program" in out.stderr
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.state is WorkflowState.FAILED


# ---- the decisions, without processes ----------------------------------------------------
@pytest.mark.parametrize(
    ("returncode", "cancelled_by", "kind", "message", "status"),
    [
        (0, None, EventKind.COMPLETED, None, 0),
        (3, None, EventKind.FAILED, "exited with status 3", 3),
        (-9, None, EventKind.FAILED, "killed by signal SIGKILL", 137),
        (-15, signal.SIGTERM, EventKind.CANCELLED, "flowsight got SIGTERM; the command killed by signal SIGTERM", 143),
        (0, signal.SIGINT, EventKind.CANCELLED, "flowsight got SIGINT; the command exited with status 0", 0),
    ],
)
def test_how_a_run_ends_follows_the_exit_and_the_signal_flowsight_got(
    returncode: int, cancelled_by: int | None, kind: EventKind, message: str | None, status: int
) -> None:
    end = outcome(returncode, cancelled_by)
    assert (end.kind, end.message, end.exit_status) == (kind, message, status)


def test_markers_start_and_end_steps_and_an_open_step_fails_at_a_bad_exit() -> None:
    steps = StepTracker("job")
    assert steps.marker("not a marker") is None
    assert steps.marker("::step extract::") == [("start", "extract")]
    assert steps.output() == []
    assert steps.marker("  ::step load data::  ") == [("complete", "extract"), ("start", "load data")]
    assert steps.marker("::step-end::") == [("complete", "load data")]
    assert steps.output() == [] and steps.current is None  # no implicit step once markers were seen
    assert steps.marker("::step last::") == [("start", "last")]
    assert steps.finish(ok=False) == [("fail", "last")]


def test_output_before_any_marker_opens_the_implicit_step() -> None:
    steps = StepTracker("job")
    assert steps.output() == [("start", "job")]
    assert steps.output() == []
    assert steps.marker("::step a::") == [("complete", "job"), ("start", "a")]
    assert StepTracker("job").finish(ok=True) == []


@pytest.mark.parametrize(
    ("level", "text", "stream", "stored"),
    [
        (LogLevel.INFO, "plain text", "stderr", LogLevel.WARN),
        (LogLevel.INFO, "plain text", "stdout", LogLevel.INFO),
        (LogLevel.INFO, "INFO: said so", "stderr", LogLevel.INFO),
        (LogLevel.INFO, 'level=info msg="said so"', "stderr", LogLevel.INFO),
        (LogLevel.ERROR, "ERROR: bad", "stderr", LogLevel.ERROR),
        (LogLevel.DEBUG, "DEBUG: detail", "stderr", LogLevel.DEBUG),
    ],
)
def test_stderr_lines_are_warnings_unless_they_name_their_level(
    level: LogLevel, text: str, stream: str, stored: LogLevel
) -> None:
    assert stored_level(level, text, stream) is stored


@pytest.mark.parametrize(
    ("argv", "found"),
    [
        (["run", "--", "ls", "-l"], ["--", "ls", "-l"]),
        (["--db", "x.db", "run", "ls"], ["--db", "x.db", "ls"]),
        (["--db=x.db", "run"], ["--db=x.db"]),
        (["--db", "run", "run", "ls"], ["--db", "run", "ls"]),
        (["runs", "--limit", "3"], None),
        (["logs", "run"], None),
        (["--db", "run"], None),
        (["--json", "run"], None),
        ([], None),
    ],
)
def test_run_is_dispatched_before_the_main_parser_sees_the_commands_options(
    argv: list[str], found: list[str] | None
) -> None:
    assert early_dispatch(argv) == found


def test_progress_markers_give_the_open_steps_progress_and_are_not_stored_as_lines(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    done = _run(db, "bash", "-c", "echo '::step load::'; echo '::progress 3/10::'; echo working; sleep 0.3")
    assert done.returncode == 0, done.stderr
    assert b"::progress 3/10::" in done.stdout  # it passes through to the terminal
    with open_store(db) as store:
        progress = [e.attrs for e in store.runs.run_events("r-1") if e.kind is EventKind.PROGRESS]
        assert progress == [{"done": 3.0, "total": 10.0}]
        assert [e.step for e in store.runs.run_events("r-1") if e.kind is EventKind.PROGRESS] == ["load"]
        messages = [e.entry.message for e in store.logs.query_logs(run_id="r-1", limit=100)]
    assert messages == ["working"]


def test_a_stopped_command_suspends_the_run_and_sigcont_resumes_it(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")

    def state() -> WorkflowState | None:
        with open_store(db) as store:
            run = store.runs.get_run("r-1")
            return None if run is None else run.state

    def wait_state(want: WorkflowState) -> None:
        end = time.monotonic() + 20
        while time.monotonic() < end and state() is not want:
            time.sleep(0.05)
        assert state() is want

    with _start(db, "echo $$; exec sleep 300") as proc:
        [pid] = _pids(proc.stdout, 1)
        wait_state(WorkflowState.RUNNING)
        os.kill(pid, signal.SIGSTOP)
        wait_state(WorkflowState.SUSPENDED)
        os.kill(pid, signal.SIGCONT)
        wait_state(WorkflowState.RUNNING)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    with open_store(db) as store:
        moves = [(t.old_state.value, t.new_state.value) for t in store.runs.run_transitions("r-1") if t.applied]
    assert moves == [
        ("pending", "running"),
        ("running", "suspended"),
        ("suspended", "running"),
        ("running", "cancelled"),
    ]


def test_a_step_regex_names_the_steps_of_a_script_without_markers(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    script = "echo '==> extract'; echo rows; sleep 0.3; echo '==> load'; echo loaded; sleep 0.3"
    done = subprocess.run(
        [
            *FLOWSIGHT,
            "--db",
            db,
            "run",
            "--run-id",
            "r-1",
            "--steps",
            "2",
            "--step-regex",
            "^==> (.+)$",
            "--",
            "bash",
            "-c",
            script,
        ],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and run.total_steps == 2 and run.completed_steps == 2
        assert [(s.step, s.status) for s in store.runs.run_steps("r-1")] == [
            ("extract", "completed"),
            ("load", "completed"),
        ]
        by_step = {e.entry.message: e.entry.step for e in store.logs.query_logs(run_id="r-1", limit=100)}
    assert by_step == {"==> extract": "extract", "rows": "extract", "==> load": "load", "loaded": "load"}


def _stored_text(db: str, run_id: str = "r-1") -> list[tuple[str, int]]:
    """(message, lines in it) of the run's stored entries, in order."""
    with open_store(db) as store:
        rows = store.logs.query_logs(run_id=run_id, limit=1_000_000)
    return [(r.entry.message, r.entry.message.count("\n") + 1) for r in sorted(rows, key=lambda r: r.seq)]


def test_a_flood_of_output_passes_through_and_is_stored_whole_in_groups_of_lines(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    done = _run(db, "seq", "1", "200000")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"".join(b"%d\n" % i for i in range(1, 200_001))
    stored = _stored_text(db)
    assert "\n".join(m for m, _ in stored).split("\n") == [str(i) for i in range(1, 200_001)]
    assert len(stored) < 200_000 and max(n for _, n in stored) <= 1000  # grouped, 1000 lines an entry at most
    with open_store(db) as store:
        rows = store.logs.query_logs(run_id="r-1", limit=1_000_000)
    assert all(r.entry.fields.get("lines", 1) == r.entry.message.count("\n") + 1 for r in rows)  # each says so


def test_markers_and_levels_inside_a_flood_still_count(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    code = (
        "import sys\n"
        "for step in ('extract', 'load'):\n"
        "    print(f'::step {step}::')\n"
        "    for i in range(50000): print(f'{step} row {i}')\n"
        "    print(f'2026-11-29 08:00:00 ERROR {step} had a bad row')\n"
    )
    done = _run(db, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    with open_store(db) as store:
        assert [(s.step, s.status) for s in store.runs.run_steps("r-1")] == [
            ("extract", "completed"),
            ("load", "completed"),
        ]
        rows = store.logs.query_logs(run_id="r-1", limit=1_000_000)
    text = "\n".join(r.entry.message for r in sorted(rows, key=lambda r: r.seq))
    assert "::step" not in text and text.count("\n") + 1 == 100_002
    errors = [r for r in rows if r.entry.level is LogLevel.ERROR]
    assert {r.entry.step for r in errors} == {"extract", "load"}  # each group holding the ERROR line is an error
    assert all("had a bad row" in r.entry.message for r in errors)


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("a\nb\nc", LogLevel.INFO),
        ("a\n2026-11-29 08:00:00 WARNING disk 91%\nc", LogLevel.WARN),
        ("a\n[ERROR] no\nE FATAL: gone", LogLevel.FATAL),
        ('a\n{"level":"error","msg":"x"}', LogLevel.ERROR),
        ("a\nts=1 level=warn msg=x", LogLevel.WARN),
        ("a\n" + "x" * 100 + " ERROR far into the line", LogLevel.INFO),
        ("a\nerrors: 0", LogLevel.INFO),
    ],
)
def test_a_group_of_lines_is_stored_at_the_highest_level_its_lines_name(text: str, level: LogLevel) -> None:
    assert group_level(LogLevel.INFO, text) is level


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--step-regex", "(unclosed"], "--step-regex: '(unclosed' is not a regular expression"),
        (["--steps", "-1"], "--steps: -1 is not a number of steps"),
    ],
)
def test_bad_run_options_are_refused_with_exit_2(tmp_path: Path, options: list[str], words: str) -> None:
    done = subprocess.run(
        [*FLOWSIGHT, "--db", str(tmp_path / "f.db"), "run", *options, "--", "true"], capture_output=True, timeout=60
    )
    assert done.returncode == 2 and words in done.stderr.decode()


def test_with_the_server_down_the_command_runs_as_usual_and_its_run_is_delivered_later(tmp_path: Path) -> None:
    """The SDK's spool: ``flowsight run --url`` to a server that is down keeps
    the command's exit status and output; the next run against the server,
    once it is up, delivers what waited (events and log lines)."""
    from tests.sdk.serving import ServerProcess

    server = ServerProcess(tmp_path / "server.db", log_dir=tmp_path)  # not started: its port is closed
    env = {**os.environ, "FLOWSIGHT_SPOOL_DIR": str(tmp_path / "spool")}
    env.pop("FLOWSIGHT_URL", None)

    def wrapped(run_id: str, script: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*FLOWSIGHT, "run", "--url", server.url, "--run-id", run_id, "-w", "offline", "--", "bash", "-c", script],
            capture_output=True,
            timeout=120,
            env=env,
        )

    first = wrapped("down-1", "echo '::step work::'; echo hello; exit 3")
    assert first.returncode == 3 and first.stdout == b"::step work::\nhello\n"
    server.start()
    try:
        second = wrapped("up-1", "echo again")
        assert second.returncode == 0, second.stderr
        with open_store(str(server.db)) as store:
            end = time.monotonic() + 30
            while time.monotonic() < end and store.runs.get_run("down-1") is None:
                time.sleep(0.1)
            run = store.runs.get_run("down-1")
            assert run is not None and run.state is WorkflowState.FAILED and run.error is not None
            assert "exited with status 3" in run.error
            assert [e.entry.message for e in store.logs.query_logs(run_id="down-1", limit=10)] == ["hello"]
            assert store.runs.get_run("up-1") is not None
    finally:
        server.stop()


def test_piped_stdin_reaches_the_command(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    done = subprocess.run(
        [*FLOWSIGHT, "--db", db, "run", "--run-id", "r-1", "--", "cat"],
        input=b"a\nb\n",
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"a\nb\n"
    assert [m for m, _ in _stored_text(db)] == ["a", "b"]


def test_with_steps_given_output_before_the_first_marker_is_no_step_of_its_own(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    script = "echo 'args: --full'; echo '::step extract::'; echo rows; echo '::step load::'; echo loaded"
    done = subprocess.run(
        [*FLOWSIGHT, "--db", db, "run", "--run-id", "r-1", "--steps", "2", "--", "bash", "-c", script],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with open_store(db) as store:
        run = store.runs.get_run("r-1")
        assert run is not None and (run.completed_steps, run.total_steps) == (2, 2)
        assert [s.step for s in store.runs.run_steps("r-1")] == ["extract", "load"]
        by_step = {e.entry.message: e.entry.step for e in store.logs.query_logs(run_id="r-1", limit=100)}
    assert by_step == {"args: --full": None, "rows": "extract", "loaded": "load"}
