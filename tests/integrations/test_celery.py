"""Celery runs in flowsight from the worker's signals, on this machine's real
brokers (Redis and RabbitMQ) with a real worker started by the test: a chain
of three tasks is one run with three steps, a retry an attempt; a worker
killed mid-task leaves its run flagged stalled, not "fine"; the same facts
delivered twice count once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowsight.model import StateTransition
from flowsight.model.runs.execution import StepRecord
from flowsight.store import open_store
from tests.helpers import unavailable
from tests.helpers import wait_for

# the workers' task events share one exchange per broker: one watcher at a time (scripts/test runs --dist loadgroup)
pytestmark = pytest.mark.xdist_group("celery")

#: a chord's body waits on its header's results: Redis keeps them
BACKEND = "redis://127.0.0.1:6379/15"
BROKERS = {"redis": ("redis://127.0.0.1:6379/14", 6379), "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672)}

APP = """
import time
from celery import Celery
{setup}

app = Celery("jobs", broker="{broker}", backend="{backend}")
app.conf.task_default_queue = "{queue}"
app.conf.broker_connection_retry_on_startup = True


@app.task
def extract(n):
    return list(range(n))


@app.task(bind=True, max_retries=3, default_retry_delay=0.1)
def transform(self, rows):
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("warehouse busy"))
    return [r * 2 for r in rows]


@app.task
def load(rows):
    return len(rows)


@app.task
def count(rows):
    return len(rows)


@app.task
def total(counts):
    return sum(counts)


@app.task
def slow(seconds):
    time.sleep(seconds)
