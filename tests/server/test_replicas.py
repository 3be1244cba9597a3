"""Several servers on one store: the duties' leases, their epochs as fencing
tokens, one leader at a time among real ``flowsight serve`` processes on the
real PostgreSQL, a leader killed or paused and replaced, SQLite refusing a
second server (flowsight.server.leadership, flowsight.store.leases)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowsight.errors import FencedError
from flowsight.model.runs.events import make_event
from flowsight.store import SqlStore, open_store
from flowsight.store.leases import FENCE, Fence
from tests.helpers import Recorder, run, wait_for
from tests.server.conftest import FLOWSIGHT, Server, event, post, start_server
from tests.server.test_alerting_e2e import bodies, config, failed_run
from tests.server.test_stream import stream

LEASE = "2s"  # short leases: a takeover within seconds


# ---- the leases in the store ------------------------------------------------------
def test_a_lease_is_renewed_by_its_holder_and_taken_over_only_once_expired_with_the_next_epoch(
    store: SqlStore,
) -> None:
    leases = store.leases
    first = leases.hold("alerting", "a", "token-a", 30.0)
    assert first is not None and first.holder == "a" and first.epoch == 1
    assert leases.hold("alerting", "b", "token-b", 30.0) is None  # held, not expired
    again = leases.hold("alerting", "a", "token-a", 30.0)
    assert again is not None and again.epoch == 1 and again.since == first.since
    assert again.expires_at >= first.expires_at

    leases.expire("alerting")
    taken = leases.hold("alerting", "b", "token-b", 30.0)
    assert taken is not None and (taken.holder, taken.token, taken.epoch) == ("b", "token-b", 2)
    assert leases.hold("alerting", "a", "token-a", 30.0) is None  # the old holder cannot renew it back
    # the other duties are leased apart
    other = leases.hold("detectors", "a", "token-a", 30.0)
    assert other is not None and other.epoch == 1
    assert {ls.duty: ls.holder for ls in leases.leases()} == {"alerting": "b", "detectors": "a"}


def test_a_released_lease_is_taken_at_once_and_a_dead_holders_token_lets_it_go(store: SqlStore) -> None:
    leases = store.leases
    assert leases.hold("retention", "a", "token-a", 30.0) is not None
    assert leases.release("retention", "token-a")
    assert not leases.release("retention", "token-a-other")  # only its holder gives it back
    took = leases.hold("retention", "b", "token-b", 30.0)
    assert took is not None and took.epoch == 2
    # a holder known to be gone (its process is not on this host any more) is taken from at once
    took = leases.hold("retention", "c", "token-c", 30.0, take_from="token-b")
    assert took is not None and took.holder == "c" and took.epoch == 3


def test_a_duty_s_write_under_a_lease_taken_over_is_refused_and_writes_nothing(store: SqlStore) -> None:
    leases = store.leases
    old = leases.hold("alerting", "a", "token-a", 30.0)
    assert old is not None
    fenced = FENCE.set(old.fence)
    try:
        store.kept.save("doc", {"by": "a", "n": 1})  # while it holds the lease: written
        leases.expire("alerting")
        assert leases.hold("alerting", "b", "token-b", 30.0) is not None
        with pytest.raises(FencedError, match=r"duty 'alerting'.*epoch 1.*taken over by b \(epoch 2\)"):
            store.kept.save("doc", {"by": "a", "n": 2})
        with pytest.raises(FencedError):  # every write path of the store, not only that one
            store.logs.purge_logs(time.time())
    finally:
        FENCE.reset(fenced)
    assert store.kept.load("doc") == {"by": "a", "n": 1}
    # a write that is no duty's (ingest, the API) is never fenced
    store.kept.save("doc", {"by": "api"})
    assert store.kept.load("doc") == {"by": "api"}
    # the new holder's writes go through
    new = FENCE.set(Fence("alerting", "token-b", 2))
    try:
        store.kept.save("doc", {"by": "b"})
    finally:
        FENCE.reset(new)
    assert store.kept.load("doc") == {"by": "b"}


_PAUSED_WRITER = textwrap.dedent(
    """
    import sys, time
    from flowsight.errors import FencedError
    from flowsight.store import open_store
    from flowsight.store.leases import FENCE

    store = open_store(sys.argv[1])
    lease = store.leases.hold("alerting", "old", "token-old", 1.0)
    FENCE.set(lease.fence)
    n = 0
    while True:
        n += 1
        try:
            store.kept.save("written", {"by": "old", "n": n})
        except FencedError as exc:
            print("fenced:", exc, flush=True)
            break
        print("wrote", n, flush=True)
        time.sleep(0.05)
    """
)


def test_a_writer_paused_past_its_lease_writes_nothing_once_resumed(store_url: str, tmp_path: Path) -> None:
    """A real process holds the lease and writes under it; SIGSTOP past the
    lease, another takes the lease, SIGCONT: its next write is refused."""
    script = tmp_path / "writer.py"
    script.write_text(_PAUSED_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), store_url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("wrote 1")
        proc.send_signal(signal.SIGSTOP)
        with open_store(store_url) as store:
            # the lease (1 s) lapses while the writer is stopped; another holder takes it
            taken = wait_for("the lapsed lease", lambda: store.leases.hold("alerting", "new", "token-new", 30.0))
            assert taken.epoch == 2
            before = store.kept.load("written")
            proc.send_signal(signal.SIGCONT)
            out, _ = proc.communicate(timeout=30)
            assert "fenced: duty 'alerting'" in out and "taken over by new (epoch 2)" in out, out
            assert store.kept.load("written") == before  # nothing written after the takeover
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_lease_under_a_second_and_a_replica_name_with_a_space_are_refused_saying_why(tmp_path: Path) -> None:
    db = str(tmp_path / "flowsight.db")
    for flags, says in (
        (["--lease", "0"], "argument --lease: '0': a lease lasts 1s at least"),
        (["--lease", "500ms"], "a lease lasts 1s at least"),
        (["--replica-id", "web 1"], "argument --replica-id: 'web 1': a replica's name has no spaces"),
        (["--replica-id", ""], "a replica's name must not be empty"),
        (["--replica-id", "x" * 101], "100 characters at most"),
    ):
        out = subprocess.run([*FLOWSIGHT, "--db", db, "serve", "--port", "0", *flags], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert out.returncode == 2 and says in out.stderr, (flags, out.stderr)


# ---- SQLite: one server ---------------------------------------------------------
def test_a_second_server_on_a_sqlite_file_is_refused_and_a_killed_one_is_not_in_the_way(tmp_path: Path) -> None:
    db = str(tmp_path / "flowsight.db")
    first = start_server(db, log_dir=tmp_path)
    try:
        second = subprocess.run([*FLOWSIGHT, "--db", db, "serve", "--port", "0"], capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert "is serving the SQLite store" in second.stderr and "SQLite is single-node" in second.stderr
        assert "PostgreSQL" in second.stderr
        cluster = first.client().get("/api/v1/cluster").json()
        assert [r["this"] for r in cluster["replicas"]] == [True]  # the refused one left no trace
        assert {d["duty"]: d["leader"] for d in cluster["duties"]} == dict.fromkeys(
            ["alerting", "detectors", "retention", "export"], cluster["replica_id"]
        )
        metrics = first.client().get("/metrics").text
        assert 'flowsight_leader{duty="alerting"} 1.0' in metrics and "flowsight_replicas 1.0" in metrics
    finally:
        first.stop(signal.SIGKILL)
    # killed outright: its leases are still running, but its process is gone from this host
    again = start_server(db, log_dir=tmp_path)
    try:
        cluster = again.client().get("/api/v1/cluster").json()
        assert {d["epoch"] for d in cluster["duties"]} == {2}
        assert {d["leader"] for d in cluster["duties"]} == {cluster["replica_id"]}
    finally:
        assert again.stop() == 0, again.output()


# ---- PostgreSQL: several replicas ------------------------------------------------
def _leaders(server: Server) -> dict[str, Any]:
    return {d["duty"]: (d["leader"], d["epoch"]) for d in server.client().get("/api/v1/cluster").json()["duties"]}


def _replica(pg_url: str, tmp_path: Path, name: str, cfg: Path) -> Server:
    return start_server(pg_url, "--replica-id", name, "--lease", LEASE, "--config", str(cfg), log_dir=tmp_path)


def test_replicas_on_postgresql_page_once_and_a_killed_leader_is_replaced(
    pg_url: str, tmp_path: Path, receiver: Recorder
) -> None:
    cfg = config(tmp_path, receiver.server_address[1])
    a = _replica(pg_url, tmp_path, "a", cfg)
    b = _replica(pg_url, tmp_path, "b", cfg)
    try:
        assert _leaders(b) == dict.fromkeys(["alerting", "detectors", "retention", "export"], ("a", 1))
        cluster = b.client().get("/api/v1/cluster").json()
        assert [(r["replica_id"], r["this"], r["alive"]) for r in cluster["replicas"]] == [
            ("a", False, True),
            ("b", True, True),
        ]
        assert cluster["lease_seconds"] == 2.0 and "replica:   b, following" in b.output()
        metrics = b.client().get("/metrics").text
        assert 'flowsight_leader{duty="alerting"} 0.0' in metrics and "flowsight_replicas 2.0" in metrics

        # a failure posted to the follower is paged once, by the leader; both show it told
        post(b.client(), failed_run("r1"))
        wait_for("the RunFailed page", lambda: bodies(receiver, "RunFailed", "firing"))
        for s in (a, b):
            wait_for(
                f"{s.url} to show the alert told",
                lambda s=s: [  # type: ignore[misc]
                    x for x in s.client().get("/api/v1/alerts").json()["alerts"]
                    if x["labels"].get("run_id") == "r1" and x["receivers_told"] == ["team"]
                ],
            )  # fmt: skip

        a.stop(signal.SIGKILL)
        # within the lease (2 s) and a renewal: b leads every duty, under the next epoch
        wait_for("b to lead", lambda: _leaders(b) == dict.fromkeys(_leaders(b), ("b", 2)), timeout=15)
        post(b.client(), failed_run("r2", "other"))
        wait_for(
            "the second page, from the new leader",
            lambda: [
                x for x in bodies(receiver, "RunFailed", "firing") if x["commonLabels"].get("workflow") == "other"
            ],
        )
        # no page twice: r1 was told by a, and b took its alerts over as told
        r1 = [x for x in bodies(receiver, "RunFailed", "firing") if x["commonLabels"].get("run_id") == "r1"]
        assert len(r1) == 1, json.dumps(r1)[:2000]
        assert 'flowsight_leader{duty="alerting"} 1.0' in b.client().get("/metrics").text
    finally:
        a.stop(signal.SIGKILL)
        assert b.stop() == 0, b.output()


def test_a_leader_paused_past_its_lease_steps_down_when_resumed(pg_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    a = _replica(pg_url, tmp_path, "a", cfg)
    b = _replica(pg_url, tmp_path, "b", cfg)
    try:
        assert set(_leaders(b).values()) == {("a", 1)}
        a.proc.send_signal(signal.SIGSTOP)
        wait_for("b to take over from the paused a", lambda: set(_leaders(b).values()) == {("b", 2)}, timeout=15)
        a.proc.send_signal(signal.SIGCONT)
        wait_for("a to notice it lost its leases", lambda: "no longer leads retention" in a.output())
        assert set(_leaders(a).values()) == {("b", 2)}  # it did not take them back
        assert "Traceback" not in a.output(), a.output()
    finally:
        a.proc.send_signal(signal.SIGCONT)
        assert a.stop() == 0, a.output()
        assert b.stop() == 0, b.output()


def test_a_stream_on_one_replica_gets_every_event_posted_to_the_others_once_and_in_order(
    pg_url: str, tmp_path: Path
) -> None:
    """Two senders post to replicas b and c at once; a client of replica a's
    live stream gets every event, each once, in the store's order (seqs commit
    in their order; a's follower is woken by PostgreSQL's NOTIFY)."""
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    a, b, c = (_replica(pg_url, tmp_path, name, cfg) for name in ("a", "b", "c"))
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    try:
        with stream(a) as reader:

            def send(server: Server, tag: str) -> None:
                with server.client() as client:
                    for i in range(40):
                        batch = [event("started", "wf", f"{tag}-{i}-{j}", id=f"{tag}-{i}-{j}") for j in range(5)]
                        post(client, batch)
                        now = time.monotonic()
                        sent.update((e["id"], now) for e in batch)

            senders = [threading.Thread(target=send, args=(s, s_tag)) for s, s_tag in ((b, "b"), (c, "c"))]
            for t in senders:
                t.start()
            got = []
            for ev in reader.events(400):
                got.append(ev)
                arrived[ev.data["id"]] = time.monotonic()
            for t in senders:
                t.join(30)
        ids = [ev.data["id"] for ev in got]
        assert sorted(ids) == sorted(sent) and len(set(ids)) == len(ids) == 400  # every one, each once
        seqs = [ev.id for ev in got]
        assert seqs == sorted(seqs)  # in the store's order
        lag = max(arrived[i] - sent[i] for i in ids)
        print(f"400 events posted to b and c, on a's stream at most {lag:.2f}s after their POST was answered")
    finally:
        for s in (a, b, c):
            assert s.stop() == 0, s.output()


def test_a_commit_of_events_on_postgresql_wakes_the_listeners_and_sqlite_has_none(
    pg_url: str, sqlite_store: SqlStore
) -> None:
    woken = threading.Event()
    with open_store(pg_url) as listener, open_store(pg_url) as writer:
        stop = listener.listen_commits(woken.set)
        assert stop is not None
        try:
            # the LISTEN is set up on a thread of its own: commit until one wakes it
            wait_for(
                "a NOTIFY at a commit",
                lambda: (
                    woken.is_set()
                    or writer.runs.write_events([make_event("started", "wf", uuid.uuid4().hex)])
                    and False
                ),
            )
        finally:
            stop()
    assert sqlite_store.listen_commits(woken.set) is None  # one server a file: nobody to tell


# ---- the alerting duty: a leader and a follower over one store ------------------
def _services(store_url: str) -> tuple[Any, Any, Any, Any, Any]:
    from flowsight.config import parse_config
    from flowsight.server.alerting import AlertingService
    from flowsight.server.leadership import Duty
    from tests.server.test_alerting_service import CONFIG, Clock, Inbox

    clock, inbox = Clock(), Inbox()
    leader_store, follower_store = open_store(store_url), open_store(store_url)
    lease = leader_store.leases.hold("alerting", "L", "token-L", 3600.0)
    lead, follow = Duty("alerting", lease=lease, changes=1), Duty("alerting")
    cfg = parse_config(CONFIG.replace('group_wait = "0s"', 'group_wait = "30s"'))
    leader = AlertingService(leader_store, cfg, clock=clock, notifiers={"team": inbox}, duty=lead)
    follower = AlertingService(follower_store, cfg, clock=clock, notifiers={"team": inbox}, duty=follow)
    leader.load()
    follower.load()
    return leader, follower, clock, inbox, (leader_store, follower_store)


def test_a_follower_never_writes_back_what_it_took_from_the_leader_and_forgets_what_the_leader_forgot(
    store_url: str,
) -> None:
    from flowsight.model.alerts import Alert, AlertStatus

    leader, follower, clock, inbox, stores = _services(store_url)
    firing = Alert({"alertname": "Disk", "workflow": "etl"}, starts_at=clock.now)

    async def scenario() -> bool:  # one loop: its threads (and their store connections) serve every round
        leader.send_alert(firing)
        await leader.step(clock.now)
        clock.now += 1
        await follower.step(clock.now)  # takes it in, firing
        # it resolves within group_wait: nobody was ever told
        resolved = Alert(firing.labels, starts_at=firing.starts_at, status=AlertStatus.RESOLVED, ends_at=clock.now)
        leader.send_alert(resolved)
        await leader.step(clock.now)
        for _ in range(3):
            clock.now += 1
            await follower.step(clock.now)
        stored = {st.alert.fingerprint: st.alert.status for st in stores[0].alerts.load_alerts()}
        assert stored.get(firing.fingerprint) in (None, AlertStatus.RESOLVED)  # never firing again
        for _ in range(40):  # the leader's rounds: nothing to tell, ever
            clock.now += 1
            await leader.step(clock.now)
        clock.now += 11  # a follower reads the whole view again every RELOAD seconds
        await follower.step(clock.now)
        held = await follower.read(lambda am: am.alerts.get(firing.fingerprint))
        await leader.stop()
        await follower.stop()
        return held is None or held.alert.status is not AlertStatus.FIRING

    try:
        assert run(scenario)
        assert inbox.notes == []
    finally:
        for s in stores:
            s.close()


def test_an_alert_posted_to_a_follower_is_stored_for_the_leader_to_send(store_url: str) -> None:
    from flowsight.model.alerts import Alert

    leader, follower, clock, inbox, stores = _services(store_url)

    async def scenario() -> None:
        posted = Alert({"alertname": "Posted", "workflow": "etl"}, starts_at=clock.now)
        await follower.send_alerts([posted])
        await follower.step(clock.now)
        for _ in range(90):  # the leader's rounds, past group_wait and group_interval
            clock.now += 1
            await leader.step(clock.now)
        await leader.stop()
        await follower.stop()

    try:
        run(scenario)
        assert [a.labels["alertname"] for n in inbox.notes for a in n.alerts] == ["Posted"]
    finally:
        for s in stores:
            s.close()


class _Recorded:
    """A duty's service that records the fence its work runs under, and that it was stopped."""

    def __init__(self, log: list[tuple[str, int]]) -> None:
        self.log = log

    async def start(self) -> None:
        fence = FENCE.get()
        self.log.append(("start", fence.epoch if fence is not None else 0))

    async def stop(self) -> None:
        self.log.append(("stop", 0))


