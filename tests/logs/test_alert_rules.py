"""Log alert rules, every kind with injected time: nothing here sleeps."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.errors import ConfigError
from flowsight.model.alerts import AlertStatus, Severity
from flowsight.logs.absence import AbsenceRule
from flowsight.logs.analyzer import Analysis, LogAnalyzer
from flowsight.logs.alert_rules import (
    DEFAULT_REALERT,
    DEFAULT_RESOLVE_AFTER,
    FrequencyRule,
    MatchRule,
    NewTemplateRule,
    SpikeRule,
    field_value,
)
from flowsight.logs.ruleset import RULE_KINDS, LogRuleSet, default_prefilter, make_rule
from flowsight.logs.entries import FieldValue, LogEntry, LogLevel

T0 = 1_717_243_200.0  # 2024-06-01 12:00:00 UTC
PARIS = ZoneInfo("Europe/Paris")


def entry(
    message: str = "boom",
    level: LogLevel = LogLevel.ERROR,
    *,
    ts: float = T0,
    workflow: str | None = "etl",
    run_id: str | None = None,
    step: str | None = None,
    source: str = "/var/log/etl.log",
    **fields: FieldValue,
) -> LogEntry:
    return LogEntry(ts, level, message, source, workflow, run_id, step, fields, raw=f"{level.value.upper()} {message}")


def paris(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=PARIS).timestamp()


# ---- match ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "e", "hit"),
    [
        ({"pattern": r"timed? ?out after \d+s"}, entry("request timed out after 30s"), True),
        ({"pattern": r"timed? ?out after \d+s"}, entry("request TIMED OUT after 30s"), False),
        ({"pattern": r"timed? ?out after \d+s", "ignore_case": True}, entry("request TIMED OUT after 30s"), True),
        ({"contains": "disk full"}, entry("write failed: disk full (ENOSPC)"), True),
        ({"contains": "disk full"}, entry("write failed: Disk Full"), False),
        ({"contains": "disk full", "ignore_case": True}, entry("write failed: Disk Full"), True),
        ({"contains": "a.b"}, entry("axb"), False),  # a substring, not a regex
        ({"level": LogLevel.WARN}, entry("x", LogLevel.WARN), True),
        ({"level": LogLevel.WARN}, entry("x", LogLevel.FATAL), True),
        ({"level": LogLevel.WARN}, entry("x", LogLevel.INFO), False),
        ({"fields": {"workflow": "etl"}}, entry(workflow="etl"), True),
        ({"fields": {"workflow": "etl"}}, entry(workflow="ml"), False),
        ({"fields": {"workflow": "etl"}}, entry(workflow=None), False),
        ({"fields": {"run_id": "r1", "step": "load"}}, entry(run_id="r1", step="load"), True),
        ({"fields": {"source": "stdin"}}, entry(source="stdin"), True),
        ({"fields": {"host": "db1"}}, entry(host="db1"), True),
        ({"fields": {"host": "db1"}}, entry(host="db2"), False),
        ({"fields": {"host": "db1"}}, entry(), False),
        ({"fields": {"pid": 42}}, entry(pid="42"), True),  # compared as text: logfmt values are strings
        ({"fields": {"retry": True}}, entry(retry=True), True),
        ({"fields": {"retry": "true"}}, entry(retry=True), True),
        ({"level": LogLevel.ERROR, "contains": "boom", "fields": {"host": "a"}}, entry("boom", host="a"), True),
        (
            {"level": LogLevel.ERROR, "contains": "boom", "fields": {"host": "a"}},
            entry("boom", LogLevel.WARN, host="a"),
            False,
        ),
        ({}, entry("anything", LogLevel.TRACE), True),
    ],
)
def test_match_conditions(options: dict[str, Any], e: LogEntry, hit: bool) -> None:
    assert MatchRule("r", **options).matches(e) is hit


def test_a_match_rule_makes_an_alert_about_the_line() -> None:
    rule = MatchRule(
        "db-errors",
        pattern="connection refused",
        severity=Severity.ERROR,
        labels={"team": "data"},
        annotations={"runbook_url": "https://wiki/db"},
    )
    e = entry("connection refused by 10.0.0.5:5432", run_id="r1", step="load", ts=T0 - 2)
    [a] = rule.evaluate(e, None, T0)
    assert a.labels == {"alertname": "db-errors", "workflow": "etl", "team": "data", "severity": "error"}
    assert a.source == "log" and a.severity is Severity.ERROR and a.status is AlertStatus.FIRING
    assert a.starts_at == T0 - 2  # the line's own time
    assert a.ends_at == T0 + DEFAULT_RESOLVE_AFTER  # the alert manager resolves it then
    assert a.annotations["summary"] == "etl: connection refused by 10.0.0.5:5432"
    assert "error line from /var/log/etl.log" in a.annotations["description"]
    assert "run r1, step load" in a.annotations["description"]
    assert a.annotations["description"].endswith("ERROR connection refused by 10.0.0.5:5432")
    assert a.annotations["runbook_url"] == "https://wiki/db"
    assert a == rule.create_alert(e, T0)


def test_a_line_stamped_in_the_future_starts_the_alert_now() -> None:
    [a] = MatchRule("r").evaluate(entry(ts=T0 + 3600), None, T0)
    assert a.starts_at == T0


def test_rule_annotations_win_over_the_made_ones() -> None:
    [a] = MatchRule("r", annotations={"summary": "the ETL logs an error"}).evaluate(entry(), None, T0)
    assert a.annotations["summary"] == "the ETL logs an error"


def test_a_line_without_the_group_by_field_has_no_such_label() -> None:
    [a] = MatchRule("r").evaluate(entry(workflow=None), None, T0)
    assert a.labels == {"alertname": "r", "severity": "warning"}
    assert a.annotations["summary"] == "r: boom"


# ---- realert and keys -------------------------------------------------------------------
def test_realert_holds_back_the_same_key_until_the_cooldown_has_passed() -> None:
    rule = MatchRule("r", realert=300)
    assert len(rule.evaluate(entry(), None, T0)) == 1
    assert rule.evaluate(entry(), None, T0 + 1) == []
    assert rule.evaluate(entry(), None, T0 + 299.999) == []
    assert len(rule.evaluate(entry(), None, T0 + 300)) == 1  # the cooldown is over at exactly realert
    assert rule.evaluate(entry(), None, T0 + 301) == []


def test_realert_defaults_to_five_minutes_and_zero_sends_every_line() -> None:
    assert MatchRule("r").realert == DEFAULT_REALERT == 300.0
    rule = MatchRule("r", realert=0)
    assert [len(rule.evaluate(entry(), None, T0)) for _ in range(3)] == [1, 1, 1]


def test_realert_is_per_key() -> None:
    rule = MatchRule("r", group_by=["run_id"])
    [a] = rule.evaluate(entry(run_id="r1"), None, T0)
    [b] = rule.evaluate(entry(run_id="r2"), None, T0 + 1)
    assert rule.evaluate(entry(run_id="r1"), None, T0 + 2) == []
    assert a.labels["run_id"] == "r1" and b.labels["run_id"] == "r2" and "workflow" not in a.labels
    assert a.fingerprint != b.fingerprint


def test_group_by_a_field_makes_it_a_label_with_a_label_name() -> None:
    rule = MatchRule("r", group_by=["host", "logger.name"])
    e = LogEntry(T0, LogLevel.ERROR, "boom", "f", fields={"host": "db1", "logger.name": "app.db"})
    [a] = rule.evaluate(e, None, T0)
    assert a.labels == {"alertname": "r", "host": "db1", "logger_name": "app.db", "severity": "warning"}
    assert a.annotations["summary"].startswith("host=db1/logger.name=app.db: ")
    assert rule.key(entry(host="db1")) == ("db1", "")


def test_group_by_nothing_makes_one_alert_for_every_line() -> None:
    rule = MatchRule("r", group_by=[])
    assert len(rule.evaluate(entry(workflow="a"), None, T0)) == 1
    assert rule.evaluate(entry(workflow="b"), None, T0 + 1) == []


def test_cooldowns_are_bounded_by_max_keys() -> None:
    rule = MatchRule("r", group_by=["run_id"], max_keys=2)
    for i in range(5):
        assert len(rule.evaluate(entry(run_id=f"r{i}"), None, T0 + i)) == 1
    assert len(rule._last_alert) == 2
    assert rule.tick(T0 + 1000) == [] and rule._last_alert == {}


# ---- frequency ------------------------------------------------------------------------------
def test_frequency_fires_at_the_threshold_within_the_window_inclusive() -> None:
    rule = FrequencyRule("f", threshold=3, window=60, contains="timeout")
    assert rule.evaluate(entry("timeout"), None, T0) == []
    assert rule.evaluate(entry("timeout"), None, T0 + 30) == []
    assert rule.evaluate(entry("other"), None, T0 + 40) == []  # not a match: does not count
    [a] = rule.evaluate(entry("timeout"), None, T0 + 60)
    assert a.starts_at == T0 and a.ends_at == T0 + 60 + DEFAULT_RESOLVE_AFTER
    assert a.annotations["summary"] == "etl: 3 lines containing 'timeout' within 1m 00s"
    assert "3 in 1m 00s" in a.annotations["description"]


def test_frequency_does_not_fire_when_the_matches_are_spread_wider_than_the_window() -> None:
    rule = FrequencyRule("f", threshold=3, window=60)
    assert rule.evaluate(entry(), None, T0) == []
    assert rule.evaluate(entry(), None, T0 + 30) == []
    assert rule.evaluate(entry(), None, T0 + 60.001) == []
    assert len(rule.evaluate(entry(), None, T0 + 61)) == 1  # 30, 60.001, 61


def test_frequency_counts_per_key_and_starts_again_after_an_alert() -> None:
    rule = FrequencyRule("f", threshold=2, window=60, group_by=["host"], realert=0)
    assert rule.evaluate(entry(host="a"), None, T0) == []
    assert rule.evaluate(entry(host="b"), None, T0 + 1) == []  # a and b: one each
    [a] = rule.evaluate(entry(host="a"), None, T0 + 2)
    assert a.labels["host"] == "a"
    assert rule.evaluate(entry(host="a"), None, T0 + 3) == []  # counting from zero again
    assert len(rule.evaluate(entry(host="a"), None, T0 + 4)) == 1


def test_frequency_in_cooldown_keeps_counting() -> None:
    rule = FrequencyRule("f", threshold=2, window=600, realert=300)
    rule.evaluate(entry(), None, T0)
    assert len(rule.evaluate(entry(), None, T0 + 1)) == 1
    rule.evaluate(entry(), None, T0 + 100)
    assert rule.evaluate(entry(), None, T0 + 200) == []  # 2 within the window, but cooling down
    assert len(rule.evaluate(entry(), None, T0 + 301)) == 1


def test_frequency_forgets_keys_whose_window_has_passed() -> None:
    rule = FrequencyRule("f", threshold=5, window=60, group_by=["run_id"])
    for i in range(3):
        rule.evaluate(entry(run_id=f"r{i}"), None, T0)
    rule.tick(T0 + 60)
    assert len(rule._seen) == 3
    rule.tick(T0 + 61)
    assert rule._seen == {}


# ---- spike ----------------------------------------------------------------------------------
def feed(rule: Any, times: Iterable[float], **kw: Any) -> list[Any]:
    out = []
    for t in times:
        out += rule.evaluate(entry(**kw), None, t)
    return out


def test_spike_up_fires_when_the_current_window_is_factor_times_the_previous() -> None:
    rule = SpikeRule("s", window=60, factor=3, direction="up", min_count=5)
    rule.start(T0)
    assert feed(rule, [T0 + 10, T0 + 20]) == []  # the window before: 2
    # windows are counted in steps of 6s: at T0+120..124 the current one is
    # [66, 126) and the one before [6, 66)
    assert feed(rule, [T0 + 120 + i for i in range(5)]) == []  # 5 against 2: not 3x
    [a] = feed(rule, [T0 + 125])  # 6 against 2
    assert a.annotations["summary"] == "etl: lines went up 3.0x: 6 in the last 1m 00s, 2 in the 1m 00s before"
    assert a.ends_at == T0 + 125 + DEFAULT_RESOLVE_AFTER


def test_spike_up_from_a_quiet_window_needs_min_count() -> None:
    rule = SpikeRule("s", window=60, factor=2, direction="up", min_count=3)
    rule.start(T0)
    assert feed(rule, [T0 + 200]) == []  # 0 -> 1 is no spike
    assert feed(rule, [T0 + 201]) == []  # 0 -> 2 neither
    [a] = feed(rule, [T0 + 202])  # 0 -> 3
    assert "went up from none: 3 in the last" in a.annotations["summary"]


def test_no_spike_before_the_rule_has_watched_two_windows() -> None:
    rule = SpikeRule("s", window=60, factor=2, min_count=1)
    rule.start(T0)
    assert feed(rule, [T0 + 100 + i / 10 for i in range(20)]) == []  # the window before is not whole yet
    assert len(feed(rule, [T0 + 126])) == 1


def test_spike_down_is_found_by_tick_when_nothing_comes() -> None:
    rule = SpikeRule("s", window=60, factor=4, direction="down", min_count=10, realert=0)
    rule.start(T0)
    assert feed(rule, [T0 + 60 + i for i in range(40)]) == []  # one a second in [60, 100)
    assert rule.tick(T0 + 125) == []  # current [66, 126): 34; before [6, 66): 6
    assert rule.tick(T0 + 149.999) == []  # current [90, 150): 10; before [30, 90): 30, not 4x
    [a] = rule.tick(T0 + 150)  # current [96, 156): 4; before [36, 96): 36
    assert a.annotations["summary"] == "etl: lines went down 9.0x: 4 in the last 1m 00s, 36 in the 1m 00s before"
    assert a.starts_at == T0 + 150 and a.ends_at == T0 + 150 + DEFAULT_RESOLVE_AFTER


def test_spike_up_rule_ignores_drops_and_down_rule_ignores_bursts() -> None:
    up = SpikeRule("u", window=60, factor=2, direction="up", min_count=5, realert=0)
    down = SpikeRule("d", window=60, factor=2, direction="down", min_count=5, realert=0)
    up.start(T0)
    down.start(T0)
    assert feed(up, [T0 + 120 + i for i in range(10)]) != []  # a burst: up fires
    assert feed(down, [T0 + 120 + i for i in range(10)]) == []  # not down
    assert up.tick(T0 + 200) == []  # the drop after it: up says nothing
    assert len(down.tick(T0 + 200)) == 1  # down does


@pytest.mark.parametrize(
    ("direction", "cur", "prev", "expected"),
    [
        ("up", 30, 10, "up"),
        ("up", 29, 10, None),
        ("up", 10, 30, None),
        ("down", 10, 30, "down"),
        ("down", 11, 30, None),
        ("down", 30, 10, None),
        ("both", 30, 10, "up"),
        ("both", 10, 30, "down"),
        ("both", 20, 10, None),
        ("up", 9, 0, None),
        ("up", 10, 0, "up"),  # min_count 10
        ("down", 0, 9, None),
        ("down", 0, 10, "down"),
        ("both", 0, 0, None),
    ],
)
def test_spike_verdicts(direction: str, cur: int, prev: int, expected: str | None) -> None:
    assert SpikeRule("s", window=60, factor=3, direction=direction, min_count=10).spike(cur, prev) == expected


def test_spike_keeps_counts_per_key() -> None:
    rule = SpikeRule("s", window=60, factor=2, min_count=3, group_by=["host"])
    rule.start(T0)
    feed(rule, [T0 + 200, T0 + 201], host="a")
    feed(rule, [T0 + 200, T0 + 201], host="b")
    [a] = feed(rule, [T0 + 202], host="b")
    assert a.labels["host"] == "b"
    rule.tick(T0 + 1000)
    assert rule._counts == {}  # both windows empty: forgotten


# ---- absence: within -------------------------------------------------------------------------------
def test_absence_within_fires_at_its_deadline_and_not_before() -> None:
    rule = AbsenceRule("heartbeat", contains="heartbeat ok", within=3600)
    rule.start(T0)  # the timer starts at the start: a restart waits a whole hour
    assert rule.tick(T0 + 3599.999) == []
    [a] = rule.tick(T0 + 3600)
    assert a.status is AlertStatus.FIRING and a.starts_at == T0 + 3600 and a.ends_at is None
    assert a.labels == {"alertname": "heartbeat", "severity": "warning"}
    assert a.annotations["summary"] == "heartbeat: no lines containing 'heartbeat ok' for 1h 00m"
    assert rule.tick(T0 + 7200) == []  # firing already: not again


def test_absence_within_resolves_when_the_line_comes_and_waits_from_it() -> None:
    rule = AbsenceRule("heartbeat", contains="heartbeat ok", within=600)
    rule.start(T0)
    [fired] = rule.tick(T0 + 600)
    assert rule.evaluate(entry("something else"), None, T0 + 700) == []
    [resolved] = rule.evaluate(entry("heartbeat ok"), None, T0 + 800)
    assert resolved.status is AlertStatus.RESOLVED and resolved.ends_at == T0 + 800
    assert resolved.labels == fired.labels and "came at" in resolved.annotations["resolution"]
    assert rule.tick(T0 + 1399.999) == []
    assert len(rule.tick(T0 + 1400)) == 1


def test_a_line_that_keeps_coming_keeps_absence_quiet() -> None:
    rule = AbsenceRule("hb", within=60)
    rule.start(T0)
    for t in range(0, 600, 59):
        assert rule.evaluate(entry(), None, T0 + t) == []
        assert rule.tick(T0 + t + 58.9) == []


def test_a_late_line_before_the_tick_makes_no_alert() -> None:
    rule = AbsenceRule("hb", within=60)
    rule.start(T0)
    assert rule.evaluate(entry(), None, T0 + 61) == []  # late, but here
    assert rule.tick(T0 + 61) == []


def test_absence_with_group_by_watches_each_key_from_its_first_line() -> None:
    rule = AbsenceRule("hb", within=60, group_by=["host"])
    rule.start(T0)
    assert rule.tick(T0 + 1000) == []  # no key seen: nothing to miss
    rule.evaluate(entry(host="a"), None, T0 + 1000)
    rule.evaluate(entry(host="b"), None, T0 + 1030)
    [a] = rule.tick(T0 + 1060)
    assert a.labels["host"] == "a"
    [b] = rule.tick(T0 + 1090)
    assert b.labels["host"] == "b"


# ---- absence: by -----------------------------------------------------------------------------------
def test_deadlines_follow_the_zone_and_its_summer_time() -> None:
    rule = AbsenceRule("backup", by="03:00", timezone="Europe/Paris")
    assert rule.deadline_after(paris(2024, 6, 1, 12)) == paris(2024, 6, 2, 3)
    assert rule.deadline_after(paris(2024, 6, 2, 3)) == paris(2024, 6, 3, 3)
    assert rule.deadline_after(paris(2024, 6, 2, 3), strict=False) == paris(2024, 6, 2, 3)
    assert paris(2024, 6, 2, 3) == dt.datetime(2024, 6, 2, 1, tzinfo=dt.UTC).timestamp()  # UTC+2
    assert paris(2024, 1, 2, 3) == dt.datetime(2024, 1, 2, 2, tzinfo=dt.UTC).timestamp()  # UTC+1
    # the night clocks go forward is 23 hours long
    assert rule.deadline_after(paris(2024, 3, 30, 12)) == paris(2024, 3, 31, 3)
    assert paris(2024, 3, 31, 3) - paris(2024, 3, 30, 3) == 23 * 3600


def test_a_deadline_in_the_dst_gap_falls_an_hour_later_and_a_repeated_hour_at_its_first() -> None:
    rule = AbsenceRule("backup", by="02:30", timezone="Europe/Paris")
    gap = rule.deadline_after(paris(2024, 3, 30, 12))
    assert dt.datetime.fromtimestamp(gap, PARIS).strftime("%d %H:%M %Z") == "31 03:30 CEST"
    repeated = rule.deadline_after(paris(2024, 10, 26, 12))
    assert dt.datetime.fromtimestamp(repeated, dt.UTC).strftime("%d %H:%M") == "27 00:30"  # 02:30 CEST


def test_absence_by_fires_at_the_deadline_and_not_before() -> None:
    rule = AbsenceRule("backup", contains="backup finished", by="03:00", timezone="Europe/Paris")
    rule.start(paris(2024, 6, 1, 12))
    # 2 June 03:00 closes a day that began before the start: not judged
    assert rule.tick(paris(2024, 6, 2, 3)) == []
    # the backup of 2 June comes, none on 3 June
    assert rule.evaluate(entry("backup finished in 41m"), None, paris(2024, 6, 2, 4)) == []
    assert rule.tick(paris(2024, 6, 3, 3)) == []
    assert rule.tick(paris(2024, 6, 4, 3) - 0.001) == []
    [a] = rule.tick(paris(2024, 6, 4, 3))
    assert a.starts_at == paris(2024, 6, 4, 3) and a.ends_at is None
    assert a.annotations["summary"] == "backup: no lines containing 'backup finished' by 03:00 Europe/Paris"
    assert "none since 2024-06-03 03:00:00 CEST" in a.annotations["description"]
    assert rule.tick(paris(2024, 6, 5, 3)) == []  # still firing: not again
    [r] = rule.evaluate(entry("backup finished in 2h"), None, paris(2024, 6, 5, 9))
    assert r.status is AlertStatus.RESOLVED and r.fingerprint == a.fingerprint
    assert rule.tick(paris(2024, 6, 6, 3)) == []  # 5 June had its backup


def test_a_line_at_the_deadline_itself_counts_for_the_next_day() -> None:
    rule = AbsenceRule("backup", by="03:00")  # UTC
    start = dt.datetime(2024, 6, 1, 3, tzinfo=dt.UTC).timestamp()
    rule.start(start)  # exactly a deadline: the next day is watched whole
    rule.evaluate(entry(), None, start + 86400)  # at 2 June 03:00: late for 2 June, on time for 3 June
    assert rule.tick(start + 86400) == []  # late but here: no alert made only to be resolved
    assert rule.tick(start + 2 * 86400) == []
    assert len(rule.tick(start + 3 * 86400)) == 1


def test_a_restart_just_before_the_deadline_does_not_fire() -> None:
    rule = AbsenceRule("backup", by="03:00", timezone="Europe/Paris")
    rule.start(paris(2024, 6, 2, 2, 59))
    assert rule.tick(paris(2024, 6, 2, 3)) == []
    assert len(rule.tick(paris(2024, 6, 3, 3))) == 1


def test_absence_accepts_a_time_object() -> None:
    rule = AbsenceRule("backup", by=dt.time(3, 0))
    assert rule.by == dt.time(3, 0) and rule.timezone == "UTC"


# ---- new_template ------------------------------------------------------------------------------------
def test_new_template_fires_for_a_new_shape_at_warn_or_above() -> None:
    rule = NewTemplateRule("new-shapes", realert=0)
    analyzer = LogAnalyzer()
    e1 = entry("disk /dev/sda1 at 91% capacity", LogLevel.WARN)
    [a] = rule.evaluate(e1, analyzer.analyze(e1), T0)
    assert a.labels["template_id"] == analyzer.analyze(e1).template_id
    assert a.labels["alertname"] == "new-shapes" and a.labels["workflow"] == "etl"
    assert a.annotations["summary"] == "etl: new warn message: disk <*> at <*>% capacity"
    e2 = entry("disk /dev/sdb2 at 97% capacity", LogLevel.ERROR)
    assert rule.evaluate(e2, analyzer.analyze(e2), T0 + 1) == []  # the same shape
    e3 = entry("worker started with 8 threads", LogLevel.INFO)
    assert rule.evaluate(e3, analyzer.analyze(e3), T0 + 2) == []  # new, but info
    assert rule.evaluate(e1, None, T0 + 3) == []  # no analysis: nothing to say


def test_new_template_level_can_be_lowered_and_realert_caps_a_flood() -> None:
    rule = NewTemplateRule("n", level=LogLevel.INFO)  # realert 5m per workflow
    fresh = Analysis("abc", "x", True)
    assert len(rule.evaluate(entry("a", LogLevel.INFO), fresh, T0)) == 1
    assert rule.evaluate(entry("b", LogLevel.INFO), Analysis("def", "y", True), T0 + 1) == []
    assert len(rule.evaluate(entry("c", LogLevel.INFO, workflow="ml"), Analysis("ghi", "z", True), T0 + 2)) == 1


def test_new_template_create_alert_without_an_analysis_uses_a_fresh_template() -> None:
    a = NewTemplateRule("n").create_alert(entry("took 42 ms"), T0)
    assert "new error message: took <*> ms" in a.annotations["summary"] and a.labels["template_id"]


# ---- refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("match", {"pattern": "(unclosed"}, "invalid regex '(unclosed'"),
        ("match", {"level": "loud"}, "level must be one of trace, debug, info, warn, error, fatal, got 'loud'"),
        ("match", {"pattern": ""}, "an empty pattern matches every line"),
        ("match", {"pattern": "a", "contains": "b"}, "give pattern or contains, not both"),
        ("match", {"labels": {"alertname": "x"}}, "label 'alertname' is set by the rule itself"),
        ("match", {"labels": {"bad-name": "x"}}, "is not a label name"),
        ("match", {"realert": -1.0}, "realert must be"),
        ("match", {"resolve_after": 0.0}, "resolve_after must be"),
        ("match", {"threshold": 3}, "unexpected keyword argument 'threshold'"),
        ("frequency", {"threshold": 0, "window": 60.0}, "threshold must be a whole number of at least 1"),
        ("frequency", {"threshold": 2, "window": 0.0}, "window must be a duration greater than zero"),
        ("spike", {"window": 60.0, "factor": 1.0}, "factor must be a number greater than 1"),
        ("spike", {"window": 60.0, "direction": "sideways"}, "direction must be one of up, down, both"),
        ("spike", {"window": 60.0, "min_count": 0}, "min_count must be a whole number of at least 1"),
        ("absence", {}, "give within (a duration) or by (a time of day), one of them"),
        ("absence", {"within": 60.0, "by": "03:00"}, "one of them"),
        ("absence", {"by": "3am"}, "expected a time of day as HH:MM"),
        ("absence", {"by": "24:00"}, "expected a time of day as HH:MM"),
        ("absence", {"by": "03:00", "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ("regex", {}, "unknown kind 'regex'; expected one of match, frequency, spike, absence, new_template"),
    ],
)
def test_a_bad_rule_is_refused_with_its_name_and_the_reason(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_rule(kind, "the-rule", **options)
    assert str(info.value).startswith("rule 'the-rule': ")
    assert message in str(info.value)


def test_every_kind_is_registered_under_its_name() -> None:
    assert sorted(RULE_KINDS) == ["absence", "frequency", "match", "new_template", "spike"]
    assert all(cls.kind == kind for kind, cls in RULE_KINDS.items())


# ---- the rule set --------------------------------------------------------------------------------------
def test_the_rule_set_runs_every_rule_that_matches_in_order() -> None:
    rules = [
        MatchRule("a", contains="boom"),
        FrequencyRule("b", threshold=1, window=60),
        MatchRule("c", contains="nope"),
        NewTemplateRule("d"),
    ]
    rs = LogRuleSet(rules, now=T0, prefilter=None)
    out = rs.evaluate(entry("boom"), Analysis("t1", "boom", True), T0)
    assert [a.name for a in out] == ["a", "b", "d"]


class FakePrefilter:
    """Says which rules' patterns search the text; records what it was asked."""

    def __init__(self, patterns: list[tuple[int, str, bool]]) -> None:
        self.patterns = patterns
        self.asked: list[str] = []

    def __call__(self, text: str) -> list[int]:
        self.asked.append(text)
        return [i for i, rx, ic in self.patterns if re.search(rx, text, re.I if ic else 0)]


