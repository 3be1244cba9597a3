"""The export feeder (``[export.otlp]``) over a real store: each run that
ends is handed over once, from the cursor kept in the store (a restarted
feeder resumes there); on PostgreSQL a transition that commits after a
higher one was read is still found (read again for a while), not skipped."""

from __future__ import annotations


import psycopg

from flowsight.config.otlp import OtlpExport
from flowsight.model.runs.events import Event, EventKind
from flowsight.server.export import SETTLE, ExportService
from flowsight.store import SqlStore, open_store
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


def test_on_postgresql_a_transition_committed_late_below_one_read_is_found(pg_url: str) -> None:
    clock = Clock()
    with open_store(pg_url) as store:
        feeder = ExportService(store, OtlpExport("http://127.0.0.1:9", delay=0.0), clock=clock)
        feeder.feed()
        insert = "INSERT INTO transitions (run_id, ts, old_state, new_state, applied) VALUES (%s, 1, 'running', 'completed', true)"
        with psycopg.connect(pg_url) as slow, psycopg.connect(pg_url, autocommit=True) as quick:
            slow.execute(insert, ("late",))  # takes the lower id, commits later
            quick.execute(insert, ("early",))
            clock.now += 1.0
            assert feeder.feed() == 1  # early; late's row is not visible yet
            slow.commit()
        clock.now += SETTLE / 2
        assert feeder.feed() == 1  # late, below the id read
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
