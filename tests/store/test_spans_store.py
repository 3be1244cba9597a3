"""OpenTelemetry spans' runs and steps, and the log records waiting for
theirs (``store.spans``), on both backends: a span linked first places a
record at once; a record parked first is settled when its span comes, its
trace's run given meanwhile; a record in no span takes its trace's run and
leaves the parking; a second link of a span keeps the first; retention
forgets both."""

from __future__ import annotations

from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.store import SqlStore
from flowsight.store.logs import LogRecord
from flowsight.store.spans import Link, Place

T1, T2 = "a" * 32, "b" * 32


def _log(store: SqlStore, log_id: str) -> tuple[str | None, str | None, str | None]:
    rows = [s for s in store.logs.query_logs(limit=100) if s.id == log_id]
    e = rows[0].entry
    return e.workflow, e.run_id, e.step


def _record(log_id: str, ts: float = 100.0) -> LogRecord:
    return LogRecord(log_id, LogEntry(ts, LogLevel.INFO, "m", "otlp", None, None, None, {}))


def test_a_linked_span_places_its_records_and_its_trace_gives_the_run_to_others(store: SqlStore) -> None:
    assert store.spans.resolve([]) == []
    store.spans.link_spans(
        [Link(T1, "s-run", "etl", "r1", None, 100.0), Link(T1, "s-load", "etl", "r1", "load", 101.0)]
    )
    # a second link of the same span (a batch sent again, another rule) keeps the first
    store.spans.link_spans([Link(T1, "s-load", "other", "r9", "x", 102.0)])
    assert store.spans.resolve([(T1, "s-load"), (T1, "s-run"), (T1, "s-http"), (T1, None), (T2, "s")]) == [
        Place("etl", "r1", "load"),
        Place("etl", "r1", None),
        Place("etl", "r1", None, exact=False),
        Place("etl", "r1", None, exact=False),
        None,
    ]


def test_parked_records_are_settled_when_their_spans_come(store: SqlStore) -> None:
    store.logs.write_logs([_record(i) for i in ("l-step", "l-later", "l-nospan", "l-http", "l-other")])
    store.spans.park([("l-step", T1, "s-load", 100.0), ("l-later", T1, "s-late", 100.0), ("l-nospan", T1, None, 100.0)])
    store.spans.park([("l-http", T1, "s-http", 100.0), ("l-other", T2, "s", 100.0)])
    assert store.spans.settle([T1]) == 0  # nothing linked yet
    # a step's span first (it ends before its run's)
    assert store.spans.link_spans([Link(T1, "s-load", "etl", "r1", "load", 101.0)]) == 4
    assert _log(store, "l-step") == ("etl", "r1", "load")
    assert _log(store, "l-nospan") == ("etl", "r1", None)
    assert _log(store, "l-later") == ("etl", "r1", None)  # its trace's run until its span comes
    assert _log(store, "l-other") == (None, None, None)
    assert store.spans.count_parked() == 3  # l-later and l-http (their spans may come yet), l-other
    store.spans.link_spans([Link(T1, "s-late", "etl", "r1", "publish", 103.0)])
    assert _log(store, "l-later") == ("etl", "r1", "publish")
    assert store.spans.count_parked() == 2
    # the run's own span comes last: a span not linked by then was passed over (an HTTP call)
    store.spans.link_spans([Link(T1, "s-run", "etl", "r1", None, 99.0)])
    assert _log(store, "l-http") == ("etl", "r1", None)
    assert store.spans.count_parked() == 1  # l-other, of a trace nobody maps
    assert store.spans.purge(before_ts=99.5, parked_before=100.5) == 2  # the run's link, l-other's parking
    assert store.spans.count_parked() == 0
    assert store.spans.resolve([(T1, "s-load")]) == [Place("etl", "r1", "load")]


def test_spans_are_linked_once_log_records_came_the_stored_ones_then_too(store: SqlStore) -> None:
    from flowsight.model.runs.events import Event, EventKind

    ids = {"otel.trace_id": T1, "otel.span_id": "s-run"}
    store.runs.write_events(
        [
            Event(id="e1", ts=1.0, kind=EventKind.STARTED, workflow="etl", run_id="r1", attrs=ids),
            Event(id="e2", ts=2.0, kind=EventKind.STEP_STARTED, workflow="etl", run_id="r1", step="load",
                  attrs={**ids, "otel.span_id": "s-load"}),
            Event(id="e3", ts=3.0, kind=EventKind.STEP_STARTED, workflow="etl", run_id="r2", step="x"),
        ]
    )  # fmt: skip
    assert not store.spans.logs_seen()  # traces only so far: nothing linked
    assert store.spans.resolve([(T1, "s-load")]) == [None]
    store.spans.saw_logs()
    assert store.spans.logs_seen()
    assert store.spans.resolve([(T1, "s-load"), (T1, "s-run")]) == [
        Place("etl", "r1", "load"),
        Place("etl", "r1", None),
    ]


def test_a_fresh_record_in_a_span_not_come_waits_and_a_trace_of_two_runs_gives_none(store: SqlStore) -> None:
    import time

    now = time.time()
    store.logs.write_logs([_record("l-fresh", now), _record("l-two", now)])
    store.spans.link_spans([Link(T1, "s-run", "etl", "r1", None, now)])
    store.spans.park([("l-fresh", T1, "s-late", now)])
    store.spans.settle([T1])
    # placed on its run meanwhile, still parked: its span (another process's, say) may come yet
    assert _log(store, "l-fresh") == ("etl", "r1", None) and store.spans.count_parked() == 1
    store.spans.link_spans([Link(T1, "s-late", "etl", "r1", "publish", now)])
    assert _log(store, "l-fresh") == ("etl", "r1", "publish") and store.spans.count_parked() == 0
    # a pipeline triggered by another's, in the other's trace: a record of an unknown span is on neither
    store.spans.link_spans([Link(T2, "p-run", "ci", "parent", None, now), Link(T2, "c-run", "ci", "child", None, now)])
    store.spans.park([("l-two", T2, "s-x", now)])
    store.spans.settle([T2])
    assert _log(store, "l-two") == (None, None, None) and store.spans.resolve([(T2, "s-x")]) == [None]


def test_a_second_server_that_finds_log_records_came_links_the_spans_it_stored_meanwhile(store_url: str) -> None:
    from flowsight.model.runs.events import Event, EventKind
    from flowsight.store import open_store

    with open_store(store_url) as a, open_store(store_url) as b:
        assert not b.spans.logs_seen()  # b looked: no records yet, it will not look again for a while
        a.spans.saw_logs()
        ids = {"otel.trace_id": T1, "otel.span_id": "s-b"}
        b.runs.write_events([Event(id="eb", ts=1.0, kind=EventKind.STARTED, workflow="etl", run_id="rb", attrs=ids)])
        assert not b.spans.logs_seen()  # not linked by b yet
        b.spans._look_at = 0.0  # the while has passed
        assert b.spans.logs_seen()
        assert a.spans.resolve([(T1, "s-b")]) == [Place("etl", "rb", None)]
