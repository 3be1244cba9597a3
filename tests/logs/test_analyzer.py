"""The log analyzer: templates, counts per template and workflow over time, restarts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from flowsight.logs.analyzer import OVERFLOW, Analysis, LogAnalyzer, TemplateCount
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.logs.templates import TemplateMiner

LOGHUB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "loghub"
T0 = 1_717_243_200.0  # 2024-06-01 12:00:00 UTC, a whole minute


def entry(message: str, ts: float = T0, workflow: str | None = "etl") -> LogEntry:
    return LogEntry(ts, LogLevel.INFO, message, "test", workflow)


def test_same_shape_same_template_new_only_the_first_time() -> None:
    a = LogAnalyzer()
    first = a.analyze(entry("Received block blk_1 of size 67108864 from /10.251.42.84"))
    second = a.analyze(entry("Received block blk_-99 of size 3 from /10.0.0.1"))
    assert first.is_new and not second.is_new
    assert first.template_id == second.template_id
    assert second.template == "Received block <*> of size <*> from /<*>"
    assert isinstance(first, Analysis)


def test_counts_per_template_and_workflow_per_minute() -> None:
    a = LogAnalyzer()
    tid = a.analyze(entry("took 1 ms")).template_id
    a.analyze(entry("took 2 ms", T0 + 59))
    a.analyze(entry("took 3 ms", T0 + 60))
    a.analyze(entry("took 4 ms", T0 + 61, workflow="ml"))
    a.analyze(entry("took 5 ms", T0 + 62, workflow=None))
    other = a.analyze(entry("worker up", T0 + 30)).template_id
    assert a.counts(tid) == 5 and a.counts(other) == 1 and a.counts() == 6
    assert a.counts(tid, "etl") == 3 and a.counts(tid, "ml") == 1 and a.counts(tid, "") == 1
    assert a.series(tid, "etl") == [(T0, 2), (T0 + 60, 1)]
    assert a.series() == [(T0, 3), (T0 + 60, 3)]
    # bucket resolution: a bucket counts when it overlaps [since, until)
    assert a.counts(tid, since=T0 + 60) == 3
    assert a.counts(tid, until=T0 + 60) == 2
    assert a.counts(tid, since=T0 + 30, until=T0 + 61) == 5
    assert a.counts("no-such-id") == 0


def test_top_ranks_templates_by_count() -> None:
    a = LogAnalyzer()
    for i in range(3):
        a.analyze(entry(f"took {i} ms"))
    a.analyze(entry("worker up", T0 + 1))
    a.analyze(entry("worker up", T0 + 120, workflow="ml"))
    took = a.analyze(entry("took 9 ms", T0 + 120)).template_id
    assert [(t.template, t.count) for t in a.top(5)] == [("took <*> ms", 4), ("worker up", 2)]
    assert a.top(1, since=T0 + 120, workflow="ml")[0].template == "worker up"
    assert a.top(5, since=T0 + 120, workflow="etl") == [TemplateCount(took, "took <*> ms", 1)]


def test_counts_follow_a_template_that_was_generalised() -> None:
    a = LogAnalyzer()
    old = a.analyze(entry("Connection closed by alice")).template_id
    new = a.analyze(entry("Connection closed by bob", T0 + 60))
    assert new.template == "Connection closed by <*>" and new.template_id != old and not new.is_new
    assert a.resolve(old) == new.template_id
    assert a.counts(old) == a.counts(new.template_id) == 2
    assert a.series(new.template_id) == [(T0, 1), (T0 + 60, 1)]
    assert a.top(1) == [TemplateCount(new.template_id, "Connection closed by <*>", 2)]


def test_buckets_older_than_the_retention_are_dropped_and_not_filled() -> None:
    a = LogAnalyzer(bucket=60, retention=3600)
    tid = a.analyze(entry("tick 1")).template_id
    a.analyze(entry("tick 2", T0 + 3600))  # the first bucket is still within the hour before
    assert a.counts(tid) == 2
    a.analyze(entry("tick 3", T0 + 3660))
    assert a.counts(tid) == 2 and a.series(tid)[0][0] == T0 + 3600
    late = a.analyze(entry("tick 4", T0))  # older than the retention: templated, not counted
    assert late.template_id == tid and a.counts(tid) == 2
    a.analyze(entry("tick 5", T0 + 3600 - 59))  # out of order but within it: counted
    assert a.counts(tid) == 3


def test_a_line_from_the_future_counts_now() -> None:
    a = LogAnalyzer()
    tid = a.analyze(entry("clock ahead", T0 + 86400), now=T0).template_id
    assert a.series(tid) == [(T0, 1)]
    a.analyze(entry("no time", float("nan")))  # templated, not counted
    assert a.counts() == 1


def test_distinct_keys_per_bucket_are_bounded() -> None:
    a = LogAnalyzer(max_keys=3)
    for wf in "abcde":
        a.analyze(entry("hello", workflow=wf))
    tid = a.analyze(entry("hello", workflow="a")).template_id
    assert a.counts(tid) == 4  # a (twice), b, c
    assert a.counts(OVERFLOW) == 2  # d, e
    assert a.counts() == 6


def test_state_round_trips_through_json_with_ids_counts_and_newness() -> None:
    a = LogAnalyzer(bucket=30, retention=7200)
    msgs = ["Connection closed by alice", "Connection closed by bob", "took 3 ms", "disk /dev/sda1 full"]
    ids = [a.analyze(entry(m, T0 + 10 * i)).template_id for i, m in enumerate(msgs)]
    saved = json.loads(json.dumps(a.state()))
    b = LogAnalyzer.from_state(saved)
    assert (b.bucket, b.retention, b.max_keys) == (30.0, 7200.0, 5000)
    assert b.templates() == a.templates()
    for tid in ids:
        assert b.resolve(tid) == a.resolve(tid)
        assert b.counts(tid) == a.counts(tid)
    again = b.analyze(entry("took 8 ms", T0 + 100))
    assert not again.is_new and again.template_id == ids[2]  # seen before the restart: not new
    assert b.analyze(entry("a shape nobody saw", T0 + 100)).is_new
    assert b.counts(ids[0]) == 2 and b.counts(ids[2]) == 2
    assert b.state()["counts"] != a.state()["counts"]


@pytest.mark.parametrize("bad", [{}, {"version": 99}, {"version": 1, "miner": {}}, []])
def test_a_state_that_is_not_an_analyzers_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="start a new analyzer|version"):
        LogAnalyzer.from_state(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"bucket": 0}, "bucket"), ({"retention": 10}, "retention"), ({"max_keys": 0}, "max_keys")]
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LogAnalyzer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.skipif(not LOGHUB.is_dir(), reason="the Loghub samples are not here")
def test_on_the_loghub_samples_templates_are_the_miners_and_every_line_is_counted() -> None:
    for path in sorted(LOGHUB.glob("*/*_2k.log_structured.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            messages = [r["Content"] for r in csv.DictReader(f)]
        a, miner = LogAnalyzer(), TemplateMiner()
        for i, m in enumerate(messages):
            got = a.analyze(entry(m, T0 + i))
            want = miner.add(m)
            assert (got.template_id, got.is_new) == (want.template_id, want.is_new), path.name
        assert a.counts() == len(messages)
        assert sum(t.count for t in a.top(10_000)) == len(messages)
        assert {t.template_id for t in a.top(10_000)} == set(miner.templates())


def test_an_entry_of_several_lines_is_templated_by_its_first_line() -> None:
    analyzer = LogAnalyzer()

    def entry(message: str) -> LogEntry:
        return LogEntry(1000.0, LogLevel.ERROR, message, "x", None, None, None, {})

    one = analyzer.analyze(entry('job 1 failed\nTraceback (most recent call last):\n  File "a.py"\nValueError: 1'))
    two = analyzer.analyze(entry("job 2 failed\n" + "\n".join(f"row {i}" for i in range(500))))
    assert one.template_id == two.template_id and "row" not in two.template and "\n" not in two.template


def test_counts_of_evicted_templates_are_read_and_saved_as_other_of_their_workflow() -> None:
    cap = 50
    a = LogAnalyzer(TemplateMiner(max_templates=cap))
    lines = [
        f"{w} {v} handled request quickly"
        for w in ("amber", "birch", "cedar", "dune")
        for v in (
            "ember",
            "fjord",
            "grove",
            "heath",
            "inlet",
            "jade",
            "kelp",
            "lime",
            "moss",
            "nettle",
            "oak",
            "pine",
            "quartz",
            "reed",
            "sage",
            "thorn",
            "umber",
            "vale",
            "willow",
            "yew",
        )
    ]
    frequent = a.analyze(entry("heartbeat from worker 1 ok", workflow="beat")).template_id
    for i, line in enumerate(lines * 2):  # 80 shapes, at most 50 templates kept: many evicted, some twice
        a.analyze(entry(line, T0 + i % 60, workflow="etl"))
        a.analyze(entry(f"heartbeat from worker {i} ok", T0 + i % 60, workflow="beat"))
    total = 1 + 2 * len(lines) * 2
    assert a.counts() == total  # every line still counted: under its template, or as OVERFLOW
    top = a.top(1000)
    assert top[0] == TemplateCount(frequent, "heartbeat from worker <*> ok", 1 + 2 * len(lines))
    assert all(t.template for t in top if t.template_id != OVERFLOW)  # no template listed without its text
    other = a.counts(OVERFLOW, "etl")
    assert other > 0 and a.counts(OVERFLOW, "beat") == 0
    assert other + sum(t.count for t in top if t.template_id not in (OVERFLOW, frequent)) == 2 * len(lines)

    saved = json.loads(json.dumps(a.state()))
    kept = set(a.templates())
    assert {tid for _, tid, _, _ in saved["counts"]} <= kept | {OVERFLOW}  # nothing saved of an evicted template
    assert len(saved["counts"]) <= cap + 2  # one row per kept template, plus OVERFLOW of etl
    b = LogAnalyzer.from_state(saved)
    assert b.top(1000) == top and b.counts() == total
