"""The log monitor: collection from real files and streams into a real store,
exactly once across restarts and crashes; analysis of stored entries with
templates and rules."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from flowsight.collect import FileTail, ProcessOutput
from flowsight.logs.records import LogRecord
from flowsight.logs.analyzer import LogAnalyzer
from flowsight.logs.ruleset import make_rule
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.monitors.log import Feed, LogMonitor, line_id
from flowsight.collect.tail import RawLine
from flowsight.store import SqlStore, open_store
from tests.helpers import run


def _store_sink(store: SqlStore):  # type: ignore[no-untyped-def]
    async def save(records: list[LogRecord]) -> None:
        store.logs.save_logs(records)

    return save


async def _collect_once(tail: FileTail, store: SqlStore) -> int:
    monitor = LogMonitor([tail])
    stop = asyncio.Event()
    stop.set()
    await monitor.monitor_logs(_store_sink(store), stop=stop, drain=True)
    return monitor.collected


def _messages(store: SqlStore) -> list[str]:
    return [s.entry.message for s in store.logs.query_logs(limit=100_000)]


def test_lines_of_a_file_are_parsed_and_stored_with_the_feeds_run(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "fs.db"))
    log = tmp_path / "app.log"
    log.write_text("2024-05-01 10:00:00,123 - etl - WARNING - disk almost full\nplain words\n")
    tail = FileTail([str(log)], start="beginning", multiline=False)
    monitor = LogMonitor([Feed(tail, workflow="etl", run_id="r-1")])
    stop = asyncio.Event()
    stop.set()
    run(lambda: monitor.monitor_logs(_store_sink(store), stop=stop, drain=True))
    got = store.logs.query_logs(limit=10)
    assert [(s.entry.level, s.entry.message, s.entry.workflow, s.entry.run_id) for s in got] == [
        (LogLevel.WARN, "disk almost full", "etl", "r-1"),
        (LogLevel.INFO, "plain words", "etl", "r-1"),
    ]
    assert got[0].entry.timestamp == pytest.approx(1714557600.123)


def test_a_restarted_watcher_goes_on_where_it_was_and_repeats_nothing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "fs.db"))
    log, state = tmp_path / "app.log", tmp_path / "offsets.json"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert (
        run(lambda: _collect_once(FileTail([str(log)], state_path=state, start="beginning", multiline=False), store))
        == 100
    )
    with log.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(100, 150)))
    assert run(lambda: _collect_once(FileTail([str(log)], state_path=state, multiline=False), store)) == 50
    assert _messages(store) == [f"line {i}" for i in range(150)]


def test_lines_read_again_after_a_crash_before_the_offsets_were_saved_are_stored_once(tmp_path: Path) -> None:
    """The sink took the batch, then the watcher died before saving offsets:
    the lines are read again, with the same ids, and the store keeps them once."""
    store = open_store(str(tmp_path / "fs.db"))
    log, state = tmp_path / "app.log", tmp_path / "offsets.json"
    log.write_text("".join(f"line {i}\n" for i in range(20)))

    class Crash(Exception):
        pass

    async def store_then_die(records: list[LogRecord]) -> None:
        store.logs.save_logs(records)
        raise Crash

    async def first() -> None:
        tail = FileTail([str(log)], state_path=state, start="beginning", multiline=False)
        stop = asyncio.Event()
        stop.set()
        with pytest.raises(Crash):
            await LogMonitor([tail]).monitor_logs(store_then_die, stop=stop, drain=True)

    run(first)
    assert len(_messages(store)) == 20 and not state.exists()  # stored, but no offset saved
    assert (
        run(lambda: _collect_once(FileTail([str(log)], state_path=state, start="beginning", multiline=False), store))
        == 20
    )
    assert _messages(store) == [f"line {i}" for i in range(20)]


def test_the_same_text_at_the_same_offset_of_a_truncated_file_is_a_new_line() -> None:
    a = RawLine("/x.log", "starting", 0, "1:2:0")
    assert line_id(a, 0) == line_id(RawLine("/x.log", "starting", 0, "1:2:0"), 5)
    assert line_id(a, 0) != line_id(RawLine("/x.log", "starting", 0, "1:2:1"), 0)  # after a truncation
    assert line_id(RawLine("stdin", "x", 0), 1) != line_id(RawLine("stdin", "x", 0), 1)  # streams: always new


def test_a_programs_output_is_collected_until_it_ends(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "fs.db"))
    code = (
        "import sys\nprint('ERROR boom', flush=True)\n"
        "print('WARNING: careful', file=sys.stderr, flush=True)\nprint('INFO done')"
    )
    proc = ProcessOutput([sys.executable, "-c", code])
    monitor = LogMonitor([Feed(proc, workflow="job")])
    run(lambda: monitor.monitor_logs(_store_sink(store)))
    got = {(s.entry.level, s.entry.message, s.entry.source.rsplit(":", 1)[-1]) for s in store.logs.query_logs()}
    assert got == {
        (LogLevel.ERROR, "boom", "stdout"),
        (LogLevel.WARN, "careful", "stderr"),
        (LogLevel.INFO, "done", "stdout"),
    }
    assert proc.returncode == 0


def _entry(message: str, level: LogLevel = LogLevel.INFO, **kw: str) -> LogEntry:
    return LogEntry(1_700_000_000.0, level, message, "test", **kw)  # type: ignore[arg-type]


def test_stored_entries_without_a_template_are_analyzed_once_and_alerted_on(store: SqlStore) -> None:
    sent = []
    rules = [make_rule("match", "db-down", pattern=r"connection refused", severity="critical")]
    monitor = LogMonitor(
        log_analyzer=LogAnalyzer(), alert_rules=rules, send_alert=sent.append, clock=lambda: 1_700_000_100.0
    )
    store.logs.save_logs(
        [LogRecord(f"id{i}", _entry(f"user {i} logged in", workflow="web")) for i in range(5)]
        + [LogRecord("bad", _entry("db: connection refused", LogLevel.ERROR, workflow="web"))]
    )
    assert monitor.analyze_stored(store, limit=4) == 4
    assert monitor.analyze_stored(store) == 2
    assert monitor.analyze_stored(store) == 0
    stored = store.logs.query_logs(limit=10)
    assert len({s.template_id for s in stored[:5]}) == 1 and None not in {s.template_id for s in stored}
    [alert] = sent
    assert alert.labels["alertname"] == "db-down" and alert.source == "log"
    assert alert.labels["workflow"] == "web"


def test_analyze_log_is_the_specifications_single_entry_call() -> None:
    sent = []
    rules = [make_rule("new_template", "new-shape")]
    monitor = LogMonitor(log_analyzer=LogAnalyzer(), alert_rules=rules, send_alert=sent.append, clock=lambda: 100.0)
    assert monitor.analyze_log(_entry("disk 1 failed", LogLevel.ERROR)) == sent
    assert len(sent) == 1
    assert monitor.analyze_log(_entry("disk 2 failed", LogLevel.ERROR)) == []


def test_a_drained_watch_reads_a_file_bigger_than_one_read_and_its_last_partial_line(tmp_path: Path) -> None:
    """One pass of the tailer reads at most 8 MiB of a file: a watch that
    drains (``--once``) reads on until the end, then the last line without
    its newline."""
    store = open_store(str(tmp_path / "fs.db"))
    log = tmp_path / "big.log"
    body = "x" * 500
    log.write_text("".join(f"INFO {i} {body}\n" for i in range(20_000)) + "INFO the end")  # ~10 MiB
    tail = FileTail([str(log)], start="beginning", multiline=False)
    assert run(lambda: _collect_once(tail, store)) == 20_001
    assert store.logs.count_logs() == 20_001
    assert store.logs.query_logs(newest_first=True, limit=1)[0].entry.message == "the end"