def test_the_prefilter_picks_the_rules_with_a_text_condition() -> None:
    rules = [
        MatchRule("a", contains="a.b"),
        MatchRule("b", pattern=r"\d+ errors", ignore_case=True),
        MatchRule("c", level=LogLevel.FATAL),
        FrequencyRule("d", contains="x", threshold=1, window=1),
    ]
    rs = LogRuleSet(rules, now=T0, prefilter=None)
    assert rs.patterns() == [(0, r"a\.b", False), (1, r"\d+ errors", True), (3, "x", False)]
    pf = FakePrefilter(rs.patterns())
    rs = LogRuleSet(rules, now=T0, prefilter=pf)
    assert [a.name for a in rs.evaluate(entry("3 ERRORS", LogLevel.FATAL), None, T0)] == ["b", "c"]
    assert [a.name for a in rs.evaluate(entry("a.b and x", LogLevel.INFO), None, T0 + 1)] == ["a", "d"]
    assert pf.asked == ["3 ERRORS", "a.b and x"]


def test_a_prefilter_that_says_too_much_changes_nothing() -> None:
    rules = [MatchRule("a", contains="boom"), MatchRule("b", contains="bang")]
    rs = LogRuleSet(rules, now=T0, prefilter=lambda text: [0, 1])
    assert [a.name for a in rs.evaluate(entry("boom"), None, T0)] == ["a"]


