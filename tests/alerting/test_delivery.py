"""Delivery through the outbox, on both stores, with real webhook receivers
on 127.0.0.1 and injected time: a receiver down for two minutes gets
everything, in order, once; a permanent error marks it broken until a
delivery succeeds; a retried notification is one row and one delivery; two
servers sharing a store never send one notification twice at once."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.alerting.codec import decode_notification, encode_notification
from flowsight.alerting.delivery import Backoff, DeliveryWorker, Dispatcher
from flowsight.alerting.manager import Notification
from flowsight.alerting.notifiers.webhook import WebhookNotifier
from flowsight.errors import ConfigError, DeliveryError
from flowsight.model.alerts import Alert, AlertStatus, Severity
from flowsight.store import open_store
from flowsight.store.alerting import Outgoing
from flowsight.store.sql import SqlStore
from tests.helpers import run

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Hook(ThreadingHTTPServer):
    """A webhook receiver: answers ``status``, keeps what it accepted. With
    ``gate`` set, each request waits for it (a send held in flight)."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.status = 200
        self.reply: bytes | None = None  # the body of the answer (default: ok / nope)
        self.accepted: list[dict[str, Any]] = []
        self.requests = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def start(self) -> Hook:
        # a short poll: shutdown() returns at once rather than in half a second
        self._thread = threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
        self.server_close()

    def keys(self) -> list[str]:
        return [b["idempotencyKey"] for b in self.accepted]


class _Handler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests += 1
        self.server.entered.set()
        if self.server.gate is not None:
            self.server.gate.wait(10)
        status = self.server.status
        if status < 300:
            self.server.accepted.append(body)
        self.send_response(status)
        self.end_headers()
        reply = self.server.reply
        self.wfile.write(reply if reply is not None else b"ok" if status < 300 else b"nope")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hooks() -> Iterator[Callable[..., Hook]]:
    """Make started receivers (closed after the test)."""
    made: list[Hook] = []

    def make(port: int = 0, *, start: bool = True) -> Hook:
        h = Hook(port)
        made.append(h)
        return h.start() if start else h

    yield make
    for h in made:
        h.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def note(n: int, receiver: str = "team", status: str = "firing", at: float | None = None) -> Notification:
    a = Alert(
        {"alertname": "RunFailed", "workflow": "etl", "run_id": f"r{n}"},
        {"summary": f"run r{n} failed"},
        Severity.ERROR,
        "state",
        starts_at=float(n),
        ends_at=None if status == "firing" else n + 5.0,
        status=AlertStatus(status),
        link=f"http://flowsight/runs/r{n}",
    )
    return Notification(
        receiver,
        "root{alertname='RunFailed'}",
        status,
        (a,),
        "group",
        "root",
        float(n) if at is None else at,
        (("alertname", "RunFailed"),),
    )


def webhook(url: str) -> WebhookNotifier:
    return WebhookNotifier(url, timeout=2.0)


def dispatcher(store: SqlStore, hook: Hook, clock: Clock, **kw: Any) -> Dispatcher:
    return Dispatcher(store, {"team": webhook(hook.url)}, clock=clock, rand=lambda: 0.5, **kw)


# ---- codec --------------------------------------------------------------------------
def test_a_notification_comes_back_from_the_outbox_exactly() -> None:
    for n in (note(1), note(2, status="resolved"), note(3, at=T0 + 0.1)):
        back = decode_notification(encode_notification(n))
        assert back == n and back.idempotency_key == n.idempotency_key


_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=10)
_TIME = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
_ALERT = st.builds(
    Alert,
    st.dictionaries(_TEXT, _TEXT, max_size=4),
    st.dictionaries(_TEXT, _TEXT, max_size=3),
    st.sampled_from(Severity),
    _TEXT,
    _TIME,
    st.none() | _TIME,
    st.sampled_from(AlertStatus),
    st.none() | _TEXT,
)


