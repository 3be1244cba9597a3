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

from flowsight.model.logs import LogLevel
from flowsight.store import open_store
from tests.cli.test_cli import FLOWSIGHT, flowsight


def _entries(db: str) -> list[tuple[LogLevel, str, str | None, str | None]]:
    with open_store(db) as store:
        return [(s.entry.level, s.entry.message, s.entry.workflow, s.entry.run_id)
                for s in store.query_logs(limit=100_000)]


def test_watch_once_reads_a_file_and_a_second_watch_only_what_was_added(tmp_path: Path) -> None:
    db, log = str(tmp_path / "f.db"), tmp_path / "app.log"
    log.write_text("2024-05-01 10:00:00,000 ERROR db: connection refused\n"
                   "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: boom\n")
    out = flowsight("logs", "watch", "--once", "--from-beginning", "--workflow", "etl", str(log), db=db)
    assert out.returncode == 0, out.stderr
    assert "1 log lines collected" in out.stderr
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
    out = subprocess.run([*FLOWSIGHT, "--db", db, "logs", "watch", "--run", "r-9", "-"], input=lines,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = _entries(db)
    assert len(got) == 501 and got[0] == (LogLevel.WARN, "item 0 skipped", None, "r-9")
    assert got[-1][1] == "last line without newline"


def test_watch_runs_a_program_collects_its_output_and_exits_with_its_status(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    code = "import sys; print('INFO starting', flush=True); print('ERROR failed', file=sys.stderr); sys.exit(3)"
    out = flowsight("logs", "watch", "--workflow", "job", "--", sys.executable, "-c", code, db=db)
    assert out.returncode == 3, out.stderr
    assert sorted((lv, m) for lv, m, _, _ in _entries(db)) == [(LogLevel.INFO, "starting"),
                                                             (LogLevel.ERROR, "failed")]


def test_a_followed_file_is_collected_as_it_grows_and_sigterm_ends_cleanly(tmp_path: Path) -> None:
    db, log = str(tmp_path / "f.db"), tmp_path / "app.log"
    log.write_text("")
    proc = subprocess.Popen([*FLOWSIGHT, "--db", db, "logs", "watch", str(log)], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the watcher opens the file at its end
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
    log.write_text("".join(f"INFO line {i}\n" for i in range(n)))
    proc = subprocess.Popen([*FLOWSIGHT, "--db", db, "logs", "watch", "--from-beginning", str(log)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill -9 once some batches are in, before the end
            if os.path.exists(db):
                with open_store(db) as store:
                    if store.count_logs() > 0:
                        break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    with open_store(db) as store:
        assert 0 < store.count_logs() < n  # killed in the middle
    out = flowsight("logs", "watch", "--once", "--from-beginning", str(log), db=db)
    assert out.returncode == 0, out.stderr
    assert [m for _, m, _, _ in _entries(db)] == [f"line {i}" for i in range(n)]
