"""Programs run by a real ``flowsight serve`` (on uvloop, as uvicorn picks it),
on both stores: a ``command`` detector whose program says ok, then fails,
then ok again; a ``command`` receiver whose program exits 3 without reading
the payload: the delivery fails for good with that status and its output,
once, and the receiver is marked broken."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.server.conftest import Serve, sql_rows
from tests.helpers import wait_for
from tests.server.test_faults_e2e import faults

WAIT = 60.0  # seconds for an outcome on a busy machine


def config(tmp_path: Path, flag: Path) -> Path:
    """A detector that is well while ``flag`` exists; every alert to a program that refuses it."""
    check = f"import os, sys; os.path.exists({str(flag)!r}) or sys.exit('flag {flag.name} is missing')"
    refuse = "import sys; print('no such channel: #ops', file=sys.stderr); sys.exit(3)"
    path = tmp_path / "flowsight.toml"
    path.write_text(f"""
[alerting.route]
receiver = "script"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "1s"
repeat_interval = "1h"

[[alerting.receivers]]
name = "script"
kind = "command"
argv = {json.dumps([sys.executable, "-c", refuse])}
timeout = "20s"

[[detectors]]
name = "flag"
kind = "command"
argv = {json.dumps([sys.executable, "-c", check])}
interval = "0.2s"
timeout = "20s"
retries = 0
""")
    return path


def detector(c: httpx.Client, name: str) -> dict[str, Any]:
    states: list[dict[str, Any]] = c.get("/api/v1/faults").json()["detectors"]
    [state] = [d for d in states if d["name"] == name]
    return state


def test_command_detectors_and_receivers_work_in_the_server(serve: Serve, store_url: str, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    server = serve("--config", str(config(tmp_path, flag)))
    assert "uvloop" in Path(f"/proc/{server.proc.pid}/maps").read_text()  # the loop the programs run under
    c = server.client()

    wait_for("the detector to find all well", lambda: detector(c, "flag")["status"] == "ok", WAIT)
    flag.unlink()
    [fault] = wait_for("the detector's fault", lambda: faults(c, status="open"), WAIT)
    assert (fault["alertname"], fault["detector"], fault["message"]) == (
        "ServiceUnavailable",
        "flag",
        "flag flag is missing",
    )
    assert fault["evidence"]["exit_code"] == 1
    assert detector(c, "flag")["status"] == "fault"

    # the fault's notification: the program exits 3 without reading it; that is final, not retried
    failed = "SELECT attempts, last_error FROM outbox WHERE state = 'failed' ORDER BY id"
    [(attempts, error), *_] = wait_for("the failed delivery", lambda: sql_rows(store_url, failed), WAIT)
    assert attempts == 1
    assert error == f"command {sys.executable!r} exited with status 3: no such channel: #ops"
    broken = wait_for(
        "the ReceiverBroken alert",
        lambda: [a for a in c.get("/api/v1/alerts").json()["alerts"] if a["labels"]["alertname"] == "ReceiverBroken"],
        WAIT,
    )
    assert broken[0]["labels"]["receiver"] == "script" and broken[0]["annotations"]["description"] == error

    flag.touch()
    wait_for("the fault to resolve", lambda: faults(c, status="resolved"), WAIT)
    wait_for("the detector to find all well again", lambda: detector(c, "flag")["status"] == "ok", WAIT)
    log = sql_rows(store_url, "SELECT result, error FROM notification_log WHERE receiver = 'script'")
    assert ("permanent", error) in log and {result for result, _ in log} == {"permanent"}  # none retried
