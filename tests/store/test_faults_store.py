"""The fault history on both stores: one open record per fault, settled by
the database; updates, resolution once, the runs a fault hurt, queries."""

from __future__ import annotations

from flowsight.model.alerts import Severity
from flowsight.model.faults import (
    DataCorruption,
    Fault,
    FaultStatus,
    NetworkTimeout,
    ServiceUnavailable,
)
from flowsight.store import open_store
from flowsight.store.sql import SqlStore

DOWN = Fault(
    ServiceUnavailable("postgres-main"),
    "connection refused",
    "pg",
    evidence={"host": "127.0.0.1", "port": 5432},
    workflows=("etl",),
    runs=("r1",),
)


def test_a_fault_is_opened_once_and_a_second_declaration_gets_the_open_record(store: SqlStore, store_url: str) -> None:
    rec, opened = store.faults.open_fault(DOWN, Severity.WARNING, 100.0)
    assert opened and rec.id is not None and rec.status is FaultStatus.OPEN
    with open_store(store_url) as other:  # another monitor on the same store
        again, opened_again = other.faults.open_fault(DOWN, Severity.ERROR, 101.0)
    assert not opened_again and again.id == rec.id and again.timestamp == 100.0
    assert again.fault == DOWN and again.severity is Severity.WARNING
    [only] = store.faults.open_faults()
    assert only.id == rec.id and only.fault.evidence == {"host": "127.0.0.1", "port": 5432}


def test_an_update_keeps_the_opening_and_grows_the_runs_it_hurt(store: SqlStore) -> None:
    rec, _ = store.faults.open_fault(DOWN, Severity.WARNING, 100.0)
    later = Fault(
        DOWN.type,
        "connection refused (3rd time)",
        "pg",
        evidence={"error": "refused"},
        workflows=("report",),
        runs=("r2",),
    )
    up = store.faults.update_fault(rec, later, Severity.ERROR, 160.0)
    assert up.timestamp == 100.0 and up.severity is Severity.ERROR
    assert up.fault.runs == ("r1", "r2") and up.fault.workflows == ("etl", "report")
    [stored] = store.faults.open_faults()
    assert (stored.fault.message, stored.severity, stored.fault.runs) == (later.message, Severity.ERROR, ("r1", "r2"))
    assert [f.id for f in store.faults.list_faults(run_id="r2")] == [rec.id]
    assert store.faults.list_faults(run_id="r3") == []


def test_a_fault_resolves_once_and_the_next_declaration_is_a_new_record(store: SqlStore) -> None:
    rec, _ = store.faults.open_fault(DOWN, Severity.WARNING, 100.0)
    done = store.faults.resolve_fault(rec, 400.0)
    assert done is not None and done.status is FaultStatus.RESOLVED and done.duration(1e9) == 300.0
    assert store.faults.resolve_fault(rec, 500.0) is None  # someone resolved it already
    assert store.faults.open_faults() == []
    again, opened = store.faults.open_fault(DOWN, Severity.WARNING, 600.0)
    assert opened and again.id != rec.id
    assert store.faults.fault_openings(DOWN.key, since=0.0) == 2
    assert store.faults.fault_openings(DOWN.key, since=500.0) == 1


def test_faults_are_listed_newest_first_with_filters(store: SqlStore) -> None:
    slow = Fault(NetworkTimeout("http://127.0.0.1:1/health"), "no answer within 2 s", "api")
    bad = Fault(DataCorruption("/data/out.csv"), "changed", "outputs")
    a, _ = store.faults.open_fault(DOWN, Severity.WARNING, 100.0)
    b, _ = store.faults.open_fault(slow, Severity.INFO, 200.0)
    c, _ = store.faults.open_fault(bad, Severity.ERROR, 300.0)
    store.faults.resolve_fault(b, 250.0)
    assert [f.id for f in store.faults.list_faults()] == [c.id, b.id, a.id]
    assert [f.id for f in store.faults.list_faults(status=FaultStatus.OPEN)] == [c.id, a.id]
    assert [f.id for f in store.faults.list_faults(status=FaultStatus.RESOLVED)] == [b.id]
    assert [f.id for f in store.faults.list_faults(since=260.0)] == [c.id, a.id]  # b ended before
    assert [f.id for f in store.faults.list_faults(detector="api")] == [b.id]
    assert [f.id for f in store.faults.list_faults(kind="data_corruption")] == [c.id]
    assert [f.id for f in store.faults.list_faults(limit=1)] == [c.id]
    [rb] = store.faults.list_faults(detector="api")
    assert rb.fault.type == NetworkTimeout("http://127.0.0.1:1/health") and rb.resolved_at == 250.0