def test_a_duty_won_back_under_a_newer_epoch_starts_afresh_under_it(store: SqlStore) -> None:
    from flowsight.server.leadership import Leadership

    log: list[tuple[str, int]] = []
    made: list[_Recorded] = []

    def make() -> list[_Recorded]:
        made.append(_Recorded(log))
        return made[-1:]

    async def scenario() -> None:
        me = Leadership(store, "a", lease=30.0, renew=0.05)
        assert me.wrap("detectors", make) == []
        await me.start()
        try:
            assert log == [("start", 1)]
            # another replica took it (a pause past the lease), then gave it back
            store.leases.expire("detectors")
            assert store.leases.hold("detectors", "b", "token-b", 30.0) is not None
            store.leases.release("detectors", "token-b")
            for _ in range(200):
                if ("start", 3) in log:
                    break
                await asyncio.sleep(0.05)
        finally:
            await me.stop()
            await me.release.stop()

    run(scenario)
    assert log[0] == ("start", 1) and ("start", 3) in log  # epoch 2 was b's
    assert log.index(("stop", 0)) < log.index(("start", 3))  # the old term's work ended first
    assert len(made) >= 2 and log[-1] == ("stop", 0)  # made afresh for the new term; stopped at the end
    assert {ls.duty: ls.expires_at for ls in store.leases.leases()}["detectors"] == 0  # given back