@given(
    _TEXT,
    _TEXT,
    st.lists(_ALERT, max_size=3).map(tuple),
    st.sampled_from(["group", "flapping", "settled"]),
    _TIME,
    st.lists(st.tuples(_TEXT, _TEXT), max_size=3).map(tuple),
)
def test_any_notification_round_trips_exactly(
    receiver: str,
    key: str,
    alerts: tuple[Alert, ...],
    reason: str,
    at: float,
    group_labels: tuple[tuple[str, str], ...],
) -> None:
    n = Notification(receiver, key, "firing", alerts, reason, "root", at, group_labels)
    back = decode_notification(encode_notification(n))
    assert back == n and back.idempotency_key == n.idempotency_key
    assert [dict(a.labels) for a in back.alerts] == [dict(a.labels) for a in alerts]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "not an encoded notification"),
        (b'{"receiver": 1}', "not an encoded notification"),
        (
            b'{"v": 99, "receiver": "a", "group_key": "g", "status": "firing", '
            b'"alerts": [], "reason": "group", "route": "r", "at": 1}',
            "upgrade",
        ),
    ],
)
def test_a_body_that_is_not_a_notification_is_refused_with_the_reason(body: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        decode_notification(body)


# ---- backoff ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (50, 300.0), (5000, 300.0)]
)
def test_backoff_doubles_up_to_its_cap(attempt: int, expected: float) -> None:
    b = Backoff()
    assert b.delay(attempt, 0.5) == expected
    assert expected * 0.9 <= b.delay(attempt, 0.0) <= b.delay(attempt, 0.999) <= expected * 1.1


@pytest.mark.parametrize("kw", [{"base": 0}, {"factor": 0.5}, {"cap": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}])
def test_a_backoff_that_makes_no_sense_is_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="backoff"):
        Backoff(**kw)


def test_a_lease_not_longer_than_a_send_is_refused(store: SqlStore) -> None:
    with pytest.raises(ConfigError, match="lease"):
        Dispatcher(store, {}, send_timeout=30, lease=30)


