"""The fault monitor's decisions with injected time, on both stores: retries
before a fault is declared, one record and one alert, severity rising with
the duration and the runs hurt, resolution with its duration, broken
detectors apart from faults; and the schedule: a hung detector does not hold
up the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from flowsight.detectors.base import Schedule
from flowsight.model.alerts import Alert, AlertStatus, Severity
from flowsight.model.runs.events import make_event
from flowsight.model.faults import DataCorruption, Fault, FaultStatus, ServiceUnavailable
from flowsight.monitors.fault import CheckResult, FaultMonitor
from flowsight.store.sql import SqlStore
from tests.helpers import run


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A detector that reports what the test sets (a plug-in, not a mock of I/O)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fault: Fault | None = None
        self.raises: Exception | None = None
        self.hang = False
        self.calls = 0

    async def detect(self) -> Fault | None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.raises is not None:
            raise self.raises
        return self.fault


DOWN = Fault(ServiceUnavailable("postgres-main"), "connection refused", "pg", evidence={"port": 5432})


class Rig:
    def __init__(
        self, store: SqlStore | None, retries: int = 1, dependencies: dict[str, list[str]] | None = None
    ) -> None:
        self.clock = Clock()
        self.alerts: list[Alert] = []
        self.det = Scripted("pg")
        self.mon = FaultMonitor(
            [self.det],
            self.alerts.append,
            store=store,
            clock=self.clock,
            schedules={"pg": Schedule(interval=30, timeout=5, retries=retries)},
            dependencies=dependencies,
        )

    def step(self, dt: float = 30.0) -> None:
        self.clock.now += dt
        run(lambda: self._check())

    async def _check(self) -> None:
        await self.mon.observe(await self.mon.check(self.det))

    def said(self) -> list[tuple[str, str, str]]:
        out = [(a.labels["alertname"], a.status.value, a.severity.value) for a in self.alerts]
        self.alerts.clear()
        return out


@pytest.fixture
def rig(store: SqlStore) -> Iterator[Rig]:
    yield Rig(store)


def test_without_a_store_the_history_is_kept_in_memory() -> None:
    rig = Rig(None, retries=0)
    rig.det.fault = DOWN
    rig.step()
    rig.det.fault = None
    rig.step()
    assert rig.said() == [("ServiceUnavailable", "firing", "warning"), ("ServiceUnavailable", "resolved", "warning")]
    assert [(r.id, r.status) for r in rig.mon.fault_history] == [(1, FaultStatus.OPEN), (1, FaultStatus.RESOLVED)]


def test_one_blip_is_not_a_fault_and_the_next_failure_declares_it(rig: Rig) -> None:
    rig.det.fault = DOWN
    rig.step()
    assert rig.said() == [] and rig.mon.states["pg"].status == "failing"
    rig.det.fault = None
    rig.step()
    assert rig.said() == [] and rig.mon.states["pg"].status == "ok"
    rig.det.fault = DOWN
    rig.step()
    rig.step()
    assert rig.said() == [("ServiceUnavailable", "firing", "warning")]
    state = rig.mon.states["pg"]
    assert state.status == "fault" and state.record is not None and state.record.timestamp == rig.clock.now
    rig.step()
    assert rig.said() == []  # one alert while it lasts


def test_a_fault_resolves_when_its_detector_passes_again_with_its_duration(rig: Rig) -> None:
    rig.det.fault = DOWN
    rig.step()
    rig.step()
    opened = rig.clock.now
    rig.said()
    rig.det.fault = None
    rig.step(45)
    assert rig.said() == [("ServiceUnavailable", "resolved", "warning")]
    done = rig.mon.fault_history[-1]
    assert done.status is FaultStatus.RESOLVED and done.duration(1e12) == 45.0 and done.timestamp == opened
    if rig.mon.store is not None:
        [stored] = rig.mon.store.faults.list_faults()
        assert stored.status is FaultStatus.RESOLVED and stored.resolved_at == opened + 45


def test_severity_rises_as_the_fault_lasts_and_each_level_is_its_own_alert(rig: Rig) -> None:
    rig.det.fault = DOWN
    rig.step()
    rig.step()
    assert rig.said() == [("ServiceUnavailable", "firing", "warning")]
    for _ in range(29):  # 14.5 minutes more
        rig.step()
    assert rig.said() == []
    rig.step()  # 15 minutes: one level up
    assert rig.said() == [("ServiceUnavailable", "resolved", "warning"), ("ServiceUnavailable", "firing", "error")]
    record = rig.mon.states["pg"].record
    assert record is not None and record.severity is Severity.ERROR
    if rig.mon.store is not None:
        assert [f.severity for f in rig.mon.store.faults.open_faults()] == [Severity.ERROR]


def test_a_detector_that_raises_is_broken_not_a_fault_and_mends(rig: Rig) -> None:
    rig.det.raises = OSError("permission denied: /proc/1/fd")
    rig.step()
    assert rig.said() == []  # within its retries
    rig.step()
    assert rig.said() == [("DetectorBroken", "firing", "warning")]
    state = rig.mon.states["pg"]
    assert state.status == "broken" and "permission denied" in str(state.last_error)
    assert not rig.mon.fault_history
    rig.det.raises = None
    rig.step()
    assert rig.said() == [("DetectorBroken", "resolved", "warning")] and state.status == "ok"


def test_the_running_runs_of_dependent_workflows_are_hurt_and_raise_the_severity(store: SqlStore) -> None:
    rig = Rig(store, retries=0, dependencies={"etl": ["postgres-main"], "report": ["redis"]})
    store.runs.write_events(
        [
            make_event("started", "etl", "run-1", ts=900.0),
            make_event("started", "etl", "run-2", ts=900.0),
            make_event("started", "etl", "done", ts=900.0),
            make_event("completed", "etl", "done", ts=950.0),
            make_event("started", "report", "run-3", ts=900.0),
        ]
    )
    rig.det.fault = DOWN
    rig.step()
    [alert] = rig.alerts
    assert alert.severity is Severity.ERROR  # warning, one level up for the runs it hurts
    assert alert.labels["service"] == "postgres-main" and alert.source == "fault"
    assert "run-1" in alert.annotations["description"] and "run-3" not in alert.annotations["description"]
    [record] = store.faults.open_faults()
    assert sorted(record.fault.runs) == ["run-1", "run-2"] and record.fault.workflows == ("etl",)
    assert [f.id for f in store.faults.list_faults(run_id="run-2")] == [record.id]


def test_a_run_that_declares_its_own_dependency_is_hurt(store: SqlStore) -> None:
    """The SDK's ``workflow("adhoc", depends_on=[...])`` keeps it in the run's attributes."""
    rig = Rig(store, retries=0)
    store.runs.write_events(
        [
            make_event("started", "adhoc", "a-1", ts=900.0, attrs={"depends_on": ["postgres-main"]}),
            make_event("started", "adhoc", "a-2", ts=900.0, attrs={"depends_on": ["redis"]}),
        ]
    )
    rig.det.fault = DOWN
    rig.step()
    [record] = store.faults.open_faults()
    assert record.fault.runs == ("a-1",) and record.fault.workflows == ("adhoc",)


def test_a_fault_that_keeps_coming_back_is_rated_higher(store: SqlStore) -> None:
    rig = Rig(store, retries=0)
    bad = Fault(DataCorruption("/data/out.csv"), "changed", "pg")
    for _ in range(3):
        rig.det.fault = bad
        rig.step()
        rig.det.fault = None
        rig.step()
    fired = [a.severity for a in rig.alerts if a.status is AlertStatus.FIRING]
    assert fired == [Severity.ERROR, Severity.ERROR, Severity.CRITICAL]  # the third opening within a day


def test_a_hung_detector_does_not_hold_up_the_others() -> None:
    hung, quick = Scripted("hung"), Scripted("quick")
    hung.hang = True
    alerts: list[Alert] = []
    mon = FaultMonitor(
        [hung, quick],
        alerts.append,
        schedules={
            "hung": Schedule(interval=0.05, timeout=0.05, retries=0),
            "quick": Schedule(interval=0.02, timeout=0.05, retries=0),
        },
    )

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(mon.monitor_faults(stop))
        while hung.calls < 2 or quick.calls < 20:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    run(main)
    # while each check of 'hung' waited out its watchdog, 'quick' kept its own schedule
    assert quick.calls >= 20 and mon.states["quick"].status == "ok"
    assert mon.states["hung"].status == "broken" and "hung" in str(mon.states["hung"].last_error)
    assert [a.labels["alertname"] for a in alerts] == ["DetectorBroken"]


def test_check_once_reports_every_detector_side_by_side() -> None:
    a, b, c = Scripted("a"), Scripted("b"), Scripted("c")
    b.fault = DOWN
    c.raises = ValueError("bad option")
    results = run(lambda: FaultMonitor([a, b, c]).check_once())
    assert [(r.detector, r.ok, r.fault is not None, r.error) for r in results] == [
        ("a", True, False, None),
        ("b", False, True, None),
        ("c", False, False, "ValueError: bad option"),
    ]
    assert results[1].fault is not None and results[1].fault.detector == "b"  # named after who found it


def test_detector_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="'x' given twice"):
        FaultMonitor([Scripted("x"), Scripted("x")])


def test_a_check_result_without_fault_or_error_is_ok() -> None:
    assert CheckResult("x").ok and not CheckResult("x", error="e").ok
