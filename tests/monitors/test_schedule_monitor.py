"""The schedule monitor with the time passed in, over a real store: what it
sends to the alert manager as days pass (a nightly job in Copenhagen across
both daylight-saving nights), as runs report, and across a restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowsight.model.alerts import Alert, AlertStatus
from flowsight.model.runs.events import Event, EventKind, make_event
from flowsight.model.schedules import Expectations, make_expectations
from flowsight.monitors.schedules import ScheduleMonitor
from flowsight.store import open_store
from flowsight.store.sql import SqlStore

CPH = ZoneInfo("Europe/Copenhagen")
MIN = 60.0


def at(*args: int) -> float:
    return datetime(*args, tzinfo=CPH).timestamp()  # type: ignore[misc]


def local(t: float) -> str:
    return datetime.fromtimestamp(t, CPH).strftime("%Y-%m-%d %H:%M %Z")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqlStore]:
    store = open_store(str(tmp_path / "flowsight.db"))
    yield store
    store.close()


def monitor(
    store: SqlStore, exps: list[Expectations], clock: Clock, sent: list[Alert], **kw: object
) -> ScheduleMonitor:
    # ticks a minute or more apart (a server ticks every second): a heartbeat that spans them
    kw.setdefault("heartbeat", 600.0)
    return ScheduleMonitor(store, sent.append, {e.workflow: e for e in exps}, clock=clock, process="test", **kw)  # type: ignore[arg-type]


def store_events(store: SqlStore, mon: ScheduleMonitor, *events: Event) -> None:
    store.runs.write_events(list(events))
    mon.observe(list(events))


def ev(kind: str, wf: str, run: str, ts: float, step: str | None = None, **attrs: object) -> Event:
    return make_event(EventKind(kind), wf, run, step=step, ts=ts, attrs=dict(attrs))


def run_until(mon: ScheduleMonitor, clock: Clock, until: float, step: float = MIN) -> None:
    while clock.t < until:
        clock.t = min(until, clock.t + step)
        mon.tick()


def firing(sent: list[Alert]) -> list[tuple[str, str]]:
    return [(a.name, local(a.starts_at)) for a in sent if a.status is AlertStatus.FIRING]


NIGHTLY = make_expectations("nightly", {"schedule": "0 2 * * *", "timezone": "Europe/Copenhagen", "start_grace": "5m"})


def test_no_start_gives_exactly_one_alert_at_the_right_instant(db: SqlStore) -> None:
    clock, sent = Clock(at(2026, 1, 14, 12)), []
    mon = monitor(db, [NIGHTLY], clock, sent)
    mon.tick()
    run_until(mon, clock, at(2026, 1, 15, 2, 4))
    assert sent == []
    run_until(mon, clock, at(2026, 1, 15, 12))
    assert firing(sent) == [("RunLate", "2026-01-15 02:05 CET")]
    assert len(sent) == 1  # and sent once, however many ticks saw it late
    # the late run starts at 02:40 the next night: RunLate gave way to RunMissed at 02:00, both end with the start
    run_until(mon, clock, at(2026, 1, 16, 2, 40))
    assert firing(sent) == [("RunLate", "2026-01-15 02:05 CET"), ("RunMissed", "2026-01-16 02:00 CET")]
    store_events(db, mon, ev("started", "nightly", "r1", at(2026, 1, 16, 2, 40)))
    mon.tick()
    resolved = {a.name: a.annotations["resolution"] for a in sent if a.status is AlertStatus.RESOLVED}
    assert resolved["RunLate"] == "the slot was missed: RunMissed takes over"
    assert resolved["RunMissed"].startswith("run r1 started at 2026-01-16 02:40")
    assert "40m 00s after its slot" in resolved["RunMissed"]


@pytest.mark.parametrize(
    ("night", "expected"),
    [
        # 2026-03-29: the clock jumps from 02:00 to 03:00; a 02:30 job runs at 03:00 that night
        ((2026, 3, 28, 12), ["2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST"]),
        # 2026-10-25: 02:30 happens twice; the job runs at the first
        ((2026, 10, 24, 12), ["2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"]),
    ],
)
def test_daylight_saving_nights_lose_no_slot_and_double_none(
    db: SqlStore, night: tuple[int, int, int, int], expected: list[str]
) -> None:
    e = make_expectations("n", {"schedule": "30 2 * * *", "timezone": "Europe/Copenhagen", "start_grace": "5m"})
    clock, sent = Clock(at(*night)), []
    mon = monitor(db, [e], clock, sent)
    mon.tick()
    run_until(mon, clock, clock.t + 2 * 86400, step=5 * MIN)
    slots = db.schedules.recent_slots(["n"])["n"]
    assert [local(j.at) for j in slots] == expected
    assert [j.status for j in slots] == ["missed", "late"]
    assert firing(sent) == [("RunLate", local(slots[0].at + 300)), ("RunMissed", local(slots[1].at))]


def test_every_fifteen_minutes_with_runs_that_keep_coming(db: SqlStore) -> None:
    e = make_expectations("q", {"every": "15m", "start_grace": "2m"})
    clock, sent = Clock(at(2026, 2, 1, 9)), []
    mon = monitor(db, [e], clock, sent)
    mon.tick()  # known from 09:00: the first run is expected at 09:15
    for k in range(1, 8):
        run_until(mon, clock, at(2026, 2, 1, 9) + k * 15 * MIN + 30)
        store_events(db, mon, ev("started", "q", f"r{k}", clock.t), ev("completed", "q", f"r{k}", clock.t + 60))
    run_until(mon, clock, at(2026, 2, 1, 11))
    assert sent == []
    # the loop stops: one RunLate 2 minutes after the next slot
    run_until(mon, clock, at(2026, 2, 1, 12))
    last = at(2026, 2, 1, 9) + 7 * 15 * MIN + 30
    assert firing(sent) == [("RunLate", local(last + 17 * MIN)), ("RunMissed", local(last + 30 * MIN))]


def test_overlapping_runs_a_manual_run_and_max_runtime(db: SqlStore) -> None:
    e = make_expectations("o", {"every": "10m", "start_grace": "1m", "max_runtime": "12m"})
    t0 = at(2026, 2, 1, 9)
    clock, sent = Clock(t0), []
    mon = monitor(db, [e], clock, sent)
    mon.tick()
    run_until(mon, clock, t0 + 10 * MIN)
    store_events(db, mon, ev("started", "o", "a", clock.t))  # slot 1; runs 15 minutes
    run_until(mon, clock, t0 + 20 * MIN)
    store_events(db, mon, ev("started", "o", "b", clock.t))  # slot 2, while a runs
    store_events(db, mon, ev("started", "o", "hand", clock.t + 30, trigger="manual"))
    run_until(mon, clock, t0 + 23 * MIN)
    assert firing(sent) == [("RunOverran", local(t0 + 22 * MIN))]
    assert sent[0].labels["run_id"] == "a"
    store_events(db, mon, ev("completed", "o", "a", t0 + 25 * MIN), ev("completed", "o", "b", t0 + 25 * MIN))
    store_events(db, mon, ev("completed", "o", "hand", t0 + 25 * MIN))
    run_until(mon, clock, t0 + 26 * MIN)
    assert (
        sent[-1].status is AlertStatus.RESOLVED and sent[-1].annotations["resolution"] == "run completed after 15m 00s"
    )
    slots = db.schedules.recent_slots(["o"])["o"]
    assert [(j.run_id, j.status) for j in slots] == [("a", "overran"), ("b", "ok")]


def test_min_runtime_deadline_and_failures_in_a_row(db: SqlStore) -> None:
    e = make_expectations(
        "etl",
        {
            "schedule": "0 2 * * *",
            "timezone": "Europe/Copenhagen",
            "start_grace": "10m",
            "min_runtime": "5m",
            "deadline": "06:00",
            "failures_before_alert": 2,
        },
    )
    clock, sent = Clock(at(2026, 1, 14, 12)), []
    mon = monitor(db, [e], clock, sent)
    mon.tick()
    # night 1: "succeeds" in 2 seconds
    run_until(mon, clock, at(2026, 1, 15, 2, 1))
    store_events(db, mon, ev("started", "etl", "n1", clock.t), ev("completed", "etl", "n1", clock.t + 2))
    run_until(mon, clock, at(2026, 1, 15, 12))
    assert firing(sent) == [("RunTooShort", "2026-01-15 02:01 CET")]
    # night 2: fails; night 3: still running at 06:00, then fails
    run_until(mon, clock, at(2026, 1, 16, 2, 1))
    store_events(
        db, mon, ev("started", "etl", "n2", clock.t), ev("failed", "etl", "n2", clock.t + 600, error="disk full")
    )
    run_until(mon, clock, at(2026, 1, 17, 2, 1))
    store_events(db, mon, ev("started", "etl", "n3", clock.t))
    run_until(mon, clock, at(2026, 1, 17, 6, 30))
    store_events(db, mon, ev("failed", "etl", "n3", clock.t, error="disk full"))
    run_until(mon, clock, at(2026, 1, 17, 7))
    assert firing(sent)[1:] == [
        ("DeadlineMissed", "2026-01-16 06:00 CET"),  # night 2 had failed by its deadline
        ("DeadlineMissed", "2026-01-17 06:00 CET"),  # night 3 was still running
        ("WorkflowFailing", "2026-01-17 06:30 CET"),
    ]
    first = next(a for a in sent if a.name == "DeadlineMissed" and a.status is AlertStatus.RESOLVED)
    assert first.labels["run_id"] == "n2" and "missed as well" in first.annotations["resolution"]
    failing = next(a for a in sent if a.name == "WorkflowFailing")
    assert "the last: run n3; the last error: disk full" in failing.annotations["description"]
    # night 4 completes in a usual time before 06:00: everything resolves
    run_until(mon, clock, at(2026, 1, 18, 2, 1))
    store_events(db, mon, ev("started", "etl", "n4", clock.t), ev("completed", "etl", "n4", clock.t + 1800))
    run_until(mon, clock, at(2026, 1, 18, 7))
    still = {a.name for a in sent if a.status is AlertStatus.FIRING} - {
        a.name for a in sent if a.status is AlertStatus.RESOLVED
    }
    assert still == set()


def test_a_restart_judges_the_slots_it_missed_once_and_unknown(tmp_path: Path) -> None:
    e = make_expectations("h", {"schedule": "0 * * * *", "timezone": "Europe/Copenhagen", "start_grace": "5m"})
    path = str(tmp_path / "flowsight.db")
    store = open_store(path)
    clock, sent = Clock(at(2026, 1, 15, 8, 30)), []
    mon = monitor(store, [e], clock, sent)
    mon.tick()
    for h in (9, 10):
        run_until(mon, clock, at(2026, 1, 15, h, 1))
        store_events(store, mon, ev("started", "h", f"r{h}", clock.t), ev("completed", "h", f"r{h}", clock.t + 60))
    run_until(mon, clock, at(2026, 1, 15, 10, 30))
    # down from 10:30 to 14:20: nothing was watching the 11:00, 12:00, 13:00 and 14:00 slots
    clock.t = at(2026, 1, 15, 14, 20)
    again = ScheduleMonitor(store, sent.append, {"h": e}, clock=clock, process="test-2", heartbeat=600.0)
    again.tick()
    slots = store.schedules.recent_slots(["h"])["h"]
    assert [(local(j.at)[11:16], j.status) for j in slots] == [
        ("09:00", "ok"),
        ("10:00", "ok"),
        ("11:00", "unknown"),
        ("12:00", "unknown"),
        ("13:00", "unknown"),
        ("14:00", "unknown"),
    ]
    assert sent == []  # no storm of RunMissed
    # watched again: the 15:00 slot is judged as usual, and a third start judges nothing again
    run_until(again, clock, at(2026, 1, 15, 15, 10))
    assert firing(sent) == [("RunLate", "2026-01-15 15:05 CET")]
    third = ScheduleMonitor(store, sent.append, {"h": e}, clock=clock, process="test-3", heartbeat=600.0)
    third.restore(sent)
    third.tick()
    assert len(sent) == 1
    assert [j.status for j in store.schedules.recent_slots(["h"])["h"]][2:6] == ["unknown"] * 4
    store.close()


def test_a_late_start_from_a_spool_judges_its_slot_again(db: SqlStore) -> None:
    clock, sent = Clock(at(2026, 1, 14, 12)), []
    mon = monitor(db, [NIGHTLY], clock, sent)
    mon.tick()
    run_until(mon, clock, at(2026, 1, 15, 3))
    assert firing(sent) == [("RunLate", "2026-01-15 02:05 CET")]
    # the run did start at 02:01; its host could not reach the server until 03:00
    store_events(db, mon, ev("started", "nightly", "r", at(2026, 1, 15, 2, 1)))
    mon.tick()
    assert sent[-1].status is AlertStatus.RESOLVED
    assert [j.status for j in db.schedules.recent_slots(["nightly"])["nightly"]] == ["ok"]


def test_a_store_that_cannot_be_written_makes_slots_unknown(db: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, sent = Clock(at(2026, 1, 14, 12)), []
    mon = monitor(db, [NIGHTLY], clock, sent, heartbeat=30.0)  # ticks a minute apart: beats within 90 s
    mon.tick()
    run_until(mon, clock, at(2026, 1, 15, 1, 50))

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(db.schedules, "watching", refuse)
        run_until(mon, clock, at(2026, 1, 15, 2, 30))
        assert sent == []  # its heartbeat could not be kept: it cannot say nobody pinged
        assert mon.snapshot()[0].slots[-1].status == "unknown"
    # written again: a new span starts; the outage stays a gap, and the slot in it unknown for good
    run_until(mon, clock, at(2026, 1, 16, 3, 0))
    assert [j.status for j in db.schedules.recent_slots(["nightly"])["nightly"]] == ["unknown", "late"]
    assert firing(sent) == [("RunLate", "2026-01-16 02:05 CET")]
    spans = db.schedules.watch_spans(0)
    assert len(spans) == 2 and spans[0][1] < at(2026, 1, 15, 2) and spans[1][0] >= at(2026, 1, 15, 2, 30)


def test_a_hung_run_keeps_a_frequent_schedules_looks_small(db: SqlStore) -> None:
    """An every-5-minutes job whose first run hangs for a day while the others
    run on time: each look judges the new slots only, and none is missed."""
    e = make_expectations("poll", {"every": "5m", "start_grace": "1m"})
    t0 = at(2026, 3, 2, 0)
    clock, sent = Clock(t0), []
    mon = monitor(db, [e], clock, sent)
    mon.tick()
    for k in range(1, 24 * 12):
        run_until(mon, clock, t0 + k * 300 + 20, step=300)
        store_events(db, mon, ev("started", "poll", f"r{k}", clock.t))
        if k > 1:
            store_events(db, mon, ev("completed", "poll", f"r{k}", clock.t + 30))
    before = len(mon._unsaved), mon.watches["poll"].open_from
    clock.t += 30
    mon.tick()
    assert len(mon._unsaved) <= 2 and before[0] == 0
    statuses = [j.status for j in db.schedules.recent_slots(["poll"], per=1000)["poll"]]
    assert "missed" not in statuses and statuses.count("ok") >= len(statuses) - 2
    assert len(mon._heap) <= 3


def test_a_restart_remembers_a_weekly_jobs_failures_older_than_its_look_back(tmp_path: Path) -> None:
    e = make_expectations(
        "weekly", {"schedule": "0 3 * * 1", "timezone": "Europe/Copenhagen", "failures_before_alert": 2}
    )
    store = open_store(str(tmp_path / "flowsight.db"))
    clock, sent = Clock(at(2026, 1, 4, 12)), []
    mon = monitor(store, [e], clock, sent)
    mon.tick()
    for day in (5, 12):  # two Mondays, two failures
        run_until(mon, clock, at(2026, 1, day, 3, 1), step=3600)
        store_events(
            store, mon, ev("started", "weekly", f"w{day}", clock.t), ev("failed", "weekly", f"w{day}", clock.t + 600)
        )
    run_until(mon, clock, at(2026, 1, 13, 12), step=3600)
    assert firing(sent) == [("WorkflowFailing", "2026-01-12 03:11 CET")]
    clock.t = at(2026, 1, 17, 12)  # restarted 5 days later: the first failure is 12 days old
    again = ScheduleMonitor(store, sent.append, {"weekly": e}, clock=clock, process="t2", heartbeat=600.0)
    again.restore(sent)
    again.tick()
    assert [a.status for a in sent] == [AlertStatus.FIRING]
    store.close()


def test_a_changed_schedule_judges_on_its_own_slots_after_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "flowsight.db")
    store = open_store(path)
    old = make_expectations("h", {"schedule": "0 * * * *", "timezone": "Europe/Copenhagen"})
    clock, sent = Clock(at(2026, 1, 15, 8, 30)), []
    mon = monitor(store, [old], clock, sent)
    mon.tick()
    run_until(mon, clock, at(2026, 1, 15, 10, 10))
    new = make_expectations("h", {"schedule": "30 * * * *", "timezone": "Europe/Copenhagen"})
    again = ScheduleMonitor(store, sent.append, {"h": new}, clock=clock, process="test-2", heartbeat=600.0)
    run_until(again, clock, at(2026, 1, 15, 12, 50))
    minutes = [local(j.at)[11:16] for j in store.schedules.recent_slots(["h"])["h"]]
    assert minutes == ["09:00", "10:00", "10:30", "11:30", "12:30"]
    store.close()


def test_a_step_past_its_limit_and_a_dependencys_outage_muting_the_schedules_alerts(db: SqlStore) -> None:
    """RunOverran for a step from its events; RunLate of a workflow whose
    service is down is inhibited by the outage, as its other alerts are."""
    from flowsight.alerting.manager import AlertManager
    from flowsight.model.alerts import Severity
    from flowsight.model.alerts.routing import Route

    e = make_expectations(
        "etl", {"schedule": "0 * * * *", "timezone": "Europe/Copenhagen", "start_grace": "5m", "steps": {"load": "10m"}}
    )
    clock, sent = Clock(at(2026, 1, 15, 8, 30)), []
    mon = monitor(db, [e], clock, sent)
    mon.tick()
    assert mon.step_workflows() == {"etl"}
    run_until(mon, clock, at(2026, 1, 15, 9, 1))
    store_events(
        db, mon, ev("started", "etl", "r9", clock.t), ev("step_started", "etl", "r9", clock.t + 5, step="load")
    )
    run_until(mon, clock, at(2026, 1, 15, 9, 12))
    [step] = [a for a in sent if a.name == "RunOverran"]
    assert (step.labels["run_id"], step.labels["step"]) == ("r9", "load")
    assert local(step.starts_at) == "2026-01-15 09:11 CET"
    store_events(
        db, mon, ev("step_completed", "etl", "r9", clock.t, step="load"), ev("completed", "etl", "r9", clock.t)
    )
    mon.tick()
    assert sent[-1].status is AlertStatus.RESOLVED and sent[-1].annotations["resolution"].startswith("run completed")
    run_until(mon, clock, at(2026, 1, 15, 10, 6))  # no 10:00 run: RunLate
    late = sent[-1]
    assert late.name == "RunLate"
    am = AlertManager(
        Route("team", group_by=("...",), group_wait=0.0), clock=clock, dependencies={"etl": ["warehouse"]}
    )
    am.send_alert(
        Alert({"alertname": "ServiceUnavailable", "service": "warehouse"}, source="fault", severity=Severity.CRITICAL)
    )
    am.send_alert(late)
    told = {a.name for n in am.tick(clock.t) for a in n.alerts}
    assert told == {"ServiceUnavailable"} and am.status_of(late.fingerprint) == "inhibited"
