"""A process killed with SIGKILL mid-run: what it flushed is stored, and the
run it left behind is found stalled.

The child is a real interpreter running an instrumented workflow against the
store named by ``FLOWSIGHT_DATABASE_URL``. After every few steps it flushes
and prints ``flushed <events emitted so far>``; the test reads those lines,
then kills it with ``kill -9`` (no atexit, no finally, no flush). The stall
decision is then asked about a ``now`` the test chooses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowsight.model import WorkflowState, make_event
from flowsight.model.runs.stall import DEFAULT_TIMEOUT, stall_verdict
from flowsight.store import SqlStore

CHILD = r"""
import sys
import time

import flowsight

workflow, run_id, flush_every, hang_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
emitted = flushes = 0
with flowsight.workflow(workflow, run_id=run_id) as run:  # no stall_timeout
    emitted += 1
    for i in range(100_000):
        with run.step("chunk"):
            emitted += 1
            time.sleep(0.05)
            if i % flush_every == flush_every - 1:
                assert flowsight.flush()
                flushes += 1
                print(f"flushed {emitted}", flush=True)
                if flushes == hang_after:
                    time.sleep(3600)  # stuck inside the step until killed
        emitted += 1
"""

FLUSH_EVERY = 3


def run_and_kill(store_url: str, cwd: Path, workflow: str, run_id: str, flushes: int, *, hang: bool) -> list[int]:
    """Run the child until it reported ``flushes`` flushes, SIGKILL it; the
    event counts it reported. With ``hang`` it stops inside a step after the last one."""
    cwd.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["FLOWSIGHT_DATABASE_URL"] = store_url
    args = [workflow, run_id, str(FLUSH_EVERY), str(flushes if hang else 0)]
    reported: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            while len(reported) < flushes:
                line = proc.stdout.readline()
                if not line:
                    pytest.fail(f"child ended (rc={proc.wait()}) before {flushes} flushes: {proc.stderr.read()}")
                word, count = line.split()
                assert word == "flushed"
                reported.append(int(count))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return reported


def expected_prefix(emitted: int) -> list[tuple[str, str | None]]:
    """The events of the child's run up to a flush made inside a step."""
    steps = (emitted - 2) // 2  # Started, then whole steps, then the open step's StepStarted
    out: list[tuple[str, str | None]] = [("started", None)]
    out += [("step_started", "chunk"), ("step_completed", "chunk")] * steps
    out.append(("step_started", "chunk"))
    return out


def test_a_killed_run_keeps_what_it_flushed_and_is_stalled_after_the_default_timeout(
    store_url: str, store: SqlStore, tmp_path: Path
) -> None:
    reported = run_and_kill(store_url, tmp_path / "child", "ingest-new", "killed-1", flushes=3, hang=False)

    events = store.runs.run_events("killed-1")
    assert reported == sorted(reported) and len(set(reported)) == 3
    assert len(events) >= reported[-1]
    assert [(e.kind.value, e.step) for e in events[: reported[-1]]] == expected_prefix(reported[-1])
    m = store.runs.get_run("killed-1")
    assert m is not None
    assert (m.state, m.end_time) == (WorkflowState.RUNNING, None)
    assert "stall_timeout" not in m.attrs
    assert m.last_activity == max(e.ts for e in events)

    history = store.stats.history("ingest-new")
    assert history.runs == 0
    quiet = stall_verdict(m, history, now=m.last_activity + DEFAULT_TIMEOUT - 1.0)
    stalled = stall_verdict(m, history, now=m.last_activity + DEFAULT_TIMEOUT + 1.0)
    assert quiet is not None and stalled is not None
    assert (quiet.stalled, quiet.basis) == (False, "default timeout")
    assert (stalled.stalled, stalled.bound, stalled.basis) == (True, DEFAULT_TIMEOUT, "default timeout")
    assert stalled.idle_for == pytest.approx(DEFAULT_TIMEOUT + 1.0)


def test_a_killed_run_is_stalled_after_a_bound_learned_from_a_previous_run(
    store_url: str, store: SqlStore, tmp_path: Path
) -> None:
    # A completed run of the same workflow an hour earlier (recent enough for
    # the SDK's retention), its three "chunk" steps 4 s each: bound 3 x p95 = 12 s.
    base = float(int(time.time()) - 3600)  # whole seconds: the durations come out exact
    past = [make_event("started", "ingest", "past-1", ts=base)]
    for i in range(3):
        past.append(make_event("step_started", "ingest", "past-1", "chunk", ts=base + 4.0 * i))
        past.append(make_event("step_completed", "ingest", "past-1", "chunk", ts=base + 4.0 * (i + 1)))
    past.append(make_event("completed", "ingest", "past-1", ts=base + 12.5))
    store.runs.write_events(past)

    reported = run_and_kill(store_url, tmp_path / "child", "ingest", "killed-1", flushes=2, hang=True)

    events = store.runs.run_events("killed-1")
    # it stopped right after its last flush: nothing more was emitted, nothing flushed is missing
    assert [(e.kind.value, e.step) for e in events] == expected_prefix(reported[-1])
    m = store.runs.get_run("killed-1")
    assert m is not None
    assert (m.state, m.current_step, m.end_time) == (WorkflowState.RUNNING, "chunk", None)
    assert m.last_activity == events[-1].ts

    history = store.stats.history("ingest")
    assert (history.runs, history.step_durations) == (1, {"chunk": (4.0, 4.0, 4.0)})
    quiet = stall_verdict(m, history, now=m.last_activity + 11.0)
    stalled = stall_verdict(m, history, now=m.last_activity + 13.0)
    assert quiet is not None and stalled is not None
    assert (quiet.stalled, quiet.bound, quiet.basis) == (False, 12.0, "history")
    assert (stalled.stalled, stalled.bound, stalled.basis) == (True, 12.0, "history")
