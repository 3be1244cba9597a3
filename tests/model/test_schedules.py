"""Schedules as pure functions: expectations read field by field, slots from
cronsim in a zone (daylight-saving nights), judgements and the alerts they
call for, all with the time passed in."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from flowsight.errors import ConfigError
from flowsight.model.runs.state import WorkflowState as S
from flowsight.model.schedules import (
    ExpectationError,
    Expectations,
    cron,
    make_expectations,
    shortest_interval,
    time_of_day,
    zone,
)
from flowsight.model.schedules.alerts import (
    DEADLINE_MISSED_ALERT,
    RUN_LATE,
    RUN_MISSED,
    RUN_OVERRAN,
    RUN_TOO_SHORT,
    WORKFLOW_FAILING,
    cleared,
    wanted,
)
from flowsight.model.schedules.judge import Coverage, RunFacts, judge
from flowsight.model.schedules.slots import CronGrid, deadline_after

CPH = ZoneInfo("Europe/Copenhagen")
ALWAYS = Coverage.always()


def at(*args: int, tz: ZoneInfo = CPH) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def local(t: float) -> str:
    return datetime.fromtimestamp(t, CPH).strftime("%Y-%m-%d %H:%M %Z")


# ---- fields ------------------------------------------------------------------------
def test_cron_reads_five_fields_and_names() -> None:
    assert cron("0  2 * * *") == "0 2 * * *"
    assert cron("@daily") == "0 0 * * *"
    assert cron("@HOURLY") == "0 * * * *"
    for bad, says in [
        ("0 2 * *", "5 fields"),
        ("0 25 * * *", "bad hour"),
        ("61 * * * *", "bad minute"),
        ("@reboot", "@reboot"),
        ("@often", "unknown cron name"),
        ("0 0 31 2 *", "bad day-of-month"),
        (5, "cron expression"),
    ]:
        with pytest.raises(ConfigError, match=says):
            cron(bad)


def test_zone_and_time_of_day() -> None:
    assert zone("Europe/Copenhagen").key == "Europe/Copenhagen"
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        zone("Mars/Olympus")
    assert time_of_day("06:00") == time(6, 0)
    assert time_of_day("6:30:15") == time(6, 30, 15)
    for bad in ("25:00", "six", "06:60", 6):
        with pytest.raises(ConfigError, match="time of day"):
            time_of_day(bad)


def test_make_expectations_says_every_field_wrong() -> None:
    with pytest.raises(ExpectationError) as info:
        make_expectations(
            "nightly", {"schedule": "0 2 * *", "timezone": "Nowhere/Else", "deadline": "late", "colour": "red"}
        )
    fields = [f for f, _ in info.value.problems]
    assert fields == ["schedule", "timezone", "deadline", "colour"]
    with pytest.raises(ExpectationError, match="start_grace: 2h 00m is not shorter than the shortest interval"):
        make_expectations("hourly", {"schedule": "@hourly", "start_grace": "2h"})
    with pytest.raises(ExpectationError, match="every: give either schedule"):
        make_expectations("x", {"schedule": "@hourly", "every": "15m"})
    with pytest.raises(ExpectationError, match="min_runtime"):
        make_expectations("x", {"max_runtime": "1m", "min_runtime": "2m"})
    with pytest.raises(ExpectationError, match="deadline needs a schedule"):
        make_expectations("x", {"deadline": "06:00"})


def test_grace_against_a_daylight_saving_day() -> None:
    """A daily slot in a DST zone is 23 h apart once a year: a 23.5 h grace is refused there, not in UTC."""
    assert shortest_interval("0 2 * * *", "Europe/Copenhagen", slots=400) == 23 * 3600
    with pytest.raises(ExpectationError, match="start_grace"):
        make_expectations("x", {"schedule": "0 2 * * *", "timezone": "Europe/Copenhagen", "start_grace": "23h30m"})
    assert make_expectations("x", {"schedule": "0 2 * * *", "start_grace": "23h30m"}).start_grace == 23.5 * 3600


def test_default_grace_and_the_document_round_trip() -> None:
    e = make_expectations(
        "n",
        {
            "schedule": "*/4 * * * *",
            "timezone": "Europe/Copenhagen",
            "deadline": "06:00",
            "steps": {"load": {"max_runtime": "10m"}},
        },
    )
    assert e.grace == 120.0  # half the 4-minute interval, under the 5-minute default
    assert make_expectations("n", e.to_doc()) == e
    assert make_expectations("e", {"every": "15m"}).grace == 300.0


# ---- slots -------------------------------------------------------------------------
def slots_between(expr: str, a: float, b: float) -> list[float]:
    grid, out, t = CronGrid(expr, "Europe/Copenhagen"), [], a
    while True:
        t = grid.after(t)
        if t > b:
            return out
        out.append(t)


def test_spring_forward_night_loses_no_slot() -> None:
    # 2026-03-29: 02:00 -> 03:00 in Copenhagen. Debian cron runs a 02:30 job at 03:00 that night
    days = slots_between("30 2 * * *", at(2026, 3, 27, 12), at(2026, 3, 31, 12))
    assert [local(t) for t in days] == [
        "2026-03-28 02:30 CET",
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
        "2026-03-31 02:30 CEST",
    ]
    hourly = slots_between("0 * * * *", at(2026, 3, 29, 0), at(2026, 3, 29, 4))
    assert [local(t) for t in hourly] == ["2026-03-29 01:00 CET", "2026-03-29 03:00 CEST", "2026-03-29 04:00 CEST"]


def test_fall_back_night_doubles_no_slot() -> None:
    # 2026-10-25: 03:00 -> 02:00; 02:30 happens twice; a daily 02:30 job runs once
    days = slots_between("30 2 * * *", at(2026, 10, 23, 12), at(2026, 10, 26, 12))
    assert [local(t) for t in days] == ["2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"]
    # an every-30-minutes job runs at both 02:00s and both 02:30s: the real half hours
    half = slots_between("*/30 * * * *", at(2026, 10, 25, 1, 45), at(2026, 10, 25, 3, 15))
    gaps = {b - a for a, b in zip(half, half[1:], strict=False)}
    assert len(half) == 5 and gaps == {1800.0}


def test_grid_walks_forward_and_back() -> None:
    grid = CronGrid("0 2 * * *", "Europe/Copenhagen")
    t1 = grid.after(at(2026, 1, 1))
    t2 = grid.after(t1)
    assert grid.after(t1 - 1) == t1 and grid.after(t2 + 86400 * 3) == t2 + 86400 * 4
    assert grid.after(at(2025, 6, 1)) == at(2025, 6, 1, 2)
    assert grid.before(t2) == t2 and grid.before(t2 - 1) == t1


def test_deadline_after_a_slot() -> None:
    assert deadline_after(at(2026, 5, 1, 2), time(6, 0), CPH) == at(2026, 5, 1, 6)
    assert deadline_after(at(2026, 5, 1, 23), time(1, 0), CPH) == at(2026, 5, 2, 1)


# ---- judging -------------------------------------------------------------------------
NIGHTLY = make_expectations("nightly", {"schedule": "0 2 * * *", "timezone": "Europe/Copenhagen", "start_grace": "5m"})
SLOT = at(2026, 1, 15, 2)


def verdict(e: Expectations, runs: list[RunFacts], now: float, *, first: float = SLOT, coverage: Coverage = ALWAYS):
    return judge(e, sorted(runs, key=lambda r: r.started_at), now, first=first, coverage=coverage)


def test_a_slot_with_no_start_is_pending_then_late_then_missed() -> None:
    assert verdict(NIGHTLY, [], SLOT + 299).slots[0].status == "pending"
    v = verdict(NIGHTLY, [], SLOT + 300)
    assert v.slots[0].status == "late" and v.recheck_at == SLOT + 86400
    v = verdict(NIGHTLY, [], SLOT + 86400 + 1)
    assert [j.status for j in v.slots] == ["missed", "pending"]


def test_a_run_on_time_late_or_early() -> None:
    on_time = RunFacts("r1", SLOT + 20, S.COMPLETED, SLOT + 600)
    assert verdict(NIGHTLY, [on_time], SLOT + 3600).slots[0].status == "ok"
    late = RunFacts("r2", SLOT + 1200, S.RUNNING)
    j = verdict(NIGHTLY, [late], SLOT + 3600).slots[0]
    assert (j.status, j.run_id, j.findings) == ("late", "r2", ("late",))
    early = RunFacts("r3", SLOT - 30, S.RUNNING)  # a client clock half a minute fast
    assert verdict(NIGHTLY, [early], SLOT + 3600).slots[0].run_id == "r3"


def test_a_manual_run_is_not_counted_against_a_slot() -> None:
    by_hand = RunFacts("hand", SLOT + 12 * 3600, S.COMPLETED, SLOT + 12 * 3600 + 60, manual=True)
    v = verdict(NIGHTLY, [by_hand], SLOT + 86400 + 10)
    assert v.slots[0].status == "missed" and v.slots[0].run_id is None
    # and the next slot's run is still the next slot's
    nxt = RunFacts("next", SLOT + 86400 + 5, S.RUNNING)
    v = verdict(NIGHTLY, [by_hand, nxt], SLOT + 86400 + 10)
    assert [(j.status, j.run_id) for j in v.slots] == [("missed", None), ("ok", "next")]


def test_overlapping_runs_are_judged_each_against_its_own_slot() -> None:
    e = make_expectations("q", {"every": "15m", "max_runtime": "15m", "start_grace": "2m"})
    t0 = at(2026, 1, 15, 10)
    a = RunFacts("a", t0, S.COMPLETED, t0 + 20 * 60)  # ran 20 min, past the next start
    b = RunFacts("b", t0 + 15 * 60 + 10, S.COMPLETED, t0 + 15 * 60 + 10 + 300)
    v = verdict(e, [a, b], t0 + 25 * 60, first=t0)
    assert [(j.run_id, j.status) for j in v.slots] == [("a", "overran"), ("b", "ok")]


def test_every_follows_the_previous_start() -> None:
    e = make_expectations("q", {"every": "15m", "start_grace": "5m"})
    t0 = at(2026, 1, 15, 10)
    # a loop that sleeps 15 minutes after each 3-minute run starts 3 minutes after each slot: on a fixed
    # grid it would be 3, 6, 9 minutes late; following the previous start, it is never late
    runs = [RunFacts(f"r{k}", t0 + k * 18 * 60, S.COMPLETED, t0 + k * 18 * 60 + 180) for k in range(4)]
    v = verdict(e, runs, t0 + 3 * 18 * 60 + 60, first=t0)
    assert [j.status for j in v.slots] == ["ok", "ok", "ok", "ok"]
    assert v.next_at == runs[-1].started_at + 900
    # no start: the next slot is every after the slot itself
    v = verdict(e, [], t0 + 1300, first=t0)
    assert [j.status for j in v.slots] == ["missed", "late"]
    assert v.slots[1].at == t0 + 900


def test_min_runtime_and_a_start_not_known() -> None:
    e = make_expectations("m", {"schedule": "0 2 * * *", "min_runtime": "5m"})
    t = at(2026, 1, 15, 2, tz=ZoneInfo("UTC"))
    short = RunFacts("s", t + 5, S.COMPLETED, t + 7)
    assert verdict(e, [short], t + 60, first=t).slots[0].status == "too_short"
    ping = RunFacts("p", t + 5, S.COMPLETED, t + 5, start_known=False)  # a success ping alone
    assert verdict(e, [ping], t + 60, first=t).slots[0].status == "ok"
    failed = RunFacts("f", t + 5, S.FAILED, t + 7)
    assert verdict(e, [failed], t + 60, first=t).slots[0].status == "ok"


def test_deadline() -> None:
    e = make_expectations(
        "d", {"schedule": "0 2 * * *", "timezone": "Europe/Copenhagen", "deadline": "06:00", "start_grace": "10m"}
    )
    run = RunFacts("r", SLOT + 60, S.RUNNING)
    v = verdict(e, [run], SLOT + 3 * 3600)
    assert v.slots[0].deadline is None and v.recheck_at == at(2026, 1, 15, 6)
    v = verdict(e, [run], at(2026, 1, 15, 6))
    assert (v.slots[0].status, v.slots[0].deadline) == ("deadline_missed", "missed")
    done = RunFacts("r", SLOT + 60, S.COMPLETED, at(2026, 1, 15, 5, 59))
    assert verdict(e, [done], at(2026, 1, 15, 7)).slots[0].deadline == "met"
    assert verdict(e, [], at(2026, 1, 15, 7)).slots[0].status == "deadline_missed"


def test_a_slot_nobody_watched_is_unknown_not_missed() -> None:
    # the server was down from 01:00 to 03:00: no start recorded, and none could have been
    down = Coverage([(SLOT - 86400, SLOT - 3600), (SLOT + 3600, SLOT + 2 * 86400)])
    v = verdict(NIGHTLY, [], SLOT + 86400 + 60, coverage=down)
    assert [j.status for j in v.slots] == ["unknown", "pending"]
    assert verdict(NIGHTLY, [], SLOT + 600, coverage=down).slots[0].status == "unknown"
    # a start that was recorded (a spooled SDK sent it later) judges the slot whatever the coverage
    ran = RunFacts("r", SLOT + 10, S.COMPLETED, SLOT + 100)
    assert verdict(NIGHTLY, [ran], SLOT + 86400 + 60, coverage=down).slots[0].status == "ok"
    # seen late (the grace watched), then down before the next slot: late it stays, not missed nor unknown
    died = Coverage([(SLOT - 86400, SLOT + 3600)])
    j = verdict(NIGHTLY, [], SLOT + 86400 + 60, coverage=died).slots[0]
    assert (j.status, j.findings) == ("late", ("unwatched",))
    fired = wanted(NIGHTLY, verdict(NIGHTLY, [], SLOT + 600, coverage=died).slots, [], SLOT + 600)
    [late] = fired.values()
    after = verdict(NIGHTLY, [], SLOT + 86400 + 60, coverage=died)
    assert wanted(NIGHTLY, after.slots, [], SLOT + 86400 + 60) == {}
    assert "whether its run came is unknown" in cleared(late, NIGHTLY, after.slots, [], SLOT + 86400 + 60)
    # gaps shorter than the tolerance are no gaps
    flicker = Coverage([(SLOT - 100, SLOT + 100), (SLOT + 110, SLOT + 2 * 86400)], tolerance=30)
    assert verdict(NIGHTLY, [], SLOT + 86400 + 60, coverage=flicker).slots[0].status == "missed"


# ---- alerts --------------------------------------------------------------------------
def names(e: Expectations, runs: list[RunFacts], now: float, **kw: object) -> dict[str, float]:
    v = verdict(e, runs, now, **kw)  # type: ignore[arg-type]
    return {a.name: a.starts_at for a in wanted(e, v.slots, runs, now).values()}


def test_late_then_missed_is_one_alert_at_a_time() -> None:
    assert names(NIGHTLY, [], SLOT + 299) == {}
    assert names(NIGHTLY, [], SLOT + 300) == {RUN_LATE: SLOT + 300}
    assert names(NIGHTLY, [], SLOT + 86400) == {RUN_MISSED: SLOT + 86400}
    # still missed next day after its grace: RunMissed alone, counting 1 slot missed
    assert names(NIGHTLY, [], SLOT + 86400 + 600) == {RUN_MISSED: SLOT + 86400}
    late = RunFacts("r", SLOT + 86400 + 700, S.RUNNING)
    assert names(NIGHTLY, [late], SLOT + 86400 + 800) == {}


def test_overran_too_short_failing() -> None:
    e = make_expectations(
        "w",
        {
            "schedule": "0 2 * * *",
            "timezone": "Europe/Copenhagen",
            "max_runtime": "1h",
            "min_runtime": "10m",
            "failures_before_alert": 3,
            "steps": {"load": "10m"},
        },
    )
    running = RunFacts("r", SLOT + 10, S.RUNNING, steps={"load": (SLOT + 60, None)})
    assert names(e, [running], SLOT + 600) == {}
    assert set(names(e, [running], SLOT + 700)) == {RUN_OVERRAN}  # the step, 11 min in
    v = verdict(e, [running], SLOT + 3700)
    got = wanted(e, v.slots, [running], SLOT + 3700)
    assert sorted(k[2] for k in got) == ["r", "r/load"]
    short = RunFacts("s", SLOT + 10, S.COMPLETED, SLOT + 20)
    assert names(e, [short], SLOT + 30) == {RUN_TOO_SHORT: SLOT + 20}
    fails = [RunFacts(f"f{k}", SLOT + k * 86400, S.FAILED, SLOT + k * 86400 + 60, error="boom") for k in range(3)]
    now = SLOT + 2 * 86400 + 120
    assert names(e, fails[:2], now, first=SLOT) == {}
    assert names(e, fails, now, first=SLOT) == {WORKFLOW_FAILING: SLOT + 2 * 86400 + 60}
    ok = RunFacts("ok", now + 10, S.COMPLETED, now + 3600)
    assert WORKFLOW_FAILING not in names(e, [*fails, ok], now + 3601, first=SLOT)


def test_deadline_alert_resolves_when_the_run_completes() -> None:
    e = make_expectations(
        "d", {"schedule": "0 2 * * *", "timezone": "Europe/Copenhagen", "deadline": "06:00", "start_grace": "10m"}
    )
    run = RunFacts("r", SLOT + 60, S.RUNNING)
    six = at(2026, 1, 15, 6)
    assert names(e, [run], six) == {DEADLINE_MISSED_ALERT: six}
    done = RunFacts("r", SLOT + 60, S.COMPLETED, six + 2400)
    v = verdict(e, [done], six + 2500)
    assert names(e, [done], six + 2500) == {}
    fired = wanted(e, verdict(e, [run], six).slots, [run], six)
    alert = next(iter(fired.values()))
    assert "40m 00s after the deadline" in cleared(alert, e, v.slots, [done], six + 2500)


def test_a_job_that_runs_more_often_than_every_is_never_late() -> None:
    e = make_expectations("q", {"every": "15m", "start_grace": "2m"})
    t0 = at(2026, 1, 15, 9)
    runs = [RunFacts(f"r{k}", t0 + k * 13 * 60, S.COMPLETED, t0 + k * 13 * 60 + 60) for k in range(10)]
    v = verdict(e, runs, t0 + 9 * 13 * 60 + 120, first=t0)
    assert {j.status for j in v.slots} == {"ok"} and v.next_at == runs[-1].started_at + 900


def test_durations_are_capped_and_far_times_still_print() -> None:
    with pytest.raises(ExpectationError, match="at most 366 days"):
        make_expectations("x", {"every": "100000000d"})
    from flowsight.model.schedules.slots import local_text

    assert local_text(1e13, CPH) == "@10000000000000"


def test_a_grid_asked_in_the_repeated_hour_gives_a_later_slot() -> None:
    # 2026-10-25 02:10 CET, the second pass of 02:10 (00:10 UTC was the first): the next 02:30 is 01:30 UTC
    t = datetime(2026, 10, 25, 1, 10, tzinfo=ZoneInfo("UTC")).timestamp()
    nxt = CronGrid("30 2 * * *", "Europe/Copenhagen").after(t)
    assert nxt > t and local(nxt) == "2026-10-26 02:30 CET"


def test_a_deadline_missed_without_a_run_is_an_alert_per_deadline() -> None:
    e = make_expectations(
        "d", {"schedule": "0 2 * * *", "timezone": "Europe/Copenhagen", "deadline": "06:00", "start_grace": "10m"}
    )
    keys = []
    for day in (15, 16):
        now = at(2026, 1, day, 6, 1)
        v = verdict(e, [], now)
        keys += [k for k in wanted(e, v.slots, [], now) if k[0] == DEADLINE_MISSED_ALERT]
    assert len(keys) == 2 and keys[0] != keys[1]
