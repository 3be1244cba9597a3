"""The export feeder (``[export.otlp]``) over a real store: each run that
ends is handed over once, from the cursor kept in the store (a restarted
feeder resumes there); on PostgreSQL the writers of transitions take turns,
so none commits below an id already read."""

from __future__ import annotations


import threading

import psycopg

from flowsight.config.otlp import OtlpExport
from flowsight.model.runs.events import Event, EventKind
from flowsight.server.export import SETTLE, ExportService
from flowsight.store import SqlStore, open_store
from flowsight.store.dialect import SEQ_TURN
from flowsight.store.exports import decode_runs

K = EventKind


def _ended(run_id: str) -> list[Event]:
    return [
        Event(id=f"{run_id}-s", ts=1.0, kind=K.STARTED, workflow="etl", run_id=run_id),
        Event(id=f"{run_id}-c", ts=2.0, kind=K.COMPLETED, workflow="etl", run_id=run_id),
    ]


def _handed(store: SqlStore) -> list[str]:
    items = store.alerts.outbox_items(receiver="export.otlp", limit=100)
    return [r for item in items for r in decode_runs(item.body)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_each_ended_run_is_handed_over_once_and_a_restart_resumes_at_the_kept_cursor(store_url: str) -> None:
    clock = Clock()
    config = OtlpExport("http://127.0.0.1:9", delay=0.0)
    with open_store(store_url) as store:
        store.runs.write_events(_ended("before"))  # ended before the export was turned on: not exported
        feeder = ExportService(store, config, clock=clock)
        assert feeder.feed() == 0
        store.runs.write_events([*_ended("a"), *_ended("b")])
        store.runs.write_events(_ended("c")[:1])  # still running
        assert feeder.feed() == 2
        for _ in range(3):
            clock.now += SETTLE  # read again (PostgreSQL) or not: handed over once
            assert feeder.feed() == 0
        again = ExportService(store, config, clock=clock)  # a restart
        store.runs.write_events(_ended("c")[1:])
        assert again.feed() == 1
        assert sorted(_handed(store)) == ["a", "b", "c"]


def test_on_postgresql_a_writer_waits_for_the_one_before_so_no_transition_commits_below_one_read(
    pg_url: str,
) -> None:
    """Writers of transitions take turns (``Dialect.seq_turn``): one that drew
    the lower id and commits late holds the next writer back, so a reader
    going forward by id never passes one over."""
    clock = Clock()
    with open_store(pg_url) as store, open_store(pg_url) as other:
        feeder = ExportService(store, OtlpExport("http://127.0.0.1:9", delay=0.0), clock=clock)
        feeder.feed()
        with psycopg.connect(pg_url) as slow:
            slow.execute("SELECT pg_advisory_xact_lock(%s)", (SEQ_TURN,))  # as flowsight's writers take it
            slow.execute(
                "INSERT INTO transitions (run_id, ts, old_state, new_state, applied) "
                "VALUES ('late', 1, 'running', 'completed', true)"
            )
            quick = threading.Thread(target=other.runs.write_events, args=(_ended("early"),))
            quick.start()
            quick.join(1.0)
            assert quick.is_alive()  # it waits for the turn
            clock.now += 1.0
            assert feeder.feed() == 0  # nothing committed yet
            slow.commit()
        quick.join(30)
        clock.now += 1.0
        assert feeder.feed() == 2
        assert sorted(_handed(store)) == ["early", "late"]


def test_a_round_whose_hand_over_failed_is_read_again(store_url: str) -> None:
    from flowsight.errors import StoreError

    clock = Clock()
    with open_store(store_url) as store:
        feeder = ExportService(store, OtlpExport("http://127.0.0.1:9", delay=0.0), clock=clock)
        feeder.feed()
        store.runs.write_events(_ended("a"))
        real = store.exports.hand_over

        def failing(*args: object, **kw: object) -> list[str]:
            raise StoreError("database is locked")

        store.exports.hand_over = failing  # type: ignore[method-assign]
        try:
            feeder.feed()
        except StoreError:
            pass
        store.exports.hand_over = real  # type: ignore[method-assign]
        clock.now += 1.0
        assert feeder.feed() == 1
        assert _handed(store) == ["a"]
