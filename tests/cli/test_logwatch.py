"""``flowsight logs watch``: files, stdin and a program's output into a real
store, through the real command line; offsets kept between runs; a real
server as the destination."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowsight.logs.entries import LogLevel
from flowsight.store import open_store
from tests.cli.test_cli import FLOWSIGHT, flowsight
from tests.helpers import wait_healthy
from tests.server.conftest import free_port


def _entries(db: str) -> list[tuple[LogLevel, str, str | None, str | None]]:
    with open_store(db) as store:
        return [
            (s.entry.level, s.entry.message, s.entry.workflow, s.entry.run_id)
            for s in store.logs.query_logs(limit=100_000)
        ]


def test_watch_once_reads_a_file_and_a_second_watch_only_what_was_added(tmp_path: Path) -> None:
    db, log = str(tmp_path / "f.db"), tmp_path / "app.log"
    log.write_text(
        "2024-05-01 10:00:00,000 ERROR db: connection refused\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: boom\n'
    )
    out = flowsight("logs", "watch", "--once", "--from-beginning", "--workflow", "etl", str(log), db=db)
    assert out.returncode == 0, out.stderr
    assert "1 log line collected" in out.stderr
    [(level, message, workflow, _)] = _entries(db)
    assert (level, workflow) == (LogLevel.ERROR, "etl")
    assert message.startswith("connection refused\nTraceback") and message.endswith("ValueError: boom")
    with log.open("a") as f:
        f.write("2024-05-01 10:00:01,000 INFO back again\n")
    out = flowsight("logs", "watch", "--once", str(log), db=db)
    assert out.returncode == 0, out.stderr
    assert [m for _, m, _, _ in _entries(db)][1:] == ["back again"]


def test_watch_reads_stdin_until_it_ends(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    lines = "".join(f"WARNING: item {i} skipped\n" for i in range(500)) + "INFO last line without newline"
    out = subprocess.run(
        [*FLOWSIGHT, "--db", db, "logs", "watch", "--run", "r-9", "-"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    got = _entries(db)
    assert len(got) == 501 and got[0] == (LogLevel.WARN, "item 0 skipped", None, "r-9")
    assert got[-1][1] == "last line without newline"


def test_watch_runs_a_program_collects_its_output_and_exits_with_its_status(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    code = "import sys; print('INFO starting', flush=True); print('ERROR failed', file=sys.stderr); sys.exit(3)"
    out = flowsight("logs", "watch", "--workflow", "job", "--", sys.executable, "-c", code, db=db)
    assert out.returncode == 3, out.stderr
    assert sorted((lv, m) for lv, m, _, _ in _entries(db)) == [(LogLevel.INFO, "starting"), (LogLevel.ERROR, "failed")]


def test_a_followed_file_is_collected_as_it_grows_and_sigterm_ends_cleanly(tmp_path: Path) -> None:
    db, log = str(tmp_path / "f.db"), tmp_path / "app.log"
    log.write_text("")
    # --from-beginning: however slow the watcher's start, lines written before it opened the file count too
    proc = subprocess.Popen(
        [*FLOWSIGHT, "--db", db, "logs", "watch", "--from-beginning", str(log)], stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.5)  # most of the lines come while it follows the file
        with log.open("a") as f:
            for i in range(50):
                f.write(f"INFO line {i}\n")
                f.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not os.path.exists(db) or len(_entries(db)) < 50):
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [m for _, m, _, _ in _entries(db)] == [f"line {i}" for i in range(50)]


def test_nothing_to_watch_is_said_plainly(tmp_path: Path) -> None:
    out = flowsight("logs", "watch", db=str(tmp_path / "f.db"))
    assert out.returncode == 2
    assert "nothing to watch" in out.stderr


def test_a_watcher_killed_mid_file_and_restarted_stores_every_line_exactly_once(tmp_path: Path) -> None:
    db, log = str(tmp_path / "f.db"), tmp_path / "app.log"
    n = 60_000
    # the second half is written only after the kill: killed before the end, however fast the watcher
    log.write_text("".join(f"INFO line {i}\n" for i in range(n // 2)))
    proc = subprocess.Popen(
        [*FLOWSIGHT, "--db", db, "logs", "watch", "--from-beginning", str(log)], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill -9 once some batches are in, before the end
            if os.path.exists(db):
                with open_store(db) as store:
                    if store.logs.count_logs() > 0:
                        break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    with open_store(db) as store:
        assert 0 < store.logs.count_logs() <= n // 2  # killed in the middle
    with log.open("a") as f:
        f.write("".join(f"INFO line {i}\n" for i in range(n // 2, n)))
    out = flowsight("logs", "watch", "--once", "--from-beginning", str(log), db=db)
    assert out.returncode == 0, out.stderr
    assert [m for _, m, _, _ in _entries(db)] == [f"line {i}" for i in range(n)]


def test_once_reads_the_files_there_says_which_named_one_is_not_and_exits_1(tmp_path: Path) -> None:
    db, there, gone = str(tmp_path / "f.db"), tmp_path / "there.log", tmp_path / "app.log"
    there.write_text("INFO one\nINFO two\n")
    out = flowsight(
        "logs", "watch", "--once", "--from-beginning", str(gone), str(there), str(tmp_path / "*.txt"), db=db
    )
    assert out.returncode == 1, out.stderr
    assert f"{gone}: no such file\n" in out.stderr and "waiting" not in out.stderr
    assert f"{tmp_path / '*.txt'}: matches no file" in out.stderr  # a glob: a warning, not the error
    assert [m for _, m, _, _ in _entries(db)] == ["one", "two"]
    assert out.stderr.splitlines()[-1] == f"flowsight: 2 log lines collected into {db}"


def test_once_with_a_glob_that_matches_nothing_only_warns(tmp_path: Path) -> None:
    out = flowsight("logs", "watch", "--once", str(tmp_path / "*.log"), db=str(tmp_path / "f.db"))
    assert out.returncode == 0, out.stderr
    assert "matches no file" in out.stderr and "0 log lines collected" in out.stderr


def test_a_logfmt_record_after_a_prefixed_line_is_an_entry_of_its_own(tmp_path: Path) -> None:
    db, log = str(tmp_path / "f.db"), tmp_path / "app.log"
    log.write_text('2024-05-01 12:00:00 INFO starting\nlevel=error msg="connection reset by peer" host=db1\n')
    out = flowsight("logs", "watch", "--once", "--from-beginning", str(log), db=db)
    assert out.returncode == 0, out.stderr
    assert [(lv, m) for lv, m, _, _ in _entries(db)] == [
        (LogLevel.INFO, "starting"),
        (LogLevel.ERROR, "connection reset by peer"),
    ]


def test_a_programs_output_goes_to_the_terminal_as_well_unless_quiet(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    code = (
        "import sys; print('INFO to stdout', flush=True); print('ERROR to stderr', file=sys.stderr, flush=True);"
        "sys.stdout.write('WARN no newline')"
    )
    out = flowsight("logs", "watch", "--", sys.executable, "-c", code, db=db)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "INFO to stdout\nWARN no newline"
    assert "ERROR to stderr\n" in out.stderr and "3 log lines collected" in out.stderr
    quiet = flowsight("logs", "watch", "--quiet", "--", sys.executable, "-c", code, db=db)
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert "to stderr" not in quiet.stderr and "collected" not in quiet.stderr
    assert len(_entries(db)) == 6


@pytest.mark.parametrize(
    ("script", "mode", "says"),
    [
        (None, 0, "cannot start './job.sh': no such file: ./job.sh"),
        ("#!/bin/sh\necho hi\n", 0o644, "cannot start './job.sh': not executable: ./job.sh"),
    ],
)
def test_a_program_named_by_path_that_cannot_run_says_why(
    tmp_path: Path, script: str | None, mode: int, says: str
) -> None:
    if script is not None:
        (tmp_path / "job.sh").write_text(script)
        (tmp_path / "job.sh").chmod(mode)
    out = subprocess.run(
        [*FLOWSIGHT, "--db", str(tmp_path / "f.db"), "logs", "watch", "--", "./job.sh"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert says in out.stderr and "PATH" not in out.stderr


def test_to_a_server_that_is_down_the_summary_says_the_lines_wait_in_the_spool_then_go(tmp_path: Path) -> None:
    db, spool = str(tmp_path / "server.db"), tmp_path / "spool"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FLOWSIGHT_SPOOL_DIR": str(spool), "HOME": str(tmp_path)}
    env.pop("FLOWSIGHT_URL", None)

    def watch(lines: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLOWSIGHT, "logs", "watch", "--run", "r-1", "--url", url, "-"],
            input=lines,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )

    down = watch("INFO one\nINFO two\nINFO three\n")  # not waiting for a server that does not answer (60 s)
    assert down.returncode == 0, down.stderr
    said = down.stderr.splitlines()
    assert len([line for line in said if "spool" in line]) == 2, said  # the outage once, and the summary
    assert said[-1].startswith(f"flowsight: 3 log lines read; 0 delivered to {url}, 3 kept in the spool at {spool}")
    assert "sent when the server is back" in said[-1]

    with (tmp_path / "serve.log").open("wb") as log:  # the server comes back, at the same address
        server = subprocess.Popen(
            [*FLOWSIGHT, "--db", db, "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        assert wait_healthy(server, url, 20), (tmp_path / "serve.log").read_text()
        up = watch("INFO four\n")
        assert up.returncode == 0, up.stderr
        assert up.stderr.splitlines()[-1] == f"flowsight: 1 log line read; 1 delivered to {url}"
        deadline = time.monotonic() + 20  # the spooled three went out with it
        while sorted(m for _, m, _, _ in _entries(db)) != ["four", "one", "three", "two"]:
            assert time.monotonic() < deadline, _entries(db)
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, (tmp_path / "serve.log").read_text()


def test_once_from_beginning_reads_the_configurations_sources_too(tmp_path: Path) -> None:
    """A source's own ``start = "end"`` does not hide what --from-beginning asks for."""
    (tmp_path / "app.log").write_text("2024-05-01 10:00:00,000 WARNING disk at 91%\n")
    (tmp_path / "flowsight.toml").write_text('[[logs.sources]]\npath = "app.log"\nworkflow = "etl"\n')
    db = str(tmp_path / "f.db")
    out = subprocess.run(
        [*FLOWSIGHT, "--db", db, "logs", "watch", "--once", "--from-beginning"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert [(lv, m, wf) for lv, m, wf, _ in _entries(db)] == [(LogLevel.WARN, "disk at 91%", "etl")]


def test_serve_follows_the_configurations_sources(store_url: str, tmp_path: Path) -> None:
    from tests.server.conftest import start_server

    log = tmp_path / "app.log"
    log.write_text("before the server\n")  # no time of its own: read now, so kept by the retention
    config = tmp_path / "flowsight.toml"
    config.write_text(f'[[logs.sources]]\npath = "{log}"\nworkflow = "etl"\nstart = "beginning"\n')
    server = start_server(store_url, "--config", str(config), log_dir=tmp_path)
    try:
        client = server.client()

        def messages() -> list[str]:
            return [e["message"] for e in client.get("/api/v1/logs", params={"workflow": "etl"}).json()["logs"]]

        deadline = time.monotonic() + 30
        while messages() != ["before the server"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert messages() == ["before the server"]
        with log.open("a") as f:
            f.write("while it serves\n")
        while len(messages()) < 2 and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        assert sorted(messages()) == ["before the server", "while it serves"]
    finally:
        server.stop()
    # restarted, it goes on from its offsets: nothing read twice
    server = start_server(store_url, "--config", str(config), log_dir=tmp_path)
    try:
        time.sleep(1.0)  # a round of the tail, which would re-read the file if offsets were lost
        got = server.client().get("/api/v1/logs", params={"workflow": "etl"}).json()["logs"]
        assert sorted(e["message"] for e in got) == ["before the server", "while it serves"]
    finally:
        server.stop()