def test_the_default_prefilter_is_the_multi_matcher_when_there_is_one() -> None:
    rules = [MatchRule("a", contains="boom"), MatchRule("b", pattern="ba+ng")]
    rs = LogRuleSet(rules, now=T0)
    try:
        import flowsight.logs.match  # noqa: F401
    except ImportError:
        assert rs.prefilter is None
    else:
        assert rs.prefilter is not None and sorted(rs.prefilter("a baaang and a boom")) == [0, 1]
    assert [a.name for a in rs.evaluate(entry("baaang"), None, T0)] == ["b"]
    assert default_prefilter([]) is None


@pytest.mark.parametrize("prefilter", ["default", "none"])
def test_a_batch_gives_what_entry_by_entry_gives(prefilter: str) -> None:
    def rules() -> list[Any]:
        return [
            MatchRule("a", contains="timeout", group_by=["run_id"], realert=0),
            MatchRule("b", pattern=r"(?i)refused \d+", group_by=["run_id"], realert=0),
            FrequencyRule("c", pattern="ba+d", threshold=2, window=60),
            NewTemplateRule("d", realert=0),
            MatchRule("e", level=LogLevel.FATAL, realert=0),
        ]

    messages = [
        "timeout",
        "conn REFUSED 3",
        "baaad",
        "ok",
        "baad timeout",
        "é timeout",
        "two\nlines baad",
        "fatal thing",
    ]
    entries = [
        entry(m, LogLevel.FATAL if "fatal" in m else LogLevel.ERROR, run_id=f"r{i}") for i, m in enumerate(messages)
    ]
    kw: dict[str, Any] = {} if prefilter == "default" else {"prefilter": None}
    a1, a2 = LogAnalyzer(), LogAnalyzer()
    one, many = LogRuleSet(rules(), now=T0, **kw), LogRuleSet(rules(), now=T0, **kw)
    by_one = [a for e in entries for a in one.evaluate(e, a1.analyze(e), T0)]
    by_many = many.evaluate_many(entries, [a2.analyze(e) for e in entries], T0)
    assert by_one == by_many
    assert [a.name for a in by_one] == ["a", "d", "b", "d", "d", "d", "a", "c", "d", "a", "d", "d", "d", "e"]
    with pytest.raises(ValueError, match="one analysis per entry"):
        many.evaluate_many(entries, [], T0)


