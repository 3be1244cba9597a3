"""Several writers on one store at once lose nothing.

SQLite: each worker is a real ``python -c`` process. They all say ``ready``
and then wait on stdin, so the test lets them go together and their writes
overlap. PostgreSQL: store objects on their own connections, made to
interleave in one chosen order.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from flowsight.model import StateTransition, WorkflowState, make_event
from flowsight.store import SqlStore, open_store
from flowsight.store.sqlite import retry_locked

WORKER = r"""
import sys
from flowsight.model import make_event
from flowsight.store import open_store

url, worker, runs, steps, shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print("ready", flush=True)
sys.stdin.readline()  # wait until every worker is ready
store = open_store(url)
t = 1000.0
for r in range(runs):
    run_id = shared or f"{worker}-run{r}"
    if not shared:
        store.runs.write_events([make_event("started", "conc", run_id, ts=t)])
    for s in range(steps):
        t += 1.0
        # one event per transaction: as many chances to interleave as there can be
        store.runs.write_events([make_event("step_completed", "conc", run_id, f"{worker}-r{r}-s{s}", ts=t)])
    if not shared:
        store.runs.write_events([make_event("completed", "conc", run_id, ts=t + 1.0)])
store.close()
print("done", flush=True)
"""


def run_workers(url: str, workers: int, runs: int, steps: int, shared: str = "") -> None:
    """Start the workers, release them together, and wait until each has finished cleanly."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, f"w{i}", str(runs), str(steps), shared],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(workers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line == "ready\n", f"worker did not start: {line!r} {p.communicate()[1]}"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=100) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip(procs, results):
        assert (p.returncode, out) == (0, "done\n"), err


@pytest.mark.parametrize("fresh_file", [False, True], ids=["existing-file", "new-file-opened-by-all-at-once"])
def test_processes_writing_their_own_runs_to_one_sqlite_file_lose_nothing(tmp_path: Path, fresh_file: bool) -> None:
    url = str(tmp_path / "shared.db")
    if not fresh_file:
        open_store(url).close()
    workers, runs, steps = 6, 4, 40

    run_workers(url, workers, runs, steps)

    with open_store(url) as store:
        assert store.runs.count_events() == workers * runs * (steps + 2)
        page = store.runs.list_runs(limit=1000)
        assert len(page.runs) == workers * runs
        for run in page.runs:
            assert (run.state, run.completed_steps) == (WorkflowState.COMPLETED, steps)


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def locked_error(tmp_path: Path) -> Iterator[sqlite3.OperationalError]:
    """The error SQLite itself raises for a file another connection has locked."""
    path = str(tmp_path / "locked.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked") as caught:
            other.execute("PRAGMA journal_mode=WAL")
        yield caught.value
    finally:
        other.close()
        holder.execute("ROLLBACK")
        holder.close()


class Failing:
    """A statement that raises ``error`` on its first ``times`` calls."""

    def __init__(self, times: int, error: BaseException) -> None:
        self.times, self.error, self.calls = times, error, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error


def test_a_statement_refused_as_locked_is_retried_with_short_sleeps_until_it_runs(
    locked_error: sqlite3.OperationalError,
) -> None:
    t, statement = FakeTime(), Failing(5, locked_error)
    retry_locked(statement, 30.0, clock=t.clock, sleep=t.sleep)
    assert statement.calls == 6
    assert len(t.slept) == 5 and all(0 < s <= 0.05 for s in t.slept)


def test_a_lock_still_held_when_the_busy_timeout_has_passed_is_raised(locked_error: sqlite3.OperationalError) -> None:
    t, statement = FakeTime(), Failing(10**6, locked_error)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        retry_locked(statement, 2.0, clock=t.clock, sleep=t.sleep)
    assert 2.0 <= t.now <= 2.0 + 1e-9  # waited the whole timeout, and not beyond it
    assert max(t.slept) <= 0.05


def test_an_error_that_is_not_about_a_lock_is_raised_at_once() -> None:
    t, statement = FakeTime(), Failing(1, sqlite3.OperationalError("no such table: nope"))
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_locked(statement, 30.0, clock=t.clock, sleep=t.sleep)
    assert t.slept == []


def test_processes_writing_steps_of_one_run_to_one_sqlite_file_keep_its_counts(tmp_path: Path) -> None:
    # every process has a cached copy of the run; each must notice the others' writes
    url = str(tmp_path / "shared.db")
    with open_store(url) as store:
        store.runs.write_events([make_event("started", "conc", "shared", ts=999.0)])
    workers, steps = 6, 50

    run_workers(url, workers, 1, steps, shared="shared")

    with open_store(url) as store:
        assert store.runs.count_events() == 1 + workers * steps
        run = store.runs.get_run("shared")
        assert run is not None
        assert run.completed_steps == workers * steps
        assert len(run.step_attempts) == workers * steps
        assert len(store.runs.run_steps("shared")) == workers * steps


