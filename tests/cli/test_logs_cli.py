"""``flowsight logs RUN``, run as a user runs it: a real process over a real
store (SQLite file and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from flowsight.model.runs.events import make_event
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.store import open_store
from flowsight.store.logs import LogRecord
from tests.cli.test_cli import FLOWSIGHT, flowsight

L = LogLevel


def seed(db: str, now: float) -> None:
    """Run 'nightly-7f3a' with events and logs; 'other-run' with logs only; 'nightly-8000' to make 'nightly' ambiguous."""
    with open_store(db) as store:
        store.runs.write_events(
            [
                make_event("started", "etl", "nightly-7f3a", ts=now - 100),
                make_event("started", "etl", "nightly-8000", ts=now - 90),
            ]
        )
        entries = [  # in arrival order, which is the order they are shown in
            ("a5", now - 3 * 3600, L.INFO, "hours ago", None, "nightly-7f3a"),
            ("a1", now - 50, L.INFO, "extract started", "extract", "nightly-7f3a"),
            ("a2", now - 40, L.WARN, "disk 91% full", "extract", "nightly-7f3a"),
            (
                "a3",
                now - 30,
                L.ERROR,
                'Traceback (most recent call last):\n  File "x.py"\nOSError: gone',
                "load",
                "nightly-7f3a",
            ),
            ("a4", now - 20, L.DEBUG, "retry [1/3] in 2s", "load", "nightly-7f3a"),
            ("b1", now - 10, L.FATAL, "not this run", None, "other-run"),
        ]
        store.logs.save_logs(
            [
                LogRecord(
                    i, LogEntry(ts, lvl, msg, "test", "etl", run, step, {"n": 1}), "tpl-disk" if i == "a2" else None
                )
                for i, ts, lvl, msg, step, run in entries
            ]
        )


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_a_runs_logs_print_time_level_step_and_message_with_later_lines_indented(store_url: str) -> None:
    seed(store_url, time.time())
    out = flowsight("logs", "nightly-7f3a", db=store_url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "hours ago" in lines[0]  # oldest first
    first = next(line for line in lines if "extract started" in line)
    assert " INFO  [extract] extract started" in first and first[2] == ":" and first[8] == "."
    tb = lines.index(next(line for line in lines if "Traceback" in line))
    assert " ERROR [load] Traceback" in lines[tb]
    column = lines[tb].index("Traceback")
    assert lines[tb + 1] == " " * column + '  File "x.py"' and lines[tb + 2] == " " * column + "OSError: gone"
    assert "retry [1/3] in 2s" in out.stdout  # brackets in a message are text, not markup
    assert "not this run" not in out.stdout


def test_json_prints_one_object_per_entry(store_url: str) -> None:
    seed(store_url, time.time())
    out = flowsight("logs", "nightly-7f3a", "--json", db=store_url)
    rows = json_lines(out.stdout)
    assert [r["id"] for r in rows] == ["a5", "a1", "a2", "a3", "a4"]
    assert rows[2] == {
        **rows[2],
        "level": "warn",
        "step": "extract",
        "template_id": "tpl-disk",
        "fields": {"n": 1},
        "run_id": "nightly-7f3a",
        "workflow": "etl",
        "source": "test",
    }
    assert rows[0]["seq"] < rows[1]["seq"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--level", "warn"], ["a2", "a3"]),
        (["--level", "ERR"], ["a3"]),
        (["--step", "load"], ["a3", "a4"]),
        (["--grep", "OSERROR"], ["a3"]),
        (["--grep", "91%"], ["a2"]),
        (["--template", "tpl-disk"], ["a2"]),
        (["--since", "1h"], ["a1", "a2", "a3", "a4"]),
        (["--limit", "2"], ["a3", "a4"]),  # the last two, oldest first
        (["--level", "info", "--limit", "1"], ["a3"]),
        (["nightly-7"], ["a5", "a1", "a2", "a3", "a4"]),  # a unique prefix of a stored run
        (["other-r"], ["b1"]),  # ... or of a run id that only the logs have
        (["--since", "SINCE_RFC3339"], ["a1", "a2", "a3", "a4"]),
        (["--since", "SINCE_EPOCH"], ["a1", "a2", "a3", "a4"]),
    ],
)
def test_filters_select_what_they_say(tmp_path: Any, args: list[str], expected: list[str]) -> None:
    db = str(tmp_path / "f.db")
    now = time.time()
    seed(db, now)
    an_hour_ago = now - 3600
    args = [
        {
            "SINCE_RFC3339": datetime.fromtimestamp(an_hour_ago, timezone.utc).isoformat(),
            "SINCE_EPOCH": f"{an_hour_ago:.3f}",
        }.get(a, a)
        for a in args
    ]
    run = [] if args and not args[0].startswith("-") else ["nightly-7f3a"]
    out = flowsight("logs", *run, *args, "--json", db=db)
    assert out.returncode == 0, out.stderr
    assert [r["id"] for r in json_lines(out.stdout)] == expected


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nightly"], "ambiguous: it could be any of"),
        (["no-such-run"], "no run 'no-such-run' and no log entries of one"),
        (["nightly-7f3a", "--level", "loud"], "'loud' is not a level"),
        (["nightly-7f3a", "--since", "soon"], "'soon' is not a time; write a duration ago (2h, 30m, 7d), an RFC 3339"),
        (["watch"], "nothing to watch"),
    ],
)
def test_bad_input_is_refused_with_exit_2_saying_what_was_wrong(tmp_path: Any, args: list[str], says: str) -> None:
    db = str(tmp_path / "f.db")
    seed(db, time.time())
    out = flowsight("logs", *args, db=db)
    assert out.returncode == 2, out
    assert says in out.stderr


def test_a_prefix_finds_runs_that_only_the_logs_have_and_lists_them_when_ambiguous(store_url: str) -> None:
    now = time.time()
    with open_store(store_url) as store:  # lines shipped with `logs watch --run ...`: no events of these runs
        store.logs.save_logs(
            [
                LogRecord(f"{run}-{i}", LogEntry(now, L.INFO, f"line {i} of {run}", "t", run_id=run))
                for run in ("nightly-42", "nightly-43", "weekly_1", "wee%kly")
                for i in range(3)
            ]
        )
        store.runs.write_events([make_event("started", "etl", "nightly-44", ts=now)])
    out = flowsight("logs", "nightly-42"[:9], db=store_url)
    assert out.returncode == 2
    assert "'nightly-4' is ambiguous: it could be any of" in out.stderr
    assert all(run in out.stderr for run in ("nightly-42", "nightly-43", "nightly-44"))
    for prefix, run in (("nightly-43", "nightly-43"), ("week", "weekly_1"), ("wee%", "wee%kly")):
        out = flowsight("logs", prefix, "--json", db=store_url)
        assert out.returncode == 0, out.stderr
        assert [r["message"] for r in json_lines(out.stdout)] == [f"line {i} of {run}" for i in range(3)]


def test_help_says_limit_shows_the_last_entries() -> None:
    out = subprocess.run([*FLOWSIGHT, "logs", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "only the LAST N entries (the newest, shown oldest first" in " ".join(out.stdout.split())


def test_a_run_named_like_a_subcommand_is_reached_after_double_dash(tmp_path: Any) -> None:
    db = str(tmp_path / "f.db")
    with open_store(db) as store:
        store.logs.save_logs(
            [LogRecord("w1", LogEntry(time.time(), L.INFO, "a run called watch", "t", run_id="watch"))]
        )
    out = flowsight("logs", "--", "watch", db=db)
    assert out.returncode == 0, out.stderr
    assert "a run called watch" in out.stdout


def test_a_run_without_logs_says_so(tmp_path: Any) -> None:
    db = str(tmp_path / "f.db")
    seed(db, time.time())
    out = flowsight("logs", "nightly-8000", db=db)
    assert out.returncode == 0 and "run nightly-8000 has no log entries" in out.stdout


def test_follow_prints_entries_written_after_it_started(store_url: str) -> None:
    now = time.time()
    seed(store_url, now)
    proc = subprocess.Popen(
        [
            *FLOWSIGHT,
            "--db",
            store_url,
            "logs",
            "nightly-7f3a",
            "--follow",
            "--json",
            "--interval",
            "0.1s",
            "--for",
            "20s",
            "--level",
            "warn",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = [json.loads(proc.stdout.readline())["id"] for _ in range(2)]
        assert first == ["a2", "a3"]
        with open_store(store_url) as store:
            store.logs.save_logs(
                [
                    LogRecord("n1", LogEntry(now, L.INFO, "too quiet", "t", run_id="nightly-7f3a")),
                    LogRecord("n2", LogEntry(now, L.ERROR, "new trouble", "t", run_id="nightly-7f3a")),
                    LogRecord("n3", LogEntry(now, L.ERROR, "elsewhere", "t", run_id="other-run")),
                ]
            )
        assert json.loads(proc.stdout.readline())["id"] == "n2"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
