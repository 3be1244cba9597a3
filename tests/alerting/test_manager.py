"""The alert manager's decisions with injected time: grouping, repeat, dedup,
silences, inhibition, flapping, and resolved notices that are never lost."""

from __future__ import annotations

from dataclasses import replace

from flowsight.alerting.manager import AlertManager, Notification
from flowsight.model.alerts import Alert, AlertStatus, InhibitRule, Severity, Silence, parse_matcher
from flowsight.model.alerts.flapping import FlapPolicy
from flowsight.model.alerts.routing import Route


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def manager(**route: object) -> tuple[AlertManager, Clock]:
    clock = Clock()
    opts: dict[str, object] = {
        "group_by": ("workflow",),
        "group_wait": 30.0,
        "group_interval": 300.0,
        "repeat_interval": 3600.0,
        **route,
    }
    return AlertManager(
        Route("team", **opts),
        clock=clock,  # type: ignore[arg-type]
        flap_policy=FlapPolicy(max_changes=4, window=600, settle=300),
    ), clock


def failed(run: str, workflow: str = "etl") -> Alert:
    return Alert({"alertname": "RunFailed", "workflow": workflow, "run": run})


def fps(notes: list[Notification]) -> list[list[tuple[str, str]]]:
    return [[(a.labels["run"], a.status.value) for a in n.alerts] for n in notes]


def test_a_group_waits_then_sends_its_alerts_together() -> None:
    am, clock = manager()
    am.send_alert(failed("1"))
    clock.now = 10
    am.send_alert(failed("2"))
    assert am.tick(29) == []
    notes = am.tick(30)
    assert fps(notes) == [[("1", "firing"), ("2", "firing")]] and notes[0].status == "firing"


def test_the_same_alert_sent_again_is_one_alert() -> None:
    am, clock = manager()
    for t in (0, 5, 10):
        clock.now = t
        am.send_alert(failed("1"))
    assert fps(am.tick(30)) == [[("1", "firing")]]
    assert am.alerts[failed("1").fingerprint].alert.starts_at == 0.0


def test_an_unchanged_group_repeats_after_repeat_interval_and_a_change_after_group_interval() -> None:
    am, clock = manager()
    am.send_alert(failed("1"))
    am.tick(30)
    assert am.tick(30 + 3599) == []
    assert fps(am.tick(30 + 3600)) == [[("1", "firing")]]
    clock.now = 4000
    am.send_alert(failed("2"))
    assert am.tick(3630 + 299) == []
    assert fps(am.tick(3630 + 300)) == [[("1", "firing"), ("2", "firing")]]


def test_groups_are_separate_per_group_by_value() -> None:
    am, _ = manager()
    am.send_alert(failed("1", "etl"))
    am.send_alert(failed("2", "report"))
    assert sorted(fps(am.tick(30))) == [[("1", "firing")], [("2", "firing")]]


def test_a_resolved_alert_is_told_once_then_forgotten() -> None:
    am, clock = manager()
    am.send_alert(failed("1"))
    am.tick(30)
    clock.now = 100
    am.resolve(failed("1"))
    notes = am.tick(330)
    assert fps(notes) == [[("1", "resolved")]] and notes[0].status == "resolved"
    assert am.tick(330 + 10_000) == [] and am.alerts == {}


def test_a_silenced_alert_is_not_sent() -> None:
    am, clock = manager()
    am.add_silence(Silence("s", (parse_matcher("workflow=etl"),), 0, 1000, "ana", "maintenance"))
    am.send_alert(failed("1"))
    assert am.tick(30) == []
    assert am.status_of(failed("1").fingerprint) == "silenced"


def test_resolved_is_sent_even_when_the_alert_was_silenced_in_between() -> None:
    am, clock = manager()
    am.send_alert(failed("1"))
    assert fps(am.tick(30)) == [[("1", "firing")]]
    clock.now = 40
    am.add_silence(Silence("s", (parse_matcher("workflow=etl"),), 40, 10_000, "ana", "maintenance"))
    clock.now = 50
    am.resolve(failed("1"))
    assert fps(am.tick(330)) == [[("1", "resolved")]]