def test_a_leader_s_first_round_keeps_a_silence_that_starts_later_and_an_alert_posted_before_it(
    store_url: str,
) -> None:
    """A server's start (one alone on SQLite too): its first leading round
    neither drops a silence scheduled for later nor an alert posted while
    the store was being read; a follower hands a posted alert on."""
    from flowsight.config import parse_config
    from flowsight.model.alerts import Alert, new_silence
    from flowsight.server.alerting import AlertingService
    from flowsight.server.leadership import Duty
    from tests.server.test_alerting_service import CONFIG, Clock, Inbox

    clock, inbox = Clock(), Inbox()
    with open_store(store_url) as store:
        later = new_silence(["workflow=etl"], duration=3600.0, comment="tonight", now=clock.now + 600)
        store.alerts.add_silence(later, clock.now)
        lease = store.leases.hold("alerting", "L", "token-L", 3600.0)
        svc = AlertingService(
            store,
            parse_config(CONFIG),
            clock=clock,
            notifiers={"team": inbox},
            duty=Duty("alerting", lease=lease, changes=1),
        )
        svc.load()
        posted = Alert({"alertname": "Posted", "workflow": "other"}, starts_at=clock.now)
        run(lambda: svc.send_alerts([posted]))
        run(lambda: svc.step(clock.now))
        assert run(lambda: svc.read(lambda am: later.id in am.silences))
        assert [st.alert.labels["alertname"] for st in store.alerts.load_alerts()] == ["Posted"]
        run(svc.stop)
