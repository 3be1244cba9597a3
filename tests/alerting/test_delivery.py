"""Delivery through the outbox with a real webhook receiver on 127.0.0.1 and
injected time: a receiver down for two minutes gets everything, in order,
once; a permanent error marks it broken; a retried notification is one row."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from flowsight.alerting.codec import decode_notification, encode_notification
from flowsight.alerting.delivery import Backoff, Dispatcher
from flowsight.alerting.manager import Notification
from flowsight.alerting.notifiers.webhook import WebhookNotifier
from flowsight.errors import DeliveryError
from flowsight.model.alerts import Alert, AlertStatus, Severity
from flowsight.store.sql import SqlStore
from tests.alerting.test_notifiers import Recorder
from tests.helpers import run


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Recorder]:
    srv = Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def note(n: int, receiver: str = "team", status: str = "firing") -> Notification:
    a = Alert({"alertname": "RunFailed", "workflow": "etl", "run_id": f"r{n}"}, {"summary": f"run r{n} failed"},
              Severity.ERROR, "state", starts_at=float(n), ends_at=None if status == "firing" else n + 5.0,
              status=AlertStatus(status), link=f"http://flowsight/runs/r{n}")
    return Notification(receiver, "root{alertname='RunFailed'}", status, (a,), "group", "root", float(n),
                        (("alertname", "RunFailed"),))


def dispatcher(store: SqlStore, receiver: Recorder, clock: Clock, **kw: object) -> Dispatcher:
    hook = WebhookNotifier(f"http://127.0.0.1:{receiver.server_address[1]}/hook", timeout=2.0)
    return Dispatcher(store, {"team": hook}, clock=clock, rand=lambda: 0.5, **kw)  # type: ignore[arg-type]


def test_a_notification_comes_back_from_the_outbox_exactly() -> None:
    for n in (note(1), note(2, status="resolved")):
        back = decode_notification(encode_notification(n))
        assert back == n and back.idempotency_key == n.idempotency_key


@pytest.mark.parametrize("attempt, expected", [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (50, 300.0)])
def test_backoff_doubles_up_to_its_cap(attempt: int, expected: float) -> None:
    b = Backoff()
    assert b.delay(attempt, 0.5) == expected
    assert expected * 0.9 <= b.delay(attempt, 0.0) <= b.delay(attempt, 0.999) <= expected * 1.1


def test_a_receiver_down_for_two_minutes_gets_every_notification_in_order_once(
        sqlite_store: SqlStore, receiver: Recorder) -> None:
    clock = Clock()
    d = dispatcher(sqlite_store, receiver, clock)
    receiver.status = 503
    d.enqueue([note(1), note(2)])
    start = clock.now
    while clock.now - start < 120:
        d.enqueue([note(int(clock.now - start) + 10)])  # more keep coming while it is down
        run(lambda: d.run_once())
        clock.now += 1
    failed_attempts = len(receiver.bodies)
    assert failed_attempts >= 7  # 1, 2, 4, ... 64 s: it kept trying, backing off
    receiver.status = 200
    receiver.bodies.clear()
    for _ in range(200):  # the next retry is due within the backoff cap
        run(lambda: d.run_once())
        clock.now += 1
        if sqlite_store.pending_count() == 0:
            break
    runs = [b["alerts"][0]["labels"]["run_id"] for b in receiver.bodies]
    assert runs == [f"r{n}" for n in [1, 2, *range(10, 130)]]  # every one, in the order enqueued, once
    log = sqlite_store.notification_log(limit=10_000)
    assert {r.result for r in log} == {"ok", "temporary"}
    assert sum(r.result == "temporary" for r in log) == failed_attempts
    assert sqlite_store.broken_receivers() == {}


def test_a_permanent_error_marks_the_receiver_broken_until_a_delivery_succeeds(
        store: SqlStore, receiver: Recorder) -> None:
    broken: list[tuple[str, str]] = []
    recovered: list[str] = []
    clock = Clock()
    d = dispatcher(store, receiver, clock, on_broken=lambda r, why: broken.append((r, why)),
                   on_recovered=recovered.append)
    receiver.status = 400
    d.enqueue([note(1), note(2)])
    assert run(lambda: d.run_once()) == 0
    assert [r for r, _ in broken] == ["team"] and "HTTP 400" in broken[0][1]  # once, not per notification
    assert set(store.broken_receivers()) == {"team"}
    assert store.pending_count() == 0  # both failed for good: retrying cannot help
    assert [r.result for r in store.notification_log()] == ["permanent", "permanent"]

    receiver.status = 200
    d.enqueue([note(3)])
    assert run(lambda: d.run_once()) == 1
    assert recovered == ["team"] and store.broken_receivers() == {}


def test_the_same_notification_enqueued_twice_is_delivered_once(store: SqlStore, receiver: Recorder) -> None:
    d = dispatcher(store, receiver, Clock())
    d.enqueue([note(1)])
    d.enqueue([note(1)])
    assert run(lambda: d.run_once()) == 1
    assert len(receiver.bodies) == 1
    assert receiver.headers_seen[0]["Idempotency-Key"] == note(1).idempotency_key


def test_a_receiver_no_longer_configured_fails_its_notifications_with_a_reason(
        store: SqlStore, receiver: Recorder) -> None:
    d = dispatcher(store, receiver, Clock())
    d.enqueue([note(1, receiver="gone")])
    assert run(lambda: d.run_once()) == 0
    (row,) = store.notification_log()
    assert row.result == "permanent" and "no receiver named 'gone'" in str(row.error)


class Flaky:
    """A notifier that raises what it is told to."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.got: list[Notification] = []

    async def send(self, n: Notification) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.got.append(n)


def test_a_notification_failing_for_a_day_is_given_up_and_the_receiver_marked(store: SqlStore) -> None:
    clock = Clock()
    flaky = Flaky()
    broken: list[str] = []
    d = Dispatcher(store, {"team": flaky}, clock=clock, give_up_after=3600.0, rand=lambda: 0.5,
                   on_broken=lambda r, why: broken.append(why))
    d.enqueue([note(1)])
    flaky.errors = [DeliveryError("timeout")] * 100
    while not broken:
        run(lambda: d.run_once())
        clock.now += 60
    assert "gave up" in broken[0] and store.pending_count() == 0


def test_a_notifier_bug_is_a_retried_attempt_not_a_dead_loop(store: SqlStore) -> None:
    clock = Clock()
    flaky = Flaky()
    flaky.errors = [RuntimeError("oops")]
    d = Dispatcher(store, {"team": flaky}, clock=clock, rand=lambda: 0.5)
    d.enqueue([note(1)])
    assert run(lambda: d.run_once()) == 0
    clock.now += 2
    assert run(lambda: d.run_once()) == 1
    assert [r.result for r in store.notification_log()] == ["ok", "temporary"]
    assert "RuntimeError: oops" in str(store.notification_log()[1].error)