# ---- the promise ----------------------------------------------------------------------
@pytest.mark.parametrize("outage", ["HTTP 503", "port closed"])
def test_a_receiver_down_for_two_minutes_gets_every_notification_in_order_once(
    store: SqlStore, hooks: Callable[..., Hook], outage: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    team: Hook | None = None
    if outage == "HTTP 503":
        team = hooks(port)
        team.status = 503
    ops = hooks()  # a second receiver, up all along: not held back by the first
    clock = Clock()
    d = Dispatcher(
        store,
        {"team": webhook(f"http://127.0.0.1:{port}/hook"), "ops": webhook(ops.url)},
        clock=clock,
        rand=lambda: 0.5,
    )
    sent_team: list[str] = []
    sent_ops: list[tuple[str, float]] = []

    async def main() -> None:
        nonlocal team
        for second in range(240):
            clock.now = T0 + second
            if second in (0, 30, 90):  # notifications keep coming while it is down
                batch = [note(second + i, at=clock.now) for i in range(3)]
                d.enqueue([*batch, note(second, "ops", at=clock.now)])
                sent_team.extend(n.idempotency_key for n in batch)
                sent_ops.append((note(second, "ops", at=clock.now).idempotency_key, clock.now))
            if second == 120:  # it is back
                if team is None:
                    team = hooks(port)
                else:
                    team.status = 200
            await d.run_once()

    run(main)
    assert team is not None and team.keys() == sent_team  # every one, in the order enqueued, once
    assert ops.keys() == [k for k, _ in sent_ops]
    assert [r.at for r in reversed(store.alerts.notification_log(receiver="ops"))] == [at for _, at in sent_ops]

    log = list(reversed(store.alerts.notification_log(receiver="team", limit=1000)))
    head = store.alerts.outbox_items(receiver="team")[0].id
    # the head failed at 0, 1, 3, 7, 15, 31, 63 s (backing off) and went through at 127 s
    assert [(r.at - T0, r.attempt, r.result, r.outbox_id) for r in log[:8]] == [
        *((t, i + 1, "temporary", head) for i, t in enumerate([0, 1, 3, 7, 15, 31, 63])),
        (127, 8, "ok", head),
    ]
    assert [r.result for r in log[8:]] == ["ok"] * 8 and all(r.at == T0 + 127 for r in log[8:])
    assert all(outage.split()[-1] in str(r.error) or "ConnectError" in str(r.error) for r in log[:7])
    assert store.alerts.pending_count() == 0 and store.alerts.broken_receivers() == {}
    assert (d.sent, d.retried, d.failed) == (12, 7, 0)  # nothing retried counted twice
    # the operator hears of the outage once, not per retry, and of its end
    said = [r.getMessage() for r in caplog.records if r.name == "flowsight.alerts"]
    assert [m.split(":")[0] if "not delivered" in m else m for m in said] == [
        "receiver 'team'",
        "receiver 'team' delivers again",
    ]
    assert "retrying with backoff, next in 1 s" in said[0]


def test_retries_back_off_to_five_minutes_apart_at_most(store: SqlStore, hooks: Callable[..., Hook]) -> None:
    hook = hooks()
    hook.status = 503
    clock = Clock()
    d = dispatcher(store, hook, clock)
    d.enqueue([note(1)])

    async def main() -> None:
        for second in range(1800):
            clock.now = T0 + second
            await d.run_once()

    run(main)
    times = [r.at - T0 for r in reversed(store.alerts.notification_log(limit=100))]
    assert times == [0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 811, 1111, 1411, 1711]
    assert hook.requests == len(times) and store.alerts.pending_count() == 1


def test_a_permanent_error_marks_the_receiver_broken_until_a_delivery_succeeds(
    store: SqlStore, hooks: Callable[..., Hook]
) -> None:
    hook = hooks()
    broken: list[tuple[str, str]] = []
    recovered: list[str] = []
    clock = Clock()
    d = dispatcher(store, hook, clock, on_broken=lambda r, why: broken.append((r, why)), on_recovered=recovered.append)
    hook.status = 400
    d.enqueue([note(1), note(2)])
    assert run(d.run_once) == 0
    assert [r for r, _ in broken] == ["team"] and "HTTP 400" in broken[0][1]  # once, not per notification
    assert set(store.alerts.broken_receivers()) == {"team"}
    assert store.alerts.pending_count() == 0  # both failed for good: retrying cannot help
    assert [r.result for r in store.alerts.notification_log()] == ["permanent", "permanent"]

    clock.now += 60
    hook.status = 200
    d.enqueue([note(3)])
    assert run(d.run_once) == 1
    assert recovered == ["team"] and store.alerts.broken_receivers() == {} and len(broken) == 1
    assert [n["alerts"][0]["labels"]["run_id"] for n in hook.accepted] == ["r3"]


def test_a_broken_receiver_is_announced_once_across_servers_and_restarts(
    store: SqlStore, hooks: Callable[..., Hook]
) -> None:
    hook = hooks()
    hook.status = 404
    broken: list[str] = []
    d = dispatcher(store, hook, Clock(), on_broken=lambda r, why: broken.append(r))
    d.enqueue([note(1)])
    run(d.run_once)
    again = dispatcher(store, hook, Clock(T0 + 5), on_broken=lambda r, why: broken.append(r))  # restarted
    again.enqueue([note(2)])
    run(again.run_once)
    assert broken == ["team"] and store.alerts.broken_receivers()["team"][0] == T0


def test_the_same_notification_enqueued_twice_is_one_row_and_one_delivery(
    store: SqlStore, hooks: Callable[..., Hook]
) -> None:
    hook = hooks()
    d = dispatcher(store, hook, Clock())
    first = d.enqueue([note(1)])
    assert d.enqueue([note(1)]) == first and len(store.alerts.outbox_items()) == 1
    assert run(d.run_once) == 1
    assert d.enqueue([note(1)]) == first  # even once sent: not sent again
    assert run(d.run_once) == 0
    assert hook.keys() == [note(1).idempotency_key]


def test_the_outbox_is_committed_before_the_send(store: SqlStore) -> None:
    elsewhere = open_store(store.url)  # another connection sees only what was committed
    seen: list[list[tuple[str, str]]] = []

    class Peek:
        async def send(self, n: Notification) -> None:
            seen.append([(i.idempotency_key, i.state) for i in elsewhere.alerts.outbox_items()])

    try:
        d = Dispatcher(store, {"team": Peek()}, clock=Clock())
        d.enqueue([note(1)])
        run(d.run_once)
    finally:
        elsewhere.close()
    assert seen == [[(note(1).idempotency_key, "pending")]]
    assert store.alerts.outbox_items()[0].state == "sent"


def test_two_servers_sharing_a_store_send_each_notification_once_and_in_order(
    store: SqlStore, hooks: Callable[..., Hook]
) -> None:
    hook = hooks()
    other = open_store(store.url)
    clock = Clock()
    try:
        mine, theirs = dispatcher(store, hook, clock), dispatcher(other, hook, clock)
        notes = [note(i) for i in range(12)]
        mine.enqueue(notes)

        async def both() -> list[int]:
            return list(await asyncio.gather(mine.run_once(), theirs.run_once()))

        for _ in range(20):
            run(both)
            if store.alerts.pending_count() == 0:
                break
    finally:
        other.close()
    assert hook.keys() == [n.idempotency_key for n in notes]
    assert mine.sent + theirs.sent == 12 and len(store.alerts.notification_log(limit=100)) == 12


def test_a_receiver_no_longer_configured_fails_its_notifications_with_a_reason(
    store: SqlStore, hooks: Callable[..., Hook]
) -> None:
    broken: list[str] = []
    d = dispatcher(store, hooks(), Clock(), on_broken=lambda r, why: broken.append(r))
    d.enqueue([note(1, receiver="gone"), note(2, receiver="gone")])
    assert run(d.run_once) == 0
    log = store.alerts.notification_log()
    assert [r.result for r in log] == ["permanent", "permanent"]
    assert "no receiver named 'gone' is configured" in str(log[0].error)
    assert broken == [] and store.alerts.broken_receivers() == {}  # nothing to mend: it is not there


def test_an_unreadable_outbox_row_fails_alone(store: SqlStore, hooks: Callable[..., Hook]) -> None:
    hook = hooks()
    d = dispatcher(store, hook, Clock())
    store.alerts.enqueue_notifications([Outgoing("team", "garbled", b"{not json")], T0)
    d.enqueue([note(1)])
    assert run(d.run_once) == 1
    assert hook.keys() == [note(1).idempotency_key]
    failed = store.alerts.notification_log()[1]
    assert failed.result == "permanent" and "not an encoded notification" in str(failed.error)
    assert store.alerts.broken_receivers() == {}


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
    d = Dispatcher(store, {"team": flaky}, clock=clock, rand=lambda: 0.5, on_broken=lambda r, why: broken.append(why))
    d.enqueue([note(1)])
    clock.now += 3600
    d.enqueue([note(2)])  # written an hour later: it gets its own day
    flaky.errors = [DeliveryError("HTTP 503")] * 10_000
    while not broken:
        run(d.run_once)
        clock.now += 60
    assert clock.now - T0 >= 86_400
    assert "gave up after" in broken[0] and "over 24.0 h" in broken[0] and "HTTP 503" in broken[0]
    assert [i.state for i in store.alerts.outbox_items()] == ["failed", "pending"]
    flaky.errors.clear()
    run(d.run_once)
    assert [n.idempotency_key for n in flaky.got] == [note(2).idempotency_key]


def test_a_notifier_bug_is_a_retried_attempt_not_a_dead_loop(store: SqlStore) -> None:
    clock = Clock()
    flaky = Flaky()
    flaky.errors = [RuntimeError("oops")]
    d = Dispatcher(store, {"team": flaky}, clock=clock, rand=lambda: 0.5)
    d.enqueue([note(1)])
    assert run(d.run_once) == 0
    clock.now += 2
    assert run(d.run_once) == 1
    assert [r.result for r in store.alerts.notification_log()] == ["ok", "temporary"]
    assert "RuntimeError: oops" in str(store.alerts.notification_log()[1].error)


def test_a_send_that_hangs_is_a_timed_out_attempt(store: SqlStore) -> None:
    class Hang:
        async def send(self, n: Notification) -> None:
            await asyncio.Event().wait()

    d = Dispatcher(store, {"team": Hang()}, clock=Clock(), send_timeout=0.05)
    d.enqueue([note(1)])
    assert run(d.run_once) == 0
    (row,) = store.alerts.notification_log()
    assert row.result == "temporary" and row.error == "no answer within 0.05 s"


def test_a_receiver_answering_with_nul_bytes_is_retried_and_its_error_logged(
    store: SqlStore, hooks: Callable[..., Hook]
) -> None:
    # PostgreSQL text cannot hold NUL: a proxy's binary error page must not
    # make the attempt unrecordable (the head would then block its receiver)
    hook = hooks()
    hook.status, hook.reply = 502, b"bad\x00gateway"
    clock = Clock()
    d = dispatcher(store, hook, clock)
    d.enqueue([note(1)])
    assert run(d.run_once) == 0
    (row,) = store.alerts.notification_log()
    assert row.result == "temporary" and "HTTP 502: bad\ufffdgateway" in str(row.error)
    assert store.alerts.outbox_items()[0].last_error == row.error
    hook.status = 400
    clock.now += 1
    assert run(d.run_once) == 0
    assert store.alerts.broken_receivers()["team"][1].endswith("HTTP 400: bad\ufffdgateway")
    hook.status, hook.reply = 200, None
    d.enqueue([note(2)])
    assert run(d.run_once) == 1 and hook.keys() == [note(2).idempotency_key]


def test_a_failing_status_hook_does_not_undo_the_delivery(store: SqlStore, hooks: Callable[..., Hook]) -> None:
    hook = hooks()
    hook.status = 401

    def explode(receiver: str, why: str) -> None:
        raise RuntimeError("hook bug")

    d = dispatcher(store, hook, Clock(), on_broken=explode)
    d.enqueue([note(1)])
    run(d.run_once)
    assert store.alerts.outbox_items()[0].state == "failed" and "team" in store.alerts.broken_receivers()


# ---- the worker -------------------------------------------------------------------------
def test_stopping_the_worker_lets_the_send_in_flight_finish_and_starts_no_other(
    store: SqlStore, hooks: Callable[..., Hook]
) -> None:
    hook = hooks()
    hook.gate = threading.Event()
    d = Dispatcher(store, {"team": webhook(hook.url)})
    d.enqueue([note(1), note(2)])

    async def main() -> None:
        worker = DeliveryWorker(d, interval=3600)
        worker.start()
        assert await asyncio.to_thread(hook.entered.wait, 10)
        stopping = asyncio.create_task(worker.stop())  # SIGTERM arrives mid-send
        for _ in range(50):
            await asyncio.sleep(0)
        assert not stopping.done()
        assert hook.gate is not None
        hook.gate.set()
        await asyncio.wait_for(stopping, 10)

    run(main)
    assert hook.keys() == [note(1).idempotency_key]
    assert [i.state for i in store.alerts.outbox_items()] == ["sent", "pending"]  # the rest waits for the next start
    assert [r.result for r in store.alerts.notification_log()] == ["ok"]


def test_a_woken_worker_sends_at_once(store: SqlStore, hooks: Callable[..., Hook]) -> None:
    hook = hooks()
    d = Dispatcher(store, {"team": webhook(hook.url)})

    async def main() -> None:
        worker = DeliveryWorker(d, interval=3600)
        worker.start()
        await asyncio.sleep(0)
        d.enqueue([note(1)])
        worker.wake()
        assert await asyncio.to_thread(hook.entered.wait, 10)
        await worker.stop()
        await worker.stop()  # twice is harmless

    run(main)
    assert hook.keys() == [note(1).idempotency_key] and store.alerts.pending_count() == 0


def test_the_worker_survives_a_bad_round(store: SqlStore, caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky()
    d = Dispatcher(store, {"team": flaky})
    rounds = 0
    real = d.run_once

    async def failing_once(now: float | None = None, *, stop: asyncio.Event | None = None) -> int:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("database away")
        return await real(now, stop=stop)

    d.run_once = failing_once  # type: ignore[method-assign]

    async def main() -> None:
        worker = DeliveryWorker(d, interval=3600)
        worker.start()
        await asyncio.sleep(0)
        d.enqueue([note(1)])
        while not flaky.got:
            worker.wake()
            await asyncio.sleep(0.001)
        await worker.stop()

    run(main)
    assert rounds >= 2 and "delivery round failed" in caplog.text