def test_a_silence_expires_by_itself_and_can_be_expired_early() -> None:
    am, clock = manager()
    am.add_silence(Silence("s", (parse_matcher("workflow=etl"),), 0, 100, "ana", ""))
    am.send_alert(failed("1"))
    assert am.tick(30) == []
    clock.now = 200
    am.send_alert(replace(failed("2")))
    assert fps(am.tick(330)) == [[("1", "firing"), ("2", "firing")]]
    am2, clock2 = manager()
    am2.add_silence(Silence("s", (parse_matcher("workflow=etl"),), 0, 10_000, "ana", ""))
    clock2.now = 5
    assert am2.expire_silence("s") and not am2.expire_silence("nope")
    am2.send_alert(failed("1"))
    assert fps(am2.tick(40)) == [[("1", "firing")]]


def test_a_firing_service_alert_inhibits_the_step_failures_that_depend_on_it() -> None:
    clock = Clock()
    rule = InhibitRule(
        source=(parse_matcher("alertname=ServiceUnavailable"),),
        target=(parse_matcher("alertname=StepFailed"),),
        equal=("service",),
    )
    am = AlertManager(Route("team", group_by=("alertname",), group_wait=0), inhibit_rules=[rule], clock=clock)
    am.send_alert(Alert({"alertname": "ServiceUnavailable", "service": "postgres-main"}))
    am.send_alert(Alert({"alertname": "StepFailed", "service": "postgres-main", "run": "1"}))
    am.send_alert(Alert({"alertname": "StepFailed", "service": "redis", "run": "2"}))
    names = sorted((a.labels["alertname"], a.labels.get("run", "")) for n in am.tick(0) for a in n.alerts)
    assert names == [("ServiceUnavailable", ""), ("StepFailed", "2")]