def test_the_rule_set_ticks_every_rule_and_starts_them_at_its_start() -> None:
    rs = LogRuleSet([AbsenceRule("hb", within=60), MatchRule("m")], now=T0)
    assert rs.tick(T0 + 59) == []
    assert [a.name for a in rs.tick(T0 + 60)] == ["hb"]


def test_the_rule_set_refuses_two_rules_of_one_name() -> None:
    with pytest.raises(ConfigError, match="rule 'x': two log rules have this name"):
        LogRuleSet([MatchRule("x"), MatchRule("x")], now=T0)


def test_alerts_about_a_run_link_to_it() -> None:
    rs = LogRuleSet([MatchRule("m", group_by=["run_id"]), MatchRule("n")], now=T0, external_url="http://fs:8640/")
    a, b = rs.evaluate(entry(run_id="r1"), None, T0)
    assert a.link == "http://fs:8640/runs/r1" and b.link is None


# ---- properties ----------------------------------------------------------------------------------------
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(texts, texts, st.booleans())
def test_a_contains_rule_is_its_escaped_regex(needle: str, haystack: str, ignore_case: bool) -> None:
    if not needle:
        return
    rule = MatchRule("r", contains=needle, ignore_case=ignore_case)
    assert rule.pattern_regex is not None
    by_regex = re.search(rule.pattern_regex, haystack, re.I if ignore_case else 0) is not None
    assert rule.matches(entry(haystack, LogLevel.TRACE)) is by_regex
    if not ignore_case:
        assert by_regex is (needle in haystack)


