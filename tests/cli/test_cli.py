"""The ``flowsight`` command, run as a user runs it: a real process, a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowsight.model.runs.events import make_event
from flowsight.store import open_store

FLOWSIGHT = [sys.executable, "-m", "flowsight.cli.main"]


def flowsight(*args: str, db: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWSIGHT, "--db", db, *args], capture_output=True, text=True, timeout=timeout)


def seed(db: str, now: float) -> str:
    """Two completed runs of 'etl' (history) and one running, one failed."""
    with open_store(db) as store:
        for i, run in enumerate(("old-1", "old-2")):
            t = now - 1000 + i * 100
            store.runs.write_events(
                [
                    make_event("started", "etl", run, attrs={"total_steps": 2}, ts=t),
                    make_event("step_started", "etl", run, "extract", ts=t + 1),
                    make_event("step_completed", "etl", run, "extract", ts=t + 11),
                    make_event("step_started", "etl", run, "load", ts=t + 11),
                    make_event("step_completed", "etl", run, "load", ts=t + 31),
                    make_event("completed", "etl", run, ts=t + 31),
                ]
            )
        store.runs.write_events(
            [
                make_event("started", "etl", "live-run", attrs={"total_steps": 2}, ts=now - 5),
                make_event("step_started", "etl", "live-run", "extract", ts=now - 4),
                make_event("started", "report", "bad-run", ts=now - 3),
                make_event(
                    "failed", "report", "bad-run", attrs={"error": "disk full", "error_type": "OSError"}, ts=now - 2
                ),
            ]
        )
    return db


def test_runs_json_lists_runs_with_state_progress_and_eta_from_history(store_url: str) -> None:
    seed(store_url, time.time())
    out = flowsight("runs", "--json", db=store_url)
    assert out.returncode == 0, out.stderr
    runs = {r["run_id"]: r for r in json.loads(out.stdout)["runs"]}
    assert set(runs) == {"old-1", "old-2", "live-run", "bad-run"}
    live = runs["live-run"]
    assert live["state"] == "running" and live["current_step"] == "extract" and not live["stalled"]
    assert live["eta"]["basis"] == "history"
    # extract's median is 10s (4s gone) and load's 20s: about 26s left
    assert 20 < live["eta"]["seconds"] < 30
    assert runs["bad-run"]["error"] == "OSError: disk full"


def test_runs_filters_by_workflow_and_state(store_url: str) -> None:
    seed(store_url, time.time())
    out = flowsight("runs", "--json", "-w", "etl", "-s", "completed", db=store_url)
    assert sorted(r["run_id"] for r in json.loads(out.stdout)["runs"]) == ["old-1", "old-2"]


def test_runs_pages_with_a_cursor(tmp_path: Path) -> None:
    db = seed(str(tmp_path / "f.db"), time.time())
    first = json.loads(flowsight("runs", "--json", "--limit", "3", db=db).stdout)
    assert len(first["runs"]) == 3 and first["cursor"]
    second = json.loads(flowsight("runs", "--json", "--limit", "3", "--cursor", first["cursor"], db=db).stdout)
    assert len(second["runs"]) == 1 and second["cursor"] is None
    ids = [r["run_id"] for r in first["runs"] + second["runs"]]
    assert len(set(ids)) == 4


def test_show_prints_steps_and_state_history_by_unique_prefix(tmp_path: Path) -> None:
    db = seed(str(tmp_path / "f.db"), time.time())
    out = flowsight("show", "old-1", "--json", db=db)
    detail = json.loads(out.stdout)
    assert [s["step"] for s in detail["steps"]] == ["extract", "load"]
    assert [s["duration_seconds"] for s in detail["steps"]] == [10.0, 20.0]
    assert [(t["old_state"], t["new_state"]) for t in detail["transitions"]] == [
        ("pending", "running"),
        ("running", "completed"),
    ]
    text = flowsight("show", "bad", db=db)
    assert text.returncode == 0 and "disk full" in text.stdout and "state history" in text.stdout


def test_show_refuses_an_unknown_or_ambiguous_run_with_a_clear_message(tmp_path: Path) -> None:
    db = seed(str(tmp_path / "f.db"), time.time())
    unknown = flowsight("show", "nope", db=db)
    assert unknown.returncode == 1 and "no run 'nope'" in unknown.stderr  # not there: 1, as grep
    ambiguous = flowsight("show", "old", db=db)
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "--since", "soon"], "'soon' is not a duration"),
        (["runs", "--state", "sleeping"], "invalid choice: 'sleeping'"),
        (["watch", "--interval", "fast"], "'fast' is not a duration"),
    ],
)
def test_bad_arguments_are_refused_naming_what_is_wrong(tmp_path: Path, args: list[str], message: str) -> None:
    out = flowsight(*args, db=str(tmp_path / "f.db"))
    assert out.returncode == 2 and message in out.stderr


def test_an_unknown_store_scheme_is_refused(tmp_path: Path) -> None:
    out = flowsight("runs", db="mysql://localhost/x")
    assert out.returncode == 2 and "unknown scheme 'mysql'" in out.stderr


def test_watch_redraws_and_shows_a_run_that_appears_while_it_watches(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    open_store(db).close()
    proc = subprocess.Popen(
        [*FLOWSIGHT, "--db", db, "watch", "--for", "5s", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # its 5 s start once it has the store open, however long its start took on a busy machine
    deadline = time.monotonic() + 60
    while not has_open(proc.pid, db):
        assert proc.poll() is None and time.monotonic() < deadline, "watch did not open the store"
        time.sleep(0.02)
    with open_store(db) as store:
        store.runs.write_events([make_event("started", "arrives-later", "late-run", ts=time.time())])
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # timed out: not left running past the test
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "arrives-later" in out


def test_watch_into_a_pipe_prints_each_change_as_it_comes_not_only_at_its_end(tmp_path: Path) -> None:
    """``watch > file`` wrote nothing until it ended, and nothing at all when killed."""
    import queue
    import threading

    db = str(tmp_path / "f.db")
    open_store(db).close()
    proc = subprocess.Popen(
        [*FLOWSIGHT, "--db", db, "watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not has_open(proc.pid, db):
            assert proc.poll() is None and time.monotonic() < deadline, "watch did not open the store"
            time.sleep(0.02)
        with open_store(db) as store:
            store.runs.write_events([make_event("started", "arrives-later", "late-run", ts=time.time())])
        seen = ""
        while "arrives-later" not in seen:
            seen += lines.get(timeout=60)  # the table with the new run, while watch still runs
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=30)  # reads to the end of the pipe
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def has_open(pid: int, path: str) -> bool:
    """Whether process ``pid`` has the file ``path`` open."""
    want = os.path.realpath(path)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def test_demo_runs_real_workflows_and_flags_the_stalled_one(store_url: str) -> None:
    out = flowsight("demo", "--no-live", db=store_url, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    runs = json.loads(flowsight("runs", "--json", db=store_url).stdout)["runs"]
    by_workflow: dict[str, list[dict[str, object]]] = {}
    for r in runs:
        by_workflow.setdefault(str(r["workflow"]), []).append(r)
    assert [r["state"] for r in by_workflow["nightly-etl"]] == ["completed"] * 3
    assert by_workflow["ml-training"][0]["state"] == "completed"
    flaky = by_workflow["flaky-report"][0]
    assert flaky["state"] == "failed" and flaky["retries"] == 1 and "region_total" in str(flaky["error"])
    stuck = by_workflow["partner-sync"][0]
    assert stuck["state"] == "running" and stuck["stalled"] is True
    invoice = by_workflow["invoice-batch"][0]
    detail = json.loads(flowsight("show", str(invoice["run_id"]), "--json", db=store_url).stdout)
    assert [t["new_state"] for t in detail["transitions"]] == ["running", "suspended", "running", "completed"]
    assert detail["transitions"][1]["reason"] == "waiting for finance approval"


def test_prune_deletes_old_events(tmp_path: Path) -> None:
    db = seed(str(tmp_path / "f.db"), time.time())
    out = flowsight("prune", "--older-than", "10m", db=db)
    assert out.returncode == 0 and "pruned 12 events" in out.stdout
    runs = json.loads(flowsight("runs", "--json", db=db).stdout)["runs"]
    assert {r["run_id"] for r in runs} == {"live-run", "bad-run"}


def test_the_environment_variable_chooses_the_store(tmp_path: Path) -> None:
    db = seed(str(tmp_path / "env.db"), time.time())
    out = subprocess.run(
        [*FLOWSIGHT, "runs", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "FLOWSIGHT_DATABASE_URL": db},
        cwd=tmp_path,
        timeout=60,
    )
    assert len(json.loads(out.stdout)["runs"]) == 4


def test_show_prints_the_traceback_of_the_failed_step(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    with open_store(db) as store:
        store.runs.write_events(
            [
                make_event("started", "etl", "tb-run", ts=100.0),
                make_event("step_started", "etl", "tb-run", "load", ts=101.0),
                make_event(
                    "step_failed",
                    "etl",
                    "tb-run",
                    "load",
                    ts=102.0,
                    attrs={
                        "error": "boom",
                        "error_type": "ValueError",
                        "traceback": 'Traceback (most recent call last):\n  File "x.py", line 3\nValueError: boom\n',
                    },
                ),
            ]
        )
    out = flowsight("show", "tb-run", db=db)
    assert "traceback of step 'load'" in out.stdout and 'File "x.py", line 3' in out.stdout
    detail = json.loads(flowsight("show", "tb-run", "--json", db=db).stdout)
    assert detail["steps"][0]["traceback"].endswith("ValueError: boom\n")


def test_the_next_page_hint_keeps_the_filters(tmp_path: Path) -> None:
    db = seed(str(tmp_path / "f.db"), time.time())
    out = flowsight("runs", "-w", "etl", "--limit", "1", db=db)
    hint = [line for line in out.stdout.splitlines() if line.startswith("more:")][0]
    assert "-w etl" in hint and "--limit 1" in hint and "--cursor" in hint


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "--limit", "0"], "must be at least 1"),
        (["runs", "--cursor", "MTc5"], "is not a cursor"),
    ],
)
def test_edge_values_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    assert flowsight("init", db=str(tmp_path / "f.db")).returncode == 0
    out = flowsight(*args, db=str(tmp_path / "f.db"))
    assert out.returncode == 2 and message in out.stderr


def test_a_sqlite_url_with_two_slashes_is_refused_not_written_to_the_root(tmp_path: Path) -> None:
    out = flowsight("runs", db="sqlite://relative.db")
    assert out.returncode == 2 and "three slashes" in out.stderr
    assert not Path("/relative.db").exists()


def test_a_stalled_run_shows_no_eta(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    now = time.time()
    with open_store(db) as store:
        store.runs.write_events(
            [
                make_event("started", "w", "quiet", attrs={"total_steps": 3, "stall_timeout": 5}, ts=now - 100),
                make_event("step_started", "w", "quiet", "a", ts=now - 99),
                make_event("step_completed", "w", "quiet", "a", ts=now - 98),
            ]
        )
    run = json.loads(flowsight("runs", "--json", db=db).stdout)["runs"][0]
    assert run["stalled"] is True and run["eta"] is None
    shown = flowsight("show", "quiet", db=db).stdout
    assert "(stall bound 5.0s: the run's stall_timeout)" in shown, shown  # where the bound came from, in words


def at_width(columns: int, *args: str, db: str) -> subprocess.CompletedProcess[str]:
    """``flowsight --db DB ARGS`` printing to a pipe as wide as a terminal of ``columns``."""
    return subprocess.run(
        [*FLOWSIGHT, "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def seed_ulid_runs(db: str, now: float) -> list[str]:
    """Four runs with real (time-sortable, so alike at the start) ids, one failed with a long message."""
    from flowsight.model.runs.ids import new_id

    ids = []
    with open_store(db) as store:
        for i in range(4):
            rid = new_id()
            ids.append(rid)
            store.runs.write_events(
                [
                    make_event("started", "nightly-etl-warehouse", rid, attrs={"total_steps": 4}, ts=now - 100 + i),
                    make_event("step_started", "nightly-etl-warehouse", rid, "transform-orders", ts=now - 99 + i),
                ]
            )
        store.runs.write_events(
            [
                make_event(
                    "failed",
                    "nightly-etl-warehouse",
                    ids[2],
                    ts=now - 90,
                    attrs={
                        "error": "connection refused while loading the orders table into the warehouse",
                        "error_type": "ConnectionError",
                    },
                )
            ]
        )
    return ids


def test_the_runs_table_fits_80_columns_with_short_unique_ids_and_the_whole_message(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    ids = seed_ulid_runs(db, time.time())
    out = at_width(80, "runs", db=db)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), out.stdout
    assert "…" not in out.stdout.split("\n", 1)[0]  # no header collapsed to 'w…'
    shown = [line.split()[0] for line in lines if line[:2] == ids[0][:2]]
    assert len(shown) == 4 and len(set(shown)) == 4  # one each, unique among the rows
    # ids made in one millisecond by one process differ only at their end: head…tail
    for short in shown:
        head, _, tail = short.partition("…")
        assert 8 <= len(short) <= 13 and len([i for i in ids if i.startswith(head) and i.endswith(tail)]) == 1
    assert "nightly-etl" in out.stdout and "failed" in out.stdout
    # the message folds at words: every word of it is there whole
    words = " ".join(line[40:] for line in lines).split()
    for word in "ConnectionError: connection refused while loading the orders table into the warehouse".split():
        assert word in words, out.stdout
    # and the short id is what `show` takes
    failed_row = next(line for line in lines if "failed" in line)
    assert at_width(80, "show", failed_row.split()[0], db=db).returncode == 0


def test_the_runs_table_at_160_columns_keeps_whole_ids_and_the_start_time(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    ids = seed_ulid_runs(db, time.time())
    out = at_width(160, "runs", db=db)
    assert out.returncode == 0, out.stderr
    assert all(len(line) <= 160 for line in out.stdout.splitlines())
    assert all(rid in out.stdout for rid in ids) and "started" in out.stdout
    assert "nightly-etl-warehouse" in out.stdout and "ConnectionError: connection refused" in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["runs"],
        ["show", "x"],
        ["watch", "--for", "0.1s"],
        ["faults"],
        ["perf"],
        ["alerts"],
        ["silence", "ls"],
        ["token", "ls"],
        ["logs", "x"],
        ["prune", "--older-than", "1d"],
    ],
)
def test_a_command_that_reads_never_creates_a_mistyped_store(tmp_path: Path, args: list[str]) -> None:
    db = str(tmp_path / "flowsigth.db")
    out = flowsight(*args, db=db)
    assert out.returncode == 2 and f"no flowsight store at {db}" in out.stderr, out.stderr
    assert "flowsight --db" in out.stderr and "init" in out.stderr  # says how to make one
    assert not Path(db).exists() and list(tmp_path.iterdir()) == []


def test_a_command_that_reads_never_creates_tables_in_postgresql(pg_url: str) -> None:
    import psycopg

    out = flowsight("runs", db=pg_url)
    assert out.returncode == 2 and "no flowsight store at" in out.stderr
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()
    assert tables == (0,)
    made = flowsight("init", db=pg_url)
    assert made.returncode == 0 and "schema version" in made.stdout
    empty = flowsight("runs", db=pg_url)
    assert empty.returncode == 0 and "no runs yet in postgresql store" in empty.stdout


def test_empty_answers_name_the_store_they_read(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    assert flowsight("init", db=db).returncode == 0
    out = flowsight("runs", db=db)
    assert out.returncode == 0 and f"no runs yet in sqlite store {db}" in " ".join(out.stdout.split())
    faults = flowsight("faults", db=db)
    assert faults.returncode == 0 and f"in sqlite store {db}" in " ".join(faults.stdout.split())


def test_an_older_store_is_not_migrated_by_a_command_that_reads(tmp_path: Path) -> None:
    import sqlite3

    db = str(tmp_path / "f.db")
    assert flowsight("init", db=db).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)")
    out = flowsight("runs", db=db)
    assert out.returncode == 2 and "made by an older flowsight" in out.stderr
    assert flowsight("init", db=db).returncode == 0 and flowsight("runs", db=db).returncode == 0


def test_db_is_taken_after_the_command_too_and_version_is_printed(tmp_path: Path) -> None:
    db = seed(str(tmp_path / "f.db"), time.time())
    out = subprocess.run([*FLOWSIGHT, "runs", "--json", "--db", db], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {r["run_id"] for r in json.loads(out.stdout)["runs"]} == {"old-1", "old-2", "live-run", "bad-run"}
    nested = subprocess.run([*FLOWSIGHT, "silence", "ls", "--db", db], capture_output=True, text=True, timeout=120)
    assert nested.returncode == 0, nested.stderr
    version = subprocess.run([*FLOWSIGHT, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("flowsight ")


@pytest.mark.parametrize("args", [["faults", "--run", "nosuch"], ["perf", "run:nosuch"], ["show", "nosuch"]])
def test_a_run_that_does_not_exist_is_said_with_exit_1(tmp_path: Path, args: list[str]) -> None:
    db = seed(str(tmp_path / "f.db"), time.time())
    out = flowsight(*args, db=db)
    assert out.returncode == 1 and "no run 'nosuch'" in out.stderr and db in out.stderr, out