def test_a_flapping_alert_is_announced_once_then_quiet_until_it_settles() -> None:
    am, clock = manager(group_wait=0.0, group_interval=1.0)
    sent: list[Notification] = []
    alert = failed("1")
    for t in range(0, 200, 20):  # firing, resolved, firing, ... every 20 s
        clock.now = float(t)
        am.send_alert(alert) if (t // 20) % 2 == 0 else am.resolve(alert)
        sent += am.tick(float(t))
        sent += am.tick(float(t) + 1)
    reasons = [n.reason for n in sent]
    assert reasons.count("flapping") == 1
    first_flap = reasons.index("flapping")
    assert all(r == "flapping" for r in reasons[first_flap:])  # nothing after it until it settles
    clock.now = 180 + 299
    assert [n.reason for n in am.tick(180 + 299)] == []
    settled = am.tick(180 + 300)
    assert [(n.reason, n.status) for n in settled] == [("settled", "resolved")]


def test_the_idempotency_key_is_stable_for_the_same_notification() -> None:
    am, _ = manager()
    am.send_alert(failed("1"))
    note = am.tick(30)[0]
    assert note.idempotency_key == replace(note).idempotency_key
    # made of what it says, not when it was made: another replica making it again makes the same key
    assert note.idempotency_key == replace(note, at=31).idempotency_key
    assert note.idempotency_key != replace(note, sequence=7).idempotency_key  # a repeat is another notification
    again = replace(note.alerts[0], starts_at=note.alerts[0].starts_at + 60)
    assert note.idempotency_key != replace(note, alerts=(again,)).idempotency_key  # firing anew


def test_a_repeat_has_a_key_of_its_own_and_two_managers_make_the_same_notification_with_the_same_key() -> None:
    """Two replicas' managers holding the same alerts tell the same thing under
    the same key (the outbox keeps one row a key); a repeat after
    ``repeat_interval`` is another key."""
    first, clock1 = manager()
    second, clock2 = manager()
    for am, clock in ((first, clock1), (second, clock2)):
        clock.now = 10
        am.send_alert(failed("1"))
    a, b = first.tick(40)[0], second.tick(45)[0]
    assert a.idempotency_key == b.idempotency_key and a.sequence == 0
    later = a.at + first.groups[a.group_key].route.repeat_interval + 1
    clock1.now = later
    repeat = first.tick(later)
    assert len(repeat) == 1 and repeat[0].sequence > 0 and repeat[0].idempotency_key != a.idempotency_key


def test_alert_with_ends_at_in_the_past_is_a_resolution() -> None:
    am, clock = manager()
    am.send_alert(failed("1"))
    am.tick(30)
    clock.now = 60
    am.send_alert(replace(failed("1"), ends_at=50.0))
    assert am.alerts[failed("1").fingerprint].alert.status is AlertStatus.RESOLVED


def test_a_resolution_sent_without_the_start_keeps_when_the_alert_started() -> None:
    """A client resolving an alert (the API fills a missing start with now)
    need not remember when it started; a later firing is a new start."""
    am, clock = manager()
    clock.now = 100
    am.send_alert(replace(failed("1"), starts_at=100.0))
    am.tick(130)
    clock.now = 200
    am.send_alert(replace(failed("1"), starts_at=200.0, ends_at=200.0))
    kept = am.alerts[failed("1").fingerprint].alert
    assert (kept.status, kept.starts_at, kept.ends_at) == (AlertStatus.RESOLVED, 100.0, 200.0)
    clock.now = 300
    am.send_alert(replace(failed("1"), starts_at=300.0))
    assert am.alerts[failed("1").fingerprint].alert.starts_at == 300.0


# ---- dependencies ------------------------------------------------------------
def _outage(service: str = "postgres-main") -> Alert:
    return Alert({"alertname": "ServiceUnavailable", "service": service}, source="fault", severity=Severity.CRITICAL)


def _step_alert(workflow: str) -> Alert:
    return Alert({"alertname": "StepFailedRepeatedly", "workflow": workflow, "step": "load"}, source="execution")


def test_an_outage_of_a_declared_dependency_mutes_the_workflows_step_alerts_only() -> None:
    clock = Clock()
    am = AlertManager(
        Route("team", group_by=("...",), group_wait=0.0),
        clock=clock,
        dependencies={"nightly-etl": ["postgres-main"], "report": ["s3"]},
    )
    am.send_alert(_outage())
    am.send_alert(_step_alert("nightly-etl"))
    am.send_alert(_step_alert("report"))
    sent = {a.labels["alertname"] + ":" + a.labels.get("workflow", "") for n in am.tick(0) for a in n.alerts}
    assert sent == {"ServiceUnavailable:", "StepFailedRepeatedly:report"}
    assert am.status_of(_step_alert("nightly-etl").fingerprint) == "inhibited"
    assert "postgres-main is down" in str(am.mute_reason(_step_alert("nightly-etl"), 0))
    # the outage ends: the step alert is no longer muted and goes out
    clock.now = 10
    am.resolve(_outage())
    assert am.mute_reason(_step_alert("nightly-etl"), 10) is None


def test_a_fault_for_a_service_nobody_depends_on_mutes_nothing() -> None:
    am = AlertManager(Route("team"), dependencies={"nightly-etl": ["postgres-main"]})
    am.send_alert(_outage("redis"))
    assert am.mute_reason(_step_alert("nightly-etl"), am.clock()) is None


def test_an_outage_sent_again_as_another_source_stops_muting_and_its_resolution_too() -> None:
    clock = Clock()
    am = AlertManager(Route("team"), clock=clock, dependencies={"nightly-etl": ["postgres-main"]})
    am.send_alert(_outage())
    assert am.mute_reason(_step_alert("nightly-etl"), 0) is not None
    am.send_alert(replace(_outage(), source="performance"))  # the same labels, the same alert: no fault now
    assert am.mute_reason(_step_alert("nightly-etl"), 0) is None
    am.send_alert(_outage())
    am.resolve(replace(_outage(), source="performance"))
    assert am.mute_reason(_step_alert("nightly-etl"), 0) is None


# ---- restart -------------------------------------------------------------------
def test_a_restored_manager_still_owes_resolved_and_does_not_repeat_firing() -> None:
    am, clock = manager()
    am.send_alert(failed("1"))
    assert fps(am.tick(30)) == [[("1", "firing")]]
    snap = am.snapshot()
    assert [s.told for s in snap] == [("team",)]

    again, clock2 = manager()
    clock2.now = 100
    again.restore(snap)
    assert again.tick(100) == [] and again.tick(100 + 299) == []  # told before the restart: no repeat
    again.send_alert(replace(failed("1"), status=AlertStatus.RESOLVED))
    assert fps(again.tick(100 + 300)) == [[("1", "resolved")]]
    assert again.snapshot() == []


def test_a_restored_silenced_alert_is_still_told_resolved() -> None:
    am, clock = manager()
    am.send_alert(failed("1"))
    am.tick(30)
    am.add_silence(Silence("s1", (parse_matcher("run=1"),), 0, 10_000, "me", "quiet"))
    again, clock2 = manager()
    again.restore(am.snapshot())
    again.add_silence(Silence("s1", (parse_matcher("run=1"),), 0, 10_000, "me", "quiet"))
    assert again.status_of(failed("1").fingerprint) == "silenced"
    again.resolve(failed("1"))
    assert fps(again.tick(300)) == [[("1", "resolved")]]


def test_a_firing_alert_resolves_by_itself_when_its_end_passes() -> None:
    am, clock = manager()
    am.send_alert(replace(failed("1"), ends_at=300.0))  # e.g. now + resolve_timeout, not sent again
    assert fps(am.tick(30)) == [[("1", "firing")]]
    clock.now = 200
    am.send_alert(replace(failed("1"), ends_at=500.0))  # sent again: its end moves on
    assert am.tick(330) == []
    clock.now = 500
    assert fps(am.tick(500)) == [[("1", "resolved")]]


# ---- a flood -------------------------------------------------------------------
FLOOD = 20_000  # per alertname: forgetting them took minutes when it was quadratic


def test_a_flood_resolved_while_as_many_are_owed_is_told_and_forgotten_alert_by_alert() -> None:
    """Each alert in a group of its own: forgetting one scanned every group
    and every (receiver, alert) told, so a flood took O(n^2) steps."""
    am, clock = manager(group_by=("alertname", "i"), group_wait=0.0, group_interval=1.0)
    keep = [Alert({"alertname": "Keep", "i": str(i)}) for i in range(FLOOD)]
    gone = [Alert({"alertname": "Gone", "i": str(i)}) for i in range(FLOOD)]
    for a in keep + gone:
        am.send_alert(a)
    assert sum(len(n.alerts) for n in am.tick(0)) == 2 * FLOOD
    clock.now = 10
    for a in gone:
        am.resolve(a)
    told = am.tick(10)
    assert {(n.status, a.labels["alertname"]) for n in told for a in n.alerts} == {("resolved", "Gone")}
    assert len(told) == FLOOD
    assert len(am.alerts) == FLOOD and {e.alert.name for e in am.alerts.values()} == {"Keep"}
    assert len(am.groups) == FLOOD and am.owed(keep[0].fingerprint) == ("team",)
    states, forgotten = am.changes()
    assert len(states) == FLOOD and sorted(forgotten) == sorted(a.fingerprint for a in gone)


def test_a_big_group_is_told_in_notifications_of_at_most_max_alerts() -> None:
    am, clock = manager(group_wait=0.0)
    am.max_alerts = 400
    for i in range(1000):
        am.send_alert(failed(str(i)))
    notes = am.tick(0)
    assert [len(n.alerts) for n in notes] == [400, 400, 200]
    assert {n.group_key for n in notes} == {notes[0].group_key} and {n.status for n in notes} == {"firing"}
    assert len({a.fingerprint for n in notes for a in n.alerts}) == 1000
    assert len({n.idempotency_key for n in notes}) == 3
