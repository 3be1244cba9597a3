"""Schedules end to end, on both stores: a real ``flowsight serve`` with a
scheduled workflow whose run does not come, a real webhook, ``curl`` pings
that clear the alert, and a server killed across slots that judges them
``unknown`` when it is back, not ``missed``."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flowsight.errors import ConfigError
from flowsight.sdk.client import Client
from tests.helpers import Recorder
from tests.server.conftest import Serve, create_token, start_server
from tests.server.test_alerting_e2e import bodies, config
from tests.helpers import wait_for

EVERY = 4.0
SCHEDULED = """
[schedules]
heartbeat = "2s"

[workflows.backup]
every = "4s"
start_grace = "1s"
"""


def curl(url: str, *args: str) -> dict[str, Any]:
    import json

    out = subprocess.run(
        ["curl", "-fsS", "-m", "10", "-X", "POST", *args, url], capture_output=True, text=True, timeout=20
    )
    assert out.returncode == 0, out.stderr
    parsed: dict[str, Any] = json.loads(out.stdout)
    return parsed


def slots(c: Any) -> list[dict[str, Any]]:
    r = c.get("/api/v1/schedules/backup", params={"slots": 50})
    assert r.status_code == 200, r.text
    got: list[dict[str, Any]] = r.json()["slots"]
    return got


def starts(body: dict[str, Any]) -> float:
    return datetime.fromisoformat(body["alerts"][0]["startsAt"].replace("Z", "+00:00")).timestamp()


def test_a_run_that_does_not_come_pages_a_ping_clears_it_and_downtime_is_unknown(
    serve: Serve, tmp_path: Path, receiver: Recorder
) -> None:
    cfg = config(tmp_path, receiver.server_address[1], SCHEDULED)
    server = serve("--config", str(cfg))
    c = server.client()
    late = wait_for("the RunLate notification", lambda: bodies(receiver, "RunLate", "firing"), timeout=30)
    assert late[0]["alerts"][0]["labels"]["workflow"] == "backup"
    assert c.get("/api/v1/schedules").json()["counts"].get("late") == 1

    # the job, a shell script with curl: start, then success with its output as the log
    base = f"{server.url}/api/v1/ping/backup"
    started = curl(f"{base}/start?run_id=b-1")
    assert started == {
        "workflow": "backup",
        "run_id": "b-1",
        "events": ["started"],
        "duplicates": 0,
        "log_lines": 0,
        "refused": [],
    }
    done = curl(f"{base}/0?run_id=b-1", "--data-binary", "copied 12 files\nWARN 1 file skipped\n")
    assert done["events"] == ["completed"] and done["log_lines"] == 2
    assert curl(f"{base}/0?run_id=b-1")["duplicates"] == 1  # curl --retry sent it again: counted once

    # what fired is resolved by the start: RunLate, or RunMissed when the slot passed before the ping came
    def cleared() -> list[str]:
        fired = {a["labels"]["alertname"] for b in receiver.bodies for a in b["alerts"] if a["status"] == "firing"}
        ends = {
            a["labels"]["alertname"]: a["annotations"]["resolution"]
            for b in receiver.bodies
            for a in b["alerts"]
            if a["status"] == "resolved"
        }
        done = [ends[n] for n in sorted(fired)] if fired <= set(ends) else []
        return done if any(r.startswith("run b-1 started at") for r in done) else []

    resolutions = wait_for("the resolution of what fired", cleared, timeout=30)
    assert any(r.startswith("run b-1 started at") for r in resolutions), resolutions
    logs = c.get("/api/v1/runs/b-1/logs").json()["logs"]
    assert [(e["level"], e["message"]) for e in logs] == [("info", "copied 12 files"), ("warn", "1 file skipped")]

    # killed across the next slots: back, it judges them unknown, and pages nobody for them
    killed = time.time()
    server.stop(signal.SIGKILL)
    time.sleep(3 * EVERY + 2)
    again = serve("--config", str(cfg))
    back = time.time()
    c = again.client()
    down = wait_for(
        "the slots of the downtime judged",
        lambda: [s for s in slots(c) if killed < s["at"] and s["at"] + EVERY < back],
        timeout=30,
    )
    assert len(down) >= 2 and {s["status"] for s in down} == {"unknown"}, down
    assert [s for s in slots(c) if s["status"] == "missed" and killed < s["at"] + EVERY < back] == []
    assert [b for b in bodies(receiver, "RunMissed", "firing") if killed <= starts(b) < back + 1] == []


def test_pings_need_an_ingest_token_once_tokens_exist(store_url: str, tmp_path: Path) -> None:
    token = create_token(store_url, "ingest", "cron")
    reader = create_token(store_url, "read", "dashboard")
    server = start_server(store_url, log_dir=tmp_path)
    try:
        url = f"{server.url}/api/v1/ping/nightly/start"
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url], capture_output=True, text=True
        )
        assert out.stdout == "401"
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "-H",
                f"Authorization: Bearer {reader}",
                url,
            ],
            capture_output=True,
            text=True,
        )
        assert out.stdout == "403"
        got = curl(url, "-H", f"Authorization: Bearer {token}")
        assert got["events"] == ["started"] and got["workflow"] == "nightly"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("path", "events", "state", "error"),
    [
        ("fail", ["started", "completed"], None, None),
        ("3", ["started", "failed"], "failed", "exit status 3"),
    ],
)
def test_an_end_without_a_start_is_a_run_whose_start_is_not_known(
    serve: Serve, path: str, events: list[str], state: str | None, error: str | None
) -> None:
    server = serve()
    c = server.client()
    if path == "fail":  # a start by ping, then a failure with the body's first line as the error
        rid = curl(f"{server.url}/api/v1/ping/job/start")["run_id"]
        got = curl(
            f"{server.url}/api/v1/ping/job/fail", "--data-binary", "\nsyncing\nERROR rsync: connection refused\nmore\n"
        )
        assert got["run_id"] == rid and got["events"] == ["failed"]
        run = c.get(f"/api/v1/runs/{rid}").json()
        assert run["state"] == "failed" and run["error"] == "rsync: connection refused"
        return
    got = curl(f"{server.url}/api/v1/ping/job/{path}")
    assert got["events"] == events
    run = c.get(f"/api/v1/runs/{got['run_id']}").json()
    assert run["state"] == state and run["error"] == error


def test_a_run_id_of_another_workflow_is_refused_and_a_refused_end_is_said(serve: Serve) -> None:
    server = serve()
    c = server.client()
    assert c.post("/api/v1/ping/wfa/start?run_id=1796642091").status_code == 200
    r = c.post("/api/v1/ping/wfb/start?run_id=1796642091")
    assert r.status_code == 409 and "is a run of workflow 'wfa', not 'wfb'" in r.json()["error"]
    assert c.post("/api/v1/ping/wfb/0?run_id=1796642091").status_code == 409
    assert c.post("/api/v1/ping/wfa/0?run_id=1796642091").json()["refused"] == []
    # a failure after the completion: the run stays completed, and the answer says the change was refused
    got = c.post("/api/v1/ping/wfa/fail?run_id=1796642091").json()
    assert got["events"] == ["failed"] and got["refused"] and got["refused"][0].startswith("completed -> failed")
    assert c.get("/api/v1/runs/1796642091").json()["state"] == "completed"


def test_unknown_pings_and_bad_expectations_are_refused(serve: Serve, tmp_path: Path) -> None:
    server = serve()
    c = server.client()
    r = c.post("/api/v1/ping/job/finish")
    assert r.status_code == 404 and "start, success, fail or an exit code" in r.json()["error"]
    assert c.post("/api/v1/ping/job/256").status_code == 404
    r = c.put("/api/v1/schedules/job", json={"schedule": "0 2 * *", "timezone": "Mars/Olympus", "start_grace": "1d"})
    assert r.status_code == 422
    assert "schedule: expected a cron expression of 5 fields" in r.json()["error"]
    assert "timezone: unknown time zone 'Mars/Olympus'" in r.json()["error"]
    r = c.put("/api/v1/schedules/job", json={"schedule": "@hourly", "start_grace": "2h"})
    assert r.status_code == 422 and "start_grace: 2h 00m is not shorter" in r.json()["error"]
    r = c.put(
        "/api/v1/schedules/job", json={"schedule": "0 2 * * *", "timezone": "Europe/Copenhagen", "deadline": "06:00"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["schedule"] == "0 2 * * * (Europe/Copenhagen)"
    wait_for("the first look", lambda: c.get("/api/v1/schedules").status_code == 200)
    time.sleep(1.5)  # the monitor has made its first look: what is set from now on reads back at once
    r = c.put("/api/v1/schedules/job2", json={"every": "1h"})
    assert r.status_code == 200 and c.get("/api/v1/schedules/job2").json()["schedule"] == "every 1h"
    view = c.get("/api/v1/schedules/job").json()
    assert view["source"] == "api" and view["next_local"].endswith(("02:00 CET", "02:00 CEST"))
    assert c.delete("/api/v1/schedules/job").status_code == 200
    assert c.get("/api/v1/schedules/job").status_code == 404


def test_expectations_in_the_file_are_not_changed_through_the_api(serve: Serve, tmp_path: Path) -> None:
    cfg = tmp_path / "flowsight.toml"
    cfg.write_text('[workflows.nightly]\nschedule = "0 2 * * *"\n')
    server = serve("--config", str(cfg))
    c = server.client()
    r = c.put("/api/v1/schedules/nightly", json={"every": "1h"})
    assert r.status_code == 409 and "change them there" in r.json()["error"]
    assert c.delete("/api/v1/schedules/nightly").status_code == 409
    got = wait_for("the configured schedule", lambda: c.get("/api/v1/schedules").json()["schedules"])
    assert got[0]["workflow"] == "nightly" and got[0]["source"] == "config"
    # the SDK sets them through the API, and says what the server refused
    client = Client(url=server.url, spool_dir=tmp_path / "spool")
    try:
        client.expect("hourly-report", schedule="@hourly", max_runtime="20m")
        with pytest.raises(ConfigError, match="409.*change them there"):
            client.expect("nightly", every="1h")
    finally:
        client.close()
    view = wait_for("the SDK's schedule", lambda: c.get("/api/v1/schedules/hourly-report").json().get("source"))
    assert view == "api"
