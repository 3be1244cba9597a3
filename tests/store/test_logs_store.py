"""Log entries in the store, on both backends: idempotent saves, every
filter, cursors both ways, templates, readers of what others wrote,
retention, NUL and odd unicode.

Every timestamp is given, so nothing here reads the clock.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import pytest

from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.store import SqlStore, open_store
from flowsight.server.views import log_out
from flowsight.store.logs import LogRecord, StoredLog
from flowsight.store.migrations import LATEST

L = LogLevel


def rec(
    id: str,
    ts: float,
    message: str = "hello",
    level: LogLevel = L.INFO,
    *,
    run_id: str | None = "r1",
    workflow: str | None = "etl",
    step: str | None = None,
    source: str = "test",
    fields: dict[str, Any] | None = None,
    template_id: str | None = None,
) -> LogRecord:
    return LogRecord(id, LogEntry(ts, level, message, source, workflow, run_id, step, fields or {}), template_id)


def ids(rows: list[StoredLog]) -> list[str]:
    return [r.id for r in rows]


# ---- saving ------------------------------------------------------------------
def test_a_batch_saved_twice_is_stored_once(store: SqlStore) -> None:
    batch = [rec("a", 1.0), rec("b", 2.0), rec("c", 3.0)]
    assert store.logs.save_logs(batch) == [True, True, True]
    assert store.logs.save_logs(batch) == [False, False, False]
    assert store.logs.count_logs() == 3


def test_an_id_twice_in_one_batch_is_stored_once_and_the_rest_still_goes_in(store: SqlStore) -> None:
    store.logs.save_logs([rec("old", 1.0)])
    out = store.logs.save_logs([rec("x", 2.0), rec("old", 2.5), rec("x", 3.0, "again"), rec("y", 4.0)])
    assert out == [True, False, False, True]
    assert ids(store.logs.query_logs(limit=10)) == ["old", "x", "y"]
    assert store.logs.query_logs(run_id="r1", text="again") == []  # the first of the two with one id is kept


def test_write_logs_gives_each_new_entry_its_seq_in_order(store: SqlStore) -> None:
    first = store.logs.write_logs([rec("a", 1.0), rec("b", 2.0)])
    again = store.logs.write_logs([rec("b", 2.0), rec("c", 3.0)])
    assert [s is not None for s in again] == [False, True]
    seqs = [s.seq for s in first if s is not None] + [again[1].seq]  # type: ignore[union-attr]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert [(r.seq, r.id) for r in store.logs.query_logs()] == list(zip(seqs, ["a", "b", "c"]))
    assert again[1] is not None and again[1].entry.message == "hello"


def test_an_empty_batch_is_nothing(store: SqlStore) -> None:
    assert store.logs.save_logs([]) == [] and store.logs.count_logs() == 0


def test_an_entry_comes_back_as_it_was_saved(store: SqlStore) -> None:
    fields = {"pid": 42, "ratio": 0.25, "ok": True, "none": None, "name": "worker-1", "big": 2**53}
    store.logs.save_logs(
        [
            rec(
                "a",
                1234.5678,
                "line one\n  line two",
                L.FATAL,
                step="load",
                source="/var/log/x.log",
                fields=fields,
                template_id="t-1",
            )
        ]
    )
    (got,) = store.logs.query_logs()
    assert got.record == rec(
        "a",
        1234.5678,
        "line one\n  line two",
        L.FATAL,
        step="load",
        source="/var/log/x.log",
        fields=fields,
        template_id="t-1",
    )
    assert msgspec.to_builtins(log_out(got)) == {  # as GET /api/v1/logs and flowsight logs --json show it
        "seq": got.seq,
        "id": "a",
        "ts": 1234.5678,
        "level": "fatal",
        "message": "line one\n  line two",
        "source": "/var/log/x.log",
        "workflow": "etl",
        "run_id": "r1",
        "step": "load",
        "template_id": "t-1",
        "fields": fields,
    }


def test_an_entry_of_no_run_is_kept(store: SqlStore) -> None:
    store.logs.save_logs([rec("a", 1.0, run_id=None, workflow=None)])
    (got,) = store.logs.query_logs()
    assert (got.entry.run_id, got.entry.workflow, got.entry.step) == (None, None, None)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("a\x00b", "a\ufffdb"),  # PostgreSQL text holds no NUL: replaced on both stores alike
        ("bad \udcff byte", "bad \ufffd byte"),  # a lone surrogate (surrogateescape) no encoding takes
        ("emoji 😀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "emoji 😀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
        (
            "right-to-left \u202eevil\u202c, zero\u200bwidth, e\u0301",
            "right-to-left \u202eevil\u202c, zero\u200bwidth, e\u0301",
        ),
        ("tab\tcr\rbell\x07", "tab\tcr\rbell\x07"),
        ("", ""),
    ],
)
def test_odd_text_is_stored_and_never_fails_the_batch(store: SqlStore, given: str, kept: str) -> None:
    out = store.logs.write_logs(
        [
            rec("good", 1.0),
            rec("odd", 2.0, given, run_id=f"run-{given}", step=given, source=given, fields={given or "k": given}),
        ]
    )
    assert [s is not None for s in out] == [True, True]
    got = store.logs.query_logs(after_seq=out[0].seq)[0]  # type: ignore[union-attr]
    assert (got.entry.message, got.entry.run_id, got.entry.step, got.entry.source) == (kept, f"run-{kept}", kept, kept)
    assert out[1] is not None and out[1].entry.message == kept  # what the hook is handed is what is stored
    if "\udcff" not in given:
        assert dict(got.entry.fields) == {given or "k": given}  # fields are JSON: kept exactly, NUL too
    assert ids(store.logs.query_logs(run_id=f"run-{given}")) == ["odd"]  # looked up as it was given


# ---- queries -------------------------------------------------------------------
@pytest.fixture
def filled(store: SqlStore) -> SqlStore:
    store.logs.save_logs(
        [
            rec("e1", 10.0, "starting extract", L.INFO, step="extract"),
            rec("e2", 11.0, "Disk 95% full", L.WARN, step="extract"),
            rec("e3", 12.0, "row_count=10", L.DEBUG, step="load"),
            rec("e4", 13.0, "Connection REFUSED by db", L.ERROR, step="load", template_id="conn"),
            rec("e5", 14.0, "connection refused by db", L.FATAL, step="load", template_id="conn"),
            rec("e6", 15.0, "other run", L.ERROR, run_id="r2", workflow="report"),
            rec("e7", 16.0, "from a file", L.TRACE, run_id=None, workflow=None),
            rec("e8", 17.0, "rowXcount", L.INFO, step="load"),
        ]
    )
    return store


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"]),
        ({"run_id": "r1"}, ["e1", "e2", "e3", "e4", "e5", "e8"]),
        ({"run_id": "r2"}, ["e6"]),
        ({"run_id": "nope"}, []),
        ({"workflow": "report"}, ["e6"]),
        ({"run_id": "r1", "step": "load"}, ["e3", "e4", "e5", "e8"]),
        ({"min_level": L.WARN}, ["e2", "e4", "e5", "e6"]),
        ({"min_level": L.ERROR, "run_id": "r1"}, ["e4", "e5"]),
        ({"min_level": L.TRACE}, ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"]),
        ({"min_level": L.FATAL}, ["e5"]),
        ({"template_id": "conn"}, ["e4", "e5"]),
        ({"text": "connection refused"}, ["e4", "e5"]),  # any case
        ({"text": "REFUSED BY"}, ["e4", "e5"]),
        ({"text": "95%"}, ["e2"]),  # % matches itself ...
        ({"text": "%"}, ["e2"]),
        ({"text": "row_count"}, ["e3"]),  # ... and so does _ (not "rowXcount")
        ({"text": "nothing like it"}, []),
        ({"since": 12.0, "until": 14.0}, ["e3", "e4"]),
        ({"since": 16.5}, ["e8"]),
        ({"after_seq": 0, "limit": 2}, ["e1", "e2"]),
        ({"newest_first": True, "limit": 3}, ["e8", "e7", "e6"]),
        ({"run_id": "r1", "newest_first": True, "min_level": L.ERROR}, ["e5", "e4"]),
    ],
)
def test_each_filter_selects_what_it_says(filled: SqlStore, filters: dict[str, Any], expected: list[str]) -> None:
    assert ids(filled.logs.query_logs(**filters)) == expected


def test_cursors_page_forward_and_backward_without_gaps_or_repeats(filled: SqlStore) -> None:
    forward, after = [], 0
    while True:
        page = filled.logs.query_logs(run_id="r1", after_seq=after, limit=2)
        if not page:
            break
        forward += page
        after = page[-1].seq
    assert ids(forward) == ["e1", "e2", "e3", "e4", "e5", "e8"]
    backward = filled.logs.query_logs(run_id="r1", newest_first=True, limit=2)
    while True:
        page = filled.logs.query_logs(run_id="r1", before_seq=backward[-1].seq, limit=2)
        if not page:
            break
        backward += page
    assert ids(backward) == ["e8", "e5", "e4", "e3", "e2", "e1"]
    seqs = [s.seq for s in forward]
    between = filled.logs.query_logs(after_seq=seqs[0], before_seq=seqs[3])
    assert ids(between) == ["e2", "e3"]
    assert ids(filled.logs.query_logs(after_seq=seqs[0], before_seq=seqs[3], newest_first=True)) == ["e3", "e2"]


def test_templates_set_later_are_found_by_template(filled: SqlStore) -> None:
    rows = filled.logs.query_logs(run_id="r1", step="extract")
    filled.logs.set_log_templates([(rows[0].seq, "start"), (rows[1].seq, "disk"), (10**12, "gone")])
    assert ids(filled.logs.query_logs(template_id="disk")) == ["e2"]
    assert [r.template_id for r in filled.logs.query_logs(run_id="r1", step="extract")] == ["start", "disk"]
    filled.logs.set_log_templates([])


def test_logs_after_reads_on_from_a_seq_in_store_order(filled: SqlStore) -> None:
    everything = filled.logs.query_logs()
    assert ids(filled.logs.logs_after(0, limit=3)) == ["e1", "e2", "e3"]
    assert ids(filled.logs.logs_after(everything[5].seq)) == ["e7", "e8"]
    assert filled.logs.logs_after(everything[-1].seq) == []
    assert filled.logs.last_log_seq() == everything[-1].seq


def test_a_reader_following_concurrent_writers_misses_nothing_and_sees_nothing_twice(store_url: str) -> None:
    """On PostgreSQL writers of logs take turns, so seqs commit in order and a
    reader going forward by seq never passes one that commits later."""
    writers, batches, size = 4, 25, 20
    done = threading.Event()
    seen: list[StoredLog] = []

    def write(w: int) -> None:
        with open_store(store_url) as s:
            for b in range(batches):
                s.logs.save_logs([rec(f"w{w}-{b}-{i}", float(b), run_id=f"run-{w}") for i in range(size)])

    def read() -> None:
        with open_store(store_url) as s:
            last = 0
            while True:
                finished = done.is_set()
                page = s.logs.logs_after(last, limit=500)
                seen.extend(page)
                if page:
                    last = page[-1].seq
                elif finished:
                    return

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join(60)
    assert len(seen) == writers * batches * size == len({s.id for s in seen})
    assert [s.seq for s in seen] == sorted(s.seq for s in seen)


def test_concurrent_retries_of_one_batch_count_each_entry_once(store_url: str) -> None:
    batch = [rec(f"id-{i}", float(i)) for i in range(300)]
    results: list[list[bool]] = []

    def send() -> None:
        with open_store(store_url) as s:
            results.append(s.logs.save_logs(batch))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [sum(col) for col in zip(*results)] == [1] * len(batch)
    with open_store(store_url) as s:
        assert s.logs.count_logs() == len(batch)


# ---- retention -------------------------------------------------------------------
def test_find_log_runs_lists_the_run_ids_of_the_logs_that_start_with_a_prefix(store: SqlStore) -> None:
    runs = ["nightly-42", "nightly-43", "nightly-5", "nightly_x", "night%", "nightlyé", "other", "Nightly-1"]
    store.logs.save_logs(
        [rec(f"{run}-{i}", 1.0, run_id=run) for run in runs for i in range(50)] + [rec("none", 1.0, run_id=None)]
    )
    assert store.logs.find_log_runs("nightly-4") == ["nightly-42", "nightly-43"]
    assert store.logs.find_log_runs("nightly") == ["nightly-42", "nightly-43", "nightly-5", "nightly_x", "nightlyé"]
    assert store.logs.find_log_runs("nightly", limit=2) == ["nightly-42", "nightly-43"]
    assert store.logs.find_log_runs("night%") == ["night%"]  # no wildcard: % and _ are themselves
    assert store.logs.find_log_runs("nightly_") == ["nightly_x"]
    assert store.logs.find_log_runs("nightlyé") == ["nightlyé"]
    assert store.logs.find_log_runs("nightly-42") == ["nightly-42"]
    assert store.logs.find_log_runs("nope") == [] and store.logs.find_log_runs("nightly-42x") == []


def test_purge_deletes_what_is_older_in_chunks_and_seqs_are_never_reused(store: SqlStore) -> None:
    store.logs.save_logs([rec(f"old-{i}", float(i)) for i in range(25)] + [rec("new", 1000.0)])
    top = store.logs.last_log_seq()
    assert store.logs.purge_logs(20.0, chunk=7) == 20
    assert [r.entry.timestamp for r in store.logs.query_logs()] == [20.0, 21.0, 22.0, 23.0, 24.0, 1000.0]
    assert store.logs.purge_logs(2000.0) == 6 and store.logs.count_logs() == 0
    assert store.logs.purge_logs(2000.0) == 0
    (again,) = store.logs.write_logs([rec("after", 3000.0)])
    assert again is not None and again.seq > top  # a reader's cursor stays good after a purge


def test_purge_stops_between_chunks_when_asked(store: SqlStore) -> None:
    store.logs.save_logs([rec(f"old-{i}", float(i)) for i in range(10)])
    stop = threading.Event()
    stop.set()
    assert store.logs.purge_logs(100.0, chunk=3, stop=stop) == 0
    assert store.logs.count_logs() == 10


def test_the_logs_migration_is_applied(store: SqlStore) -> None:
    assert store.schema_version() == LATEST >= 4