"""


def reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def need(port: int, what: str) -> None:
    """The broker listening: else a skip with the reason, or a failure under CI=true."""
    if not reachable(port):
        unavailable(f"{what} is not listening on 127.0.0.1:{port}")


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    url, port = BROKERS[request.param]
    need(port, request.param)
    need(6379, "redis (the result backend)")
    return url


SETUP = "import flowsight.integrations.celery  # the one line of set-up"


class Worker:
    def __init__(
        self, tmp: Path, broker: str, *, integrated: bool = True, events: bool = False, server: str | None = None
    ) -> None:
        self.dir = tmp
        self.db = str(tmp / "flowsight.db")
        self.broker = broker
        self.events = events
        queue = f"fs-{uuid.uuid4().hex[:10]}"
        setup = SETUP if integrated else ""
        (tmp / "jobs.py").write_text(APP.format(broker=broker, backend=BACKEND, queue=queue, setup=setup))
        self.env = {
            **os.environ,
            "FLOWSIGHT_DATABASE_URL": self.db,
            "FLOWSIGHT_CELERY_STALL_TIMEOUT": "2",
            "PYTHONPATH": os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")]),
        }
        if server is not None:  # to a server, through the SDK's disk spool
            self.env["FLOWSIGHT_URL"] = server
            self.env["FLOWSIGHT_SPOOL_DIR"] = str(tmp / "spool")
        self.log = tmp / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "jobs", "worker", "-P", "solo", "-l", "info",
                 # a node name of its own: a worker killed by the test before holds its remote-control
                 # queue (exclusive, named after the node) on RabbitMQ until the broker notices
                 "-n", f"fs-{uuid.uuid4().hex[:8]}@%h",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", *(["-E"] if self.events else [])],
                cwd=self.dir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        try:
            while b"ready." not in self.log.read_bytes():
                assert self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, f"worker not ready in 60 s:\n{self.log.read_text()}"
                time.sleep(0.2)
        except BaseException:
            self.stop()  # never left running past its test
            raise

    def send(self, code: str) -> str:
        """Run ``code`` (with the app's tasks imported) in a sending process; what it prints."""
        script = "from jobs import *\nfrom celery import chain\n" + textwrap.dedent(code)
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop the worker: killed by default, once what a test reads is stored (a warm shutdown waits
        ~10 s on RabbitMQ's connection, a cold one too)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def worker(tmp_path: Path, broker: str) -> Iterator[Worker]:
    w = Worker(tmp_path, broker)
    try:
        w.start()
        yield w
    finally:
        w.stop()


def runs(db: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "flowsight", "--db", db, "runs", "--json", *args], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    got: list[dict[str, Any]] = json.loads(out.stdout)["runs"]
    return got


def test_a_chain_is_one_run_with_its_tasks_as_steps_and_a_retry_as_an_attempt(worker: Worker) -> None:
    sent = time.time()
    root = worker.send("print(chain(extract.s(5), transform.s(), load.s()).apply_async().parent.parent.id)")
    [run] = wait_for(
        "the chain's run completed", lambda: [r for r in runs(worker.db) if r["state"] == "completed"], timeout=60
    )
    assert run["run_id"] == root and run["workflow"] == "jobs.extract"
    with open_store(worker.db) as store:
        steps = store.runs.run_steps(root)
        events = store.runs.run_events(root)
    assert [(s.step, s.attempt, s.status) for s in steps] == [
        ("jobs.extract", 1, "completed"),
        ("jobs.transform", 1, "failed"),
        ("jobs.transform", 2, "completed"),
        ("jobs.load", 1, "completed"),
    ]
    assert "warehouse busy" in (steps[1].error or "")
    assert all(sent - 1 <= e.ts <= time.time() + 1 for e in events)  # the worker's own clock, within a second
    assert len([e for e in events if e.kind.value == "started"]) == 1


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_chain_with_a_group_in_it_is_one_run_that_ends_after_the_groups_join(worker: Worker) -> None:
    """chain(extract, group(count, count), total): Celery makes it a chord; the group's tasks are
    steps of the chain's run, which does not end before the chord's body has run."""
    root = worker.send(
        "from celery import group\n"
        "print(chain(extract.s(4), group(count.s(), count.s()), total.s()).apply_async().parent.parent.id)"
    )
    [run] = wait_for("the run completed", lambda: [r for r in runs(worker.db) if r["state"] == "completed"], timeout=60)
    assert run["run_id"] == root
    with open_store(worker.db) as store:
        steps = [(s.step, s.status) for s in store.runs.run_steps(root)]
        [ended] = [e for e in store.runs.run_events(root) if e.kind.value == "completed"]
        [last] = [e for e in store.runs.run_events(root) if e.kind.value == "step_completed" and e.step == "jobs.total"]
    assert sorted(steps) == [(f"jobs.count[{i}]", "completed") for i in (0, 1)] + [
        ("jobs.extract", "completed"),
        ("jobs.total", "completed"),
    ]
    assert ended.ts >= last.ts


def one_completed_run(worker: Worker, run_id: str, workflow: str) -> tuple[list[StepRecord], StateTransition]:
    """Once ``run_id`` completed, the only run there is: its steps, and the transition that completed it."""
    [run] = wait_for("the run completed", lambda: [r for r in runs(worker.db) if r["state"] == "completed"])
    assert (run["run_id"], run["workflow"]) == (run_id, workflow)
    assert len(runs(worker.db)) == 1
    with open_store(worker.db) as store:
        [done] = [t for t in store.runs.run_transitions(run_id) if t.new_state.value == "completed"]
        return store.runs.run_steps(run_id), done


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_group_sent_alone_is_one_run_that_completes_with_its_last_task(worker: Worker) -> None:
    group_id = worker.send(
        "from celery import group\nprint(group(count.s([1]), slow.s(1), count.s([3])).apply_async().id)"
    )
    steps, done = one_completed_run(worker, group_id, "jobs.count")
    assert sorted((s.step, s.status) for s in steps) == [
        ("jobs.count[0]", "completed"),
        ("jobs.count[2]", "completed"),
        ("jobs.slow[1]", "completed"),
    ]
    assert done.timestamp == max(s.ended_at or 0 for s in steps)  # with its last task, the slow one


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_group_of_a_chain_and_a_chord_is_one_run_of_all_their_tasks(worker: Worker) -> None:
    group_id = worker.send(
        "from celery import chord, group\n"
        "print(group(chain(extract.s(3), load.s()), chord([count.s([1]), count.s([2])], total.s())).apply_async().id)"
    )
    steps, done = one_completed_run(worker, group_id, "jobs.extract")
    assert len(steps) == 5 and {s.status for s in steps} == {"completed"}
    assert {s.step.split("[")[0] for s in steps} == {"jobs.extract", "jobs.load", "jobs.count", "jobs.total"}
    assert done.timestamp == max(s.ended_at or 0 for s in steps)


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_chord_sent_alone_is_one_run_that_completes_after_its_body(worker: Worker) -> None:
    group_id = worker.send(
        "from celery import chord\nprint(chord([count.s([1]), count.s([1, 2])], total.s()).apply_async().parent.id)"
    )
    [run] = wait_for("the chord's run completed", lambda: [r for r in runs(worker.db) if r["state"] == "completed"])
    assert run["run_id"] == group_id
    with open_store(worker.db) as store:
        steps = [(s.step, s.status) for s in store.runs.run_steps(group_id)]
        [ended] = [e for e in store.runs.run_events(group_id) if e.kind.value == "completed"]
        [body] = [
            e for e in store.runs.run_events(group_id) if e.kind.value == "step_completed" and e.step == "jobs.total"
        ]
    assert sorted(steps) == [
        ("jobs.count[0]", "completed"),
        ("jobs.count[1]", "completed"),
        ("jobs.total", "completed"),
    ]
    assert ended.ts >= body.ts
    assert len(runs(worker.db)) == 1


@pytest.mark.parametrize("broker", ["redis"], indirect=True)  # the chain's test covers RabbitMQ
def test_a_task_alone_is_a_run_of_its_name(worker: Worker) -> None:
    task_id = worker.send("print(load.delay([1, 2, 3]).id)")
    [run] = wait_for("the task's run", lambda: [r for r in runs(worker.db) if r["state"] == "completed"], timeout=60)
    assert (run["run_id"], run["workflow"]) == (task_id, "jobs.load")


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_worker_killed_mid_task_leaves_its_run_stalled(worker: Worker) -> None:
    task_id = worker.send("print(slow.delay(60).id)")
    wait_for("the task started", lambda: [r for r in runs(worker.db) if r["current_step"] == "jobs.slow"], timeout=60)
    assert worker.proc is not None
    worker.stop(signal.SIGKILL)
    [run] = wait_for("the run flagged stalled", lambda: [r for r in runs(worker.db) if r["stalled"]], timeout=30)
    assert (run["run_id"], run["state"], run["current_step"]) == (task_id, "running", "jobs.slow")


def test_the_same_facts_delivered_twice_count_once(tmp_path: Path) -> None:
    from flowsight.integrations.adapter import EngineAdapter
    from flowsight.model.runs.events import Event

    sent: list[Event] = []
    a = EngineAdapter("celery", sent.append)
    for _ in range(2):  # a signal and the broker's event stream, or a redelivered message
        a.run_started("etl", "root-1", ts=100.0)
        a.step_started("etl", "root-1", "extract", attempt=1, ts=100.5)
        a.step_ended("etl", "root-1", "extract", "failed", attempt=1, ts=101.0, error="boom", retrying=True)
        a.step_started("etl", "root-1", "extract", attempt=2, ts=101.5)
        a.step_ended("etl", "root-1", "extract", "completed", attempt=2, ts=102.0)
        a.run_ended("etl", "root-1", "completed", ts=102.0)
    assert len({e.id for e in sent}) == 6
    with open_store(str(tmp_path / "f.db")) as store:
        first = store.runs.write_events(sent[:6])
        again = store.runs.write_events(sent[6:])
        assert len(first.accepted) == 6 and len(again.duplicates) == 6
        [m] = store.runs.list_runs().runs
        assert m.state.value == "completed" and m.retries == 1


@pytest.fixture
def watcher(tmp_path: Path, broker: str) -> Iterator[tuple[Worker, subprocess.Popen[bytes]]]:
    """A worker without the integration, started with -E, and ``flowsight celery watch`` on its broker."""
    w = Worker(tmp_path, broker, integrated=False, events=True)
    log = (tmp_path / "watch.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowsight", "--db", w.db, "celery", "watch", "--broker", broker, "--settle", "1s"],
        cwd=tmp_path, env=w.env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        w.start()
        time.sleep(1.0)  # the watcher's consumer bound to the event exchange
        yield w, proc
    finally:
        w.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0, (tmp_path / "watch.log").read_text()
        finally:
            log.close()


def test_celery_watch_maps_a_chain_from_the_brokers_events_without_touching_the_worker(
    watcher: tuple[Worker, subprocess.Popen[bytes]],
) -> None:
    worker, _proc = watcher
    root = worker.send("print(chain(extract.s(5), transform.s(), load.s()).apply_async().parent.parent.id)")
    [run] = wait_for(
        "the chain's run completed", lambda: [r for r in runs(worker.db) if r["state"] == "completed"], timeout=60
    )
    assert run["run_id"] == root and run["workflow"] == "jobs.extract"
    with open_store(worker.db) as store:
        steps = [(s.step, s.attempt, s.status) for s in store.runs.run_steps(root)]
    assert steps == [
        ("jobs.extract", 1, "completed"),
        ("jobs.transform", 1, "failed"),
        ("jobs.transform", 2, "completed"),
        ("jobs.load", 1, "completed"),
    ]


def test_a_worker_with_the_integration_and_a_watcher_report_each_fact_once(tmp_path: Path, broker: str) -> None:
    w = Worker(tmp_path, broker, integrated=True, events=True)
    with (tmp_path / "watch.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowsight", "--db", w.db, "celery", "watch", "--broker", broker, "--settle", "1s"],
            cwd=tmp_path, env=w.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            w.start()
            time.sleep(1.0)
            root = w.send("print(chain(extract.s(5), transform.s(), load.s()).apply_async().parent.parent.id)")
            wait_for("the run completed", lambda: [r for r in runs(w.db) if r["state"] == "completed"], timeout=60)
            time.sleep(2.0)  # the watcher's facts, all come
        finally:
            w.stop()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    with open_store(w.db) as store:
        kinds = sorted(e.kind.value for e in store.runs.run_events(root))
    assert kinds == sorted(
        ["started", "completed", "step_completed", "step_completed", "step_completed", "step_failed"]
        + ["step_started"] * 4
    )


def test_a_server_restarted_while_the_worker_runs_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    from tests.sdk.serving import ServerProcess

    url, port = BROKERS["redis"]
    need(port, "redis")
    server = ServerProcess(tmp_path / "server.db", log_dir=tmp_path).start()
    w = Worker(tmp_path, url, server=server.url)
    try:
        w.start()
        chains = "[chain(extract.s(3), transform.s(), load.s()).apply_async().parent.parent.id for _ in range({n})]"
        first = json.loads(w.send(f"import json; print(json.dumps({chains.format(n=3)}))"))
        server.stop()  # down while the worker goes on
        second = json.loads(w.send(f"import json; print(json.dumps({chains.format(n=3)}))"))
        time.sleep(3.0)  # the second chains ran while nobody listened: their events wait in the worker's spool
        server.start()
        done = set(first + second)

        def completed() -> bool:
            rows = server.rows("SELECT run_id, state FROM runs")
            return {r for r, st in rows if st == "completed"} >= done

        wait_for("every chain's run completed", completed, timeout=60)
        per_run = server.rows("SELECT run_id, COUNT(*) FROM events GROUP BY run_id")
        assert {r: n for r, n in per_run} == {r: 10 for r in done}  # each fact once
    finally:
        w.stop()
        server.stop()


def test_the_watcher_waits_for_a_retry_that_comes_after_its_settle() -> None:
    from flowsight.integrations.adapter import EngineAdapter
    from flowsight.integrations.celery_events import EventMapper
    from flowsight.model.runs.events import Event

    now = [1000.0]
    sent: list[Event] = []
    m = EventMapper(EngineAdapter("celery", sent.append), settle=5.0, clock=lambda: now[0])

    def ev(kind: str, uuid: str, **more: Any) -> None:
        m.on_event({"type": f"task-{kind}", "uuid": uuid, "timestamp": now[0], "root_id": "r", **more})

    ev("received", "r", name="jobs.extract")
    ev("started", "r")
    ev("succeeded", "r")
    ev("received", "t", name="jobs.transform", parent_id="r")
    ev("started", "t")
    ev("retried", "t", exception="RuntimeError('busy')")
    now[0] += 60  # a retry delay of a minute, much longer than settle
    m.tick()
    assert [e.kind.value for e in sent][-1] == "step_failed" and sent[-1].attrs["retrying"] is True
    ev("received", "t", name="jobs.transform", retries=1)
    ev("started", "t")
    ev("succeeded", "t")
    now[0] += 6
    m.tick()
    kinds = [(e.kind.value, e.step) for e in sent]
    assert kinds[-2:] == [("step_completed", "jobs.transform"), ("completed", None)]
    assert [e.attrs.get("error") for e in sent if e.kind.value == "step_failed"] == ["RuntimeError('busy')"]
    assert m.runs == {} and m.tasks == {}  # forgotten once ended
