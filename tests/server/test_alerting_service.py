"""The alert manager at work over a real store, with injected time: rules to
receivers, dependency inhibition from flowsight.toml, a broken receiver's own
alert, and a restart that neither repeats nor forgets."""

from __future__ import annotations

from flowsight.alerting.manager import Notification
from flowsight.server.alerting import AlertingService
from flowsight.config import parse_config
from flowsight.errors import DeliveryError
from flowsight.model.alerts import Alert, AlertStatus
from flowsight.model.runs.events import make_event
from flowsight.store.sql import SqlStore
from tests.helpers import run

CONFIG = """
[alerting.route]
receiver = "team"
group_by = ["alertname", "workflow"]
group_wait = "0s"
group_interval = "10s"

[[alerting.receivers]]
name = "team"
kind = "log"

[workflows.etl]
depends_on = ["postgres-main"]
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Inbox:
    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self.fail: DeliveryError | None = None

    async def send(self, note: Notification) -> None:
        if self.fail is not None:
            raise self.fail
        self.notes.append(note)

    def names(self) -> list[tuple[str, str]]:
        return [(a.labels["alertname"], n.status) for n in self.notes for a in n.alerts]


def service(store: SqlStore, clock: Clock, inbox: Inbox) -> AlertingService:
    svc = AlertingService(store, parse_config(CONFIG), clock=clock, notifiers={"team": inbox})
    svc.load()
    return svc


def fail_run(store: SqlStore, svc: AlertingService, run_id: str, ts: float, workflow: str = "etl") -> None:
    events = [
        make_event("started", workflow, run_id, ts=ts),
        make_event("step_failed", workflow, run_id, step="load", ts=ts + 1, attrs={"error": "disk full"}),
        make_event("failed", workflow, run_id, ts=ts + 2, attrs={"error": "load failed"}),
    ]
    store.runs.write_events(events)  # straight into the store, as the SDK does: the service reads it there


def test_a_failed_run_is_told_to_the_receiver_and_a_restart_does_not_repeat_it(sqlite_store: SqlStore) -> None:
    clock, inbox = Clock(), Inbox()
    svc = service(sqlite_store, clock, inbox)
    fail_run(sqlite_store, svc, "r1", clock.now - 10)
    run(lambda: svc.step())
    assert inbox.names() == [("RunFailed", "firing")]

    again_inbox = Inbox()
    again = service(sqlite_store, clock, again_inbox)  # a new server over the same store
    clock.now += 60
    run(lambda: again.step())
    assert again_inbox.names() == []  # told before the restart: not again
    done = [make_event("started", "etl", "r2", ts=clock.now), make_event("completed", "etl", "r2", ts=clock.now + 1)]
    sqlite_store.runs.write_events(done)
    clock.now += 20
    run(lambda: again.step())
    assert again_inbox.names() == [("RunFailed", "resolved")]  # still owed after the restart


def test_an_outage_of_a_dependency_mutes_the_workflows_alerts(sqlite_store: SqlStore) -> None:
    clock, inbox = Clock(), Inbox()
    svc = service(sqlite_store, clock, inbox)
    svc.send_alert(
        Alert({"alertname": "ServiceUnavailable", "service": "postgres-main"}, source="fault", starts_at=clock.now)
    )
    fail_run(sqlite_store, svc, "r1", clock.now - 10)
    fail_run(sqlite_store, svc, "x1", clock.now - 10, workflow="report")
    run(lambda: svc.step())
    assert sorted(inbox.names()) == [("RunFailed", "firing"), ("ServiceUnavailable", "firing")]
    assert [n.alerts[0].labels["workflow"] for n in inbox.notes if n.alerts[0].name == "RunFailed"] == ["report"]
    statuses = {e.alert.labels.get("workflow", ""): svc.manager.status_of(fp) for fp, e in svc.manager.alerts.items()}
    assert statuses["etl"] == "inhibited"


def test_a_broken_receiver_raises_an_alert_of_its_own(sqlite_store: SqlStore) -> None:
    clock, inbox = Clock(), Inbox()
    svc = service(sqlite_store, clock, inbox)
    inbox.fail = DeliveryError("HTTP 404: no such hook", permanent=True)
    fail_run(sqlite_store, svc, "r1", clock.now - 10)
    run(lambda: svc.step())
    broken = [e.alert for e in svc.manager.alerts.values() if e.alert.name == "ReceiverBroken"]
    assert len(broken) == 1 and broken[0].labels["receiver"] == "team"
    assert "HTTP 404" in broken[0].annotations["description"]
    inbox.fail = None
    clock.now += 11
    run(lambda: svc.step())  # the broken alert itself goes out; the success clears the mark
    assert ("ReceiverBroken", "firing") in inbox.names()
    assert sqlite_store.alerts.broken_receivers() == {}


def test_seq_bookkeeping_scans_only_what_this_server_did_not_commit() -> None:
    from flowsight.server.rule_events import merge_ranges, seq_ranges, uncovered

    assert seq_ranges([9, 3, 4, 5]) == [(3, 5), (9, 9)]
    assert merge_ranges([(10, 12), (3, 5), (6, 9), (20, 20)]) == [(3, 12), (20, 20)]
    assert merge_ranges([(6, 8), (3, 5), (10, 12)]) == [(3, 8), (10, 12)]
    covered = merge_ranges([(3, 5), (9, 12)])
    assert uncovered(0, 15, covered) == [(1, 2), (6, 8), (13, 15)]
    assert uncovered(5, 12, covered) == [(6, 8)]
    assert uncovered(2, 5, covered) == []
    assert uncovered(0, 0, covered) == []


def test_events_committed_through_the_hub_are_not_read_back_but_others_are(sqlite_store: SqlStore) -> None:
    clock, inbox = Clock(), Inbox()
    svc = service(sqlite_store, clock, inbox)
    mine = [make_event("started", "etl", "h1", ts=clock.now), make_event("failed", "etl", "h1", ts=clock.now + 1)]
    result = sqlite_store.runs.write_events(mine)
    svc.rule_events.observe(mine, result.seqs)  # as the hub does after its commit
    fail_run(sqlite_store, svc, "d1", clock.now, workflow="direct")  # written by someone else
    events = svc.rule_events.read(clock.now)
    assert [(e.run_id, e.kind.value) for e in events] == [
        ("h1", "started"),
        ("h1", "failed"),
        ("d1", "started"),
        ("d1", "step_failed"),
        ("d1", "failed"),
    ]
    assert svc.rule_events.read(clock.now + 1) == []  # each once


def test_an_alert_resolved_right_after_a_restart_stays_resolved(sqlite_store: SqlStore) -> None:
    """The alerts a restarted server loaded are not taken in again as another
    process's: the previous server's last save is within the overlap that the
    adoption of foreign alerts reads back, and taking it in again would undo a
    resolution sent before the first round (bench/alerts.py's flood lost 1,000)."""
    clock, inbox = Clock(), Inbox()
    svc = service(sqlite_store, clock, inbox)
    labels = {"alertname": "Flood", "i": "1"}
    run(lambda: svc.send_alerts([Alert(labels, starts_at=clock.now, ends_at=clock.now + 3600)]))
    run(lambda: svc.step())
    assert inbox.names() == [("Flood", "firing")]

    clock.now += 1  # a restart, well within the overlap of the last save
    again_inbox = Inbox()
    again = service(sqlite_store, clock, again_inbox)
    resolved = Alert(labels, starts_at=clock.now - 1, ends_at=clock.now - 0.5, status=AlertStatus.RESOLVED)
    run(lambda: again.send_alerts([resolved]))
    for _ in range(3):  # the first round after the start, then past the group's interval
        clock.now += 30
        run(lambda: again.step())
    statuses = run(lambda: again.read(lambda am: [am.status_of(fp) for fp in am.alerts]))
    assert "firing" not in statuses and again_inbox.names() == [("Flood", "resolved")]