def test_two_sqlite_stores_alternating_on_one_run_each_see_the_others_writes(tmp_path: Path) -> None:
    # each keeps the run cached; a write by the other connection must be seen
    # (PRAGMA data_version), while a store's own writes keep its cache valid
    url = str(tmp_path / "alt.db")
    with open_store(url) as a, open_store(url) as b:
        a.runs.write_events([make_event("started", "alt", "r", ts=1.0)])
        for i in range(20):
            store = a if i % 2 else b
            store.runs.write_events([make_event("step_completed", "alt", "r", step=f"s{i}", ts=2.0 + i)])
            store.runs.write_events([make_event("progress", "alt", "r", ts=2.5 + i, attrs={"done": i + 1})])
        a.runs.write_events([make_event("completed", "alt", "r", ts=100.0)])
        for store in (a, b):
            run = store.runs.get_run("r")
            assert run is not None
            assert (run.completed_steps, run.state) == (20, WorkflowState.COMPLETED)


# ---- PostgreSQL: writers on several connections -----------------------------
#
# A gate connection holds a lock, the writers queue up behind it in a chosen
# order (seen in pg_locks), then the gate lets go: the interleaving is the
# same on every run, no sleeping on luck.


class Writer(threading.Thread):
    """A store call in a thread; join() re-raises what it raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.call()
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


class Gate:
    """A connection holding a lock that the writers (tagged by application_name) wait behind."""

    def __init__(self, url: str) -> None:
        self.app = f"fs-writer-{uuid.uuid4().hex[:8]}"
        self.writer_url = f"{url}&application_name={self.app}"
        self.conn = psycopg.connect(url)

    def hold(self, sql: str) -> None:
        self.conn.execute(sql)

    def wait_for_waiters(self, n: int) -> None:
        for _ in range(6000):
            row = self.conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE NOT l.granted AND a.application_name = %s",
                (self.app,),
            ).fetchone()
            if row is not None and row[0] >= n:
                return
            time.sleep(0.005)
        pytest.fail(f"{n} writers never queued behind the gate")

    def release(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def gate(pg_url: str) -> Iterator[Gate]:
    g = Gate(pg_url)
    yield g
    g.close()


def one_step(store: SqlStore, step: str, ts: float) -> Callable[[], object]:
    return lambda: store.runs.write_events([make_event("step_completed", "wf", "r1", step, ts=ts)])


def test_two_postgres_writers_creating_one_run_at_once_keep_both_steps(gate: Gate) -> None:
    a, b = open_store(gate.writer_url), open_store(gate.writer_url)
    try:
        gate.hold("LOCK TABLE runs IN EXCLUSIVE MODE")  # no run row can be written yet
        writers = [Writer(one_step(s, f"s{i}", 100.0 + i)) for i, s in enumerate([a, b])]
        for w in writers:
            w.start()
        gate.wait_for_waiters(2)  # neither has written the run's row, both have started
        gate.release()
        for w in writers:
            w.join(60)

        run = a.runs.get_run("r1")
        assert run is not None
        assert (run.state, run.completed_steps) == (WorkflowState.RUNNING, 2)
        assert a.runs.count_events() == 2
    finally:
        a.close()
        b.close()


def test_a_transition_recorded_while_events_of_the_run_are_written_is_kept(gate: Gate) -> None:
    events, monitor = open_store(gate.writer_url), open_store(gate.writer_url)
    try:
        events.runs.write_events([make_event("started", "wf", "r1", ts=100.0)])
        gate.hold("SELECT 1 FROM runs WHERE run_id = 'r1' FOR UPDATE")
        suspend = Writer(
            lambda: monitor.runs.record_transition(
                StateTransition("r1", 101.0, WorkflowState.RUNNING, WorkflowState.SUSPENDED, "operator", "monitor")
            )
        )
        suspend.start()
        gate.wait_for_waiters(1)  # the suspension is first in line for the run's row
        step = Writer(lambda: events.runs.write_events([make_event("step_completed", "wf", "r1", "load", ts=102.0)]))
        step.start()
        gate.wait_for_waiters(2)  # the step event has read the run and waits to write it
        gate.release()
        suspend.join(60)
        step.join(60)

        run = events.runs.get_run("r1")
        assert run is not None
        assert (run.state, run.completed_steps) == (WorkflowState.SUSPENDED, 1)
    finally:
        events.close()
        monitor.close()
