"""A baseline from flowsight.toml at work in ``flowsight serve``, on both
stores: runs posted over HTTP build the workflow's history; a run far slower
than usual reaches the webhook with a sentence a person reads."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import Recorder
from tests.server.conftest import Serve, event, flowsight, post
from tests.server.test_alerting_e2e import bodies
from tests.helpers import wait_for
from tests.server.test_alerting_e2e import config as alerting_config


def config(tmp_path: Path, hook_port: int) -> Path:
    return alerting_config(
        tmp_path,
        hook_port,
        """
[[thresholds]]
name = "SlowRun"
kind = "baseline"
metric = "run_duration"
quantile = "p95"
factor = 2.0
runs = 20
min_runs = 10
""",
        group_by='["alertname"]',
    )


BIG_RUN = """
[performance]
interval = "0.2s"

[[thresholds]]
name = "BigRun"
metric = "memory_bytes"
scope = "run"
above = 104857600
"""


def run_events(run_id: str, start: float, took: float) -> list[dict[str, Any]]:
    return [
        event("started", "nightly-etl", run_id, ts=start),
        event("completed", "nightly-etl", run_id, ts=start + took),
    ]


def test_a_run_far_slower_than_its_workflows_history_is_alerted(
    serve: Serve, tmp_path: Path, receiver: Recorder
) -> None:
    server = serve("--config", str(config(tmp_path, receiver.server_address[1])))
    c = server.client()
    for i in range(12):
        post(c, run_events(f"r{i}", 1_700_000_000.0 + i * 3600, 100.0 + i))
    post(c, run_events("slow", 1_700_100_000.0, 900.0))
    firing = wait_for("the baseline alert", lambda: bodies(receiver, "SlowRun", "firing"))
    alert = firing[0]["alerts"][0]
    assert alert["labels"]["workflow"] == "nightly-etl" and alert["labels"]["metric"] == "run_duration"
    assert alert["annotations"]["summary"].startswith("a run of nightly-etl took 15m 00s; p95 of the last 12 runs is")


def test_a_run_whose_process_tree_passes_a_threshold_is_alerted_and_resolves_when_it_ends(
    serve: Serve, store_url: str, tmp_path: Path, receiver: Recorder
) -> None:
    path = config(tmp_path, receiver.server_address[1])
    path.write_text(path.read_text() + BIG_RUN)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nb = bytearray(200 << 20)\n"
            "for i in range(0, len(b), 4096): b[i] = 1\nprint('ready', flush=True)\n"
            "time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        server = serve("--config", str(path))
        c = server.client()
        # what the SDK sends when a run starts: its pid and host
        post(
            c,
            [
                event("started", "train", "big-1", pid=child.pid, host=socket.gethostname()),
                event("started", "train", "small-1", pid=os.getpid(), host="another-host"),
            ],
        )
        firing = wait_for("the threshold alert", lambda: bodies(receiver, "BigRun", "firing"))
        alert = firing[0]["alerts"][0]
        assert alert["labels"]["run_id"] == "big-1" and alert["labels"]["workflow"] == "train"
        assert alert["annotations"]["summary"].startswith("memory_bytes of run big-1 of train is 2")
        # the samples are kept: listed, summarised, as a series, and in the CLI
        scopes = c.get("/api/v1/metrics").json()["scopes"]
        assert any(x["scope"] == "run:big-1" and "memory_bytes" in x["metrics"] for x in scopes)
        assert any(x["scope"].startswith("host:") for x in scopes) and not any("small-1" in x["scope"] for x in scopes)
        summary = c.get("/api/v1/metrics/summary", params={"scope": "run:big-1"}).json()
        assert summary["latest"]["memory_bytes"]["value"] > 150 * 2**20
        series = c.get("/api/v1/metrics/series", params={"scope": "run:big-1", "metric": "memory_bytes"}).json()
        assert series["resolution"] == "raw" and series["points"] and series["points"][-1]["max"] > 150 * 2**20
        rolled = c.get(
            "/api/v1/metrics/series", params={"scope": "run:big-1", "metric": "memory_bytes", "step": "60"}
        ).json()
        assert rolled["resolution"] == "60s" and rolled["points"][-1]["count"] >= 1
        bad = c.get("/api/v1/metrics/series", params={"scope": "moon:1", "metric": "memory_bytes"})
        assert bad.status_code == 400 and "host:NAME" in bad.json()["error"]
        shown = flowsight("perf", "run:big-1", db=store_url)
        assert shown.returncode == 0 and "memory_bytes" in shown.stdout and "MiB" in shown.stdout
        spark = flowsight("perf", "big-", "--metric", "memory_bytes", db=store_url)  # a run-id prefix
        assert spark.returncode == 0 and "run:big-1 memory_bytes:" in spark.stdout
        child.kill()
        child.wait()
        wait_for("the resolution once the process is gone", lambda: bodies(receiver, "BigRun", "resolved"))
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_a_wrapped_commands_child_is_sampled_as_the_run(serve: Serve, tmp_path: Path, receiver: Recorder) -> None:
    """``flowsight run`` reports its own pid; the command is its child, so
    the server's sampler finds the command in the run's process tree."""
    path = config(tmp_path, receiver.server_address[1])
    path.write_text(path.read_text() + BIG_RUN)
    server = serve("--config", str(path))
    script = (
        "import time\nb = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
        "print('allocated', flush=True)\ntime.sleep(120)"
    )
    wrapped = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowsight.cli.main",
            "run",
            "--url",
            server.url,
            "--run-id",
            "wrapped-1",
            "-w",
            "train",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        firing = wait_for(
            "the wrapped command's threshold alert", lambda: bodies(receiver, "BigRun", "firing"), timeout=60
        )
        assert firing[0]["alerts"][0]["labels"]["run_id"] == "wrapped-1"
    finally:
        wrapped.terminate()  # flowsight run forwards it to the command and cancels the run
        wrapped.wait(30)
    assert server.client().get("/api/v1/runs/wrapped-1").json()["state"] == "cancelled"


def test_grandchildren_of_a_wrapped_command_burning_cpu_are_the_runs_cpu(
    serve: Serve, tmp_path: Path, receiver: Recorder
) -> None:
    """``flowsight run -- bash -c 'burn & burn & wait'``: the CPU is spent by
    grandchildren of flowsight (bash's children), and is the run's."""
    path = config(tmp_path, receiver.server_address[1])
    path.write_text(path.read_text() + '\n[performance]\ninterval = "0.2s"\n')
    server = serve("--config", str(path))
    burn = f"{sys.executable} -c 'while True: pass'"
    wrapped = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowsight",
            "run",
            "--url",
            server.url,
            "--run-id",
            "grand-1",
            "-w",
            "crunch",
            "--",
            "bash",
            "-c",
            f"{burn} & {burn} & wait",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = server.client()

    def busy() -> list[float]:
        points = client.get("/api/v1/metrics/series", params={"scope": "run:grand-1", "metric": "cpu_percent"})
        values = [p["max"] for p in points.json().get("points", [])] if points.status_code == 200 else []
        return [v for v in values if v >= 50.0]  # two busy grandchildren: most of a core at least, whatever the load

    try:
        wait_for("the grandchildren's CPU as the run's", busy, timeout=60)
    finally:
        wrapped.terminate()
        wrapped.wait(30)


BUSY_THEN_SLEEP = (
    f"echo '::step busy::'; {sys.executable} -c 'import time\nend = time.time() + 3\n"
    'while time.time() < end: pass\nprint("cpu-seconds", time.process_time())\'; '
    # the sleeping step outlasts a sampler kept waiting by a loaded machine: its start and end
    # boundaries are then sampled apart (a sampler later than a step's length samples both at once)
    "echo '::step sleep::'; sleep 8"
)


def test_each_steps_cpu_comes_from_its_own_interval_at_the_default_sampling(serve: Serve, tmp_path: Path) -> None:
    """At the default 5 s sampling a 3 s busy step and a sleeping one
    would share one sample; the server samples the run at each step's start
    and end (and the run's), stamped there, so each has its own."""
    server = serve()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowsight",
            "run",
            "--url",
            server.url,
            "--run-id",
            "steps-1",
            "-w",
            "crunch",
            "--",
            "bash",
            "-c",
            BUSY_THEN_SLEEP,
        ],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    client = server.client()
    steps = {s["step"]: s for s in client.get("/api/v1/runs/steps-1").json()["steps"]}

    def points() -> list[dict[str, Any]]:
        answer = client.get("/api/v1/metrics/series", params={"scope": "run:steps-1", "metric": "cpu_percent"})
        got = answer.json()["points"]
        return got if any(p["ts"] >= steps["sleep"]["ended_at"] - 0.001 for p in got) else []

    series = wait_for("a sample at the end of the last step", points)
    run = client.get("/api/v1/runs/steps-1").json()

    def closing(step: str, until: float) -> float:
        """The CPU of the sample that closes ``step``: stamped at its end, or at a boundary that came
        with it before the server sampled (the next step's start, the run's end)."""
        end = steps[step]["ended_at"]
        at = [p for p in series if end - 0.001 <= p["ts"] <= until + 0.001]
        assert at, (step, end, until, series)
        return float(at[0]["avg"])

    busy = closing("busy", steps["sleep"]["started_at"])
    sleep = closing("sleep", run["end_time"])
    # the sample ending the busy step measured the busy loop, the one ending the sleep measured sleep:
    # the loop's CPU over its step, whatever share of a busy machine it got
    said = re.search(rb"cpu-seconds ([0-9.]+)", done.stdout)
    assert said is not None, done.stdout
    loop = 100 * float(said.group(1)) / (steps["busy"]["ended_at"] - steps["busy"]["started_at"])
    assert busy > loop / 2 and sleep < busy / 3, (loop, series)


def test_runs_written_straight_to_the_store_feed_throughput_and_latency(serve: Serve, store_url: str) -> None:
    """The SDK's default, flowsight run --db and the demo write to the store:
    the server follows those events into its performance monitor too."""
    server = serve()
    from flowsight.model.runs.events import make_event
    from flowsight.store import open_store

    with open_store(store_url) as store:  # another process's writes, as far as the server knows
        for i in range(3):
            t = 1_700_000_000.0 + i * 100
            store.runs.write_events(
                [
                    make_event("started", "direct", f"d{i}", ts=t),
                    make_event("step_started", "direct", f"d{i}", "load", ts=t + 1),
                    make_event("step_completed", "direct", f"d{i}", "load", ts=t + 11),
                    make_event("completed", "direct", f"d{i}", ts=t + 12),
                ]
            )
    client = server.client()

    def summary() -> dict[str, Any]:
        got = client.get("/api/v1/metrics/summary", params={"scope": "workflow:direct"}).json()
        return got if got.get("latency") else {}

    got = wait_for(
        "the workflow's latency from the followed events",
        lambda: (g := summary()) and g["latency"]["run"]["count"] == 3 and g,
    )
    assert got["latency"]["run"]["count"] == 3 and abs(got["latency"]["run"]["p50"] - 12.0) < 0.5, got
    assert got["latency"]["step:load"]["count"] == 3 and abs(got["latency"]["step:load"]["p50"] - 10.0) < 0.5