@given(
    st.dictionaries(
        st.sampled_from(["host", "pid", "workflow", "x.y"]),
        st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans()),
        max_size=3,
    )
)
def test_a_rule_on_an_entrys_own_fields_matches_it(values: dict[str, FieldValue]) -> None:
    e = LogEntry(
        T0,
        LogLevel.INFO,
        "m",
        "f",
        str(values.get("workflow", "etl")),
        fields={k: v for k, v in values.items() if k != "workflow"},
    )
    wanted = {k: field_value(e, k) for k in values}
    assert MatchRule("r", fields=wanted).matches(e)


# ---- through the alert manager --------------------------------------------------------------------------
def test_the_alert_manager_resolves_line_alerts_after_resolve_after_and_absence_when_the_line_comes() -> None:
    from flowsight.alerting.manager import AlertManager
    from flowsight.model.alerts.routing import Route

    now = [T0]
    am = AlertManager(Route("team", group_wait=0, group_interval=1, repeat_interval=3600), clock=lambda: now[0])
    rs = LogRuleSet(
        [MatchRule("errors", level=LogLevel.ERROR), AbsenceRule("hb", contains="heartbeat", within=60)], now=T0
    )

    def step(t: float, e: LogEntry | None = None) -> list[tuple[str, str, str]]:
        now[0] = t
        for a in (rs.evaluate(e, None, t) if e is not None else []) + rs.tick(t):
            am.send_alert(a)
        return [(n.status, a.name, a.status.value) for n in am.tick(t) for a in n.alerts]

    assert step(T0, entry("boom")) == [("firing", "errors", "firing")]
    assert step(T0 + 60) == [("firing", "hb", "firing")]  # groups by alertname: one notification each
    assert step(T0 + 120, entry("heartbeat", LogLevel.INFO)) == [("resolved", "hb", "resolved")]
    assert step(T0 + DEFAULT_RESOLVE_AFTER - 1, entry("heartbeat", LogLevel.INFO)) == []
    assert step(T0 + DEFAULT_RESOLVE_AFTER) == [("resolved", "errors", "resolved")]
