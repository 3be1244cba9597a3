"""A baseline from flowsight.toml at work in ``flowsight serve``, on both
stores: runs posted over HTTP build the workflow's history; a run far slower
than usual reaches the webhook with a sentence a person reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import Recorder
from tests.server.conftest import Serve, event, post
from tests.server.test_alerting_e2e import bodies, wait_for


def config(tmp_path: Path, hook_port: int) -> Path:
    path = tmp_path / "flowsight.toml"
    path.write_text(f"""
[alerting.route]
receiver = "team"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "1s"
repeat_interval = "1h"

[[alerting.receivers]]
name = "team"
kind = "webhook"
url = "http://127.0.0.1:{hook_port}/hook"
timeout = "2s"

[[thresholds]]
name = "SlowRun"
kind = "baseline"
metric = "run_duration"
quantile = "p95"
factor = 2.0
runs = 20
min_runs = 10
""")
    return path


def run_events(run_id: str, start: float, took: float) -> list[dict[str, Any]]:
    return [event("started", "nightly-etl", run_id, ts=start), event("completed", "nightly-etl", run_id, ts=start + took)]


def test_a_run_far_slower_than_its_workflows_history_is_alerted(serve: Serve, tmp_path: Path,
                                                                 receiver: Recorder) -> None:
    server = serve("--config", str(config(tmp_path, receiver.server_address[1])))
    c = server.client()
    for i in range(12):
        post(c, run_events(f"r{i}", 1_700_000_000.0 + i * 3600, 100.0 + i))
    post(c, run_events("slow", 1_700_100_000.0, 900.0))
    firing = wait_for("the baseline alert", lambda: bodies(receiver, "SlowRun", "firing"))
    alert = firing[0]["alerts"][0]
    assert alert["labels"]["workflow"] == "nightly-etl" and alert["labels"]["metric"] == "run_duration"
    assert alert["annotations"]["summary"].startswith("a run of nightly-etl took 15m 00s; p95 of the last 12 runs is")
