"""Faults end to end, on both stores: ``flowsight serve`` with a TCP detector
on a real port of 127.0.0.1 that is closed, then accepts: the fault is
declared, hurts the running run of the workflow that depends on it, reaches
the webhook, is listed by the API and ``flowsight faults``, and resolves
when the port accepts again. ``flowsight detectors check`` runs each once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import Recorder
from tests.server.conftest import FLOWSIGHT, Serve, event, flowsight, free_port, post
from tests.server.test_alerting_e2e import bodies
from tests.helpers import wait_for
from tests.server.test_alerting_e2e import config as alerting_config


def config(tmp_path: Path, hook_port: int, db_port: int) -> Path:
    return alerting_config(
        tmp_path,
        hook_port,
        f"""
[workflows.nightly-etl]
depends_on = ["postgres-main"]

[[detectors]]
name = "postgres-main"
kind = "tcp"
host = "127.0.0.1"
port = {db_port}
interval = "0.2s"
timeout = "1s"
retries = 1
""",
        group_by='["alertname"]',
    )


def faults(c: Any, **params: str) -> list[dict[str, Any]]:
    r = c.get("/api/v1/faults", params=params)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["faults"]
    return out


def test_a_closed_port_is_a_fault_that_hurts_its_dependents_and_resolves_when_it_accepts(
    serve: Serve, store_url: str, tmp_path: Path, receiver: Recorder
) -> None:
    db_port = free_port()  # nothing listens there yet
    path = config(tmp_path, receiver.server_address[1], db_port)
    server = serve("--config", str(path))
    c = server.client()
    post(c, [event("started", "nightly-etl", "n-1"), event("started", "report", "r-1")])

    # the detector's first check may come before the runs are stored: the fault takes in a dependent's
    # running run at its next failing check (and its severity rises with it)
    [fault] = wait_for(
        "the fault to be declared, hurting n-1",
        lambda: [f for f in faults(c, status="open") if f["runs"] == ["n-1"] and f["severity"] == "error"],
    )
    assert (fault["alertname"], fault["target"], fault["detector"]) == (
        "ServiceUnavailable",
        "postgres-main",
        "postgres-main",
    )
    assert fault["evidence"]["port"] == db_port and fault["runs"] == ["n-1"]
    assert fault["severity"] == "error"  # warning, one level up: a running run depends on it
    firing = wait_for("the fault's notification", lambda: bodies(receiver, "ServiceUnavailable", "firing"))
    assert firing[0]["alerts"][0]["labels"]["service"] == "postgres-main"
    state = c.get("/api/v1/faults").json()["detectors"]
    assert [(d["name"], d["status"]) for d in state] == [("postgres-main", "fault")]
    assert [f["id"] for f in faults(c, run_id="n-1")] == [fault["id"]] and faults(c, run_id="r-1") == []
    assert [f["id"] for f in faults(c, kind="ServiceUnavailable")] == [fault["id"]]  # the alert's name works too
    assert faults(c, kind="data_corruption") == []
    by_prefix = json.loads(flowsight("faults", "--run", "n-", "--json", db=store_url).stdout)["faults"]
    assert [f["id"] for f in by_prefix] == [fault["id"]]  # a unique prefix of the run id, as for `show`

    run = c.get("/api/v1/runs/n-1").json()  # the run says what broke around it
    assert [(f["id"], f["alertname"], f["status"]) for f in run["faults"]] == [
        (fault["id"], "ServiceUnavailable", "open")
    ]
    assert c.get("/api/v1/runs/r-1").json()["faults"] == []
    show = flowsight("show", "n-1", db=store_url)
    assert show.returncode == 0 and "faults around this run" in show.stdout and "postgres-main" in show.stdout

    shown = flowsight("faults", db=store_url)
    assert shown.returncode == 0, shown.stderr
    assert "ServiceUnavailable" in shown.stdout and "postgres-main" in shown.stdout and "open" in shown.stdout

    with socket.create_server(("127.0.0.1", db_port)) as listening:  # the database is back
        listening.listen()
        [done] = wait_for("the fault to resolve", lambda: faults(c, status="resolved"))
        assert done["id"] == fault["id"] and done["resolved_at"] >= done["opened_at"]
        wait_for("the resolved notification", lambda: bodies(receiver, "ServiceUnavailable", "resolved"))
        listed = json.loads(flowsight("faults", "--json", db=store_url).stdout)["faults"]
        assert [(f["id"], f["status"]) for f in listed] == [(fault["id"], "resolved")]


def test_detectors_check_runs_each_once_and_says_what_it_found(tmp_path: Path) -> None:
    closed = free_port()
    with socket.create_server(("127.0.0.1", 0)) as open_sock:
        open_sock.listen()
        path = tmp_path / "flowsight.toml"
        path.write_text(f"""
[[detectors]]
name = "up"
kind = "tcp"
host = "127.0.0.1"
port = {open_sock.getsockname()[1]}

[[detectors]]
name = "down"
kind = "tcp"
host = "127.0.0.1"
port = {closed}
timeout = "2s"
""")
        out = flowsight("detectors", "check", "--config", str(path), "--json", db=str(tmp_path / "x.db"))
        assert out.returncode == 1, out.stderr  # one found a fault
        rows = {r["detector"]: r for r in json.loads(out.stdout)["detectors"]}
        assert rows["up"]["result"] == "ok" and rows["down"]["result"] == "fault"
        assert rows["down"]["fault"]["kind"] == "service_unavailable"
        table = flowsight("detectors", "check", "--config", str(path), db=str(tmp_path / "x.db"))
        assert "ServiceUnavailable" in table.stdout and "ok" in table.stdout
    none = tmp_path / "empty.toml"
    none.write_text("")
    out = flowsight("detectors", "check", "--config", str(none), db=str(tmp_path / "x.db"))
    assert out.returncode == 2 and "no [[detectors]]" in out.stderr
    (tmp_path / "elsewhere").mkdir()
    nowhere = subprocess.run(
        [*FLOWSIGHT, "detectors", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path / "elsewhere",
        env={k: v for k, v in os.environ.items() if k != "FLOWSIGHT_CONFIG"},
    )
    assert nowhere.returncode == 2 and "no configuration file" in nowhere.stderr


def test_a_bad_detector_is_refused_by_check_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "flowsight.toml"
    path.write_text("""
[[detectors]]
name = "db"
kind = "tcp"
host = "127.0.0.1"
port = 70000

[[detectors]]
name = "what"
kind = "telepathy"
""")
    out = flowsight("check", "--config", str(path), db=str(tmp_path / "x.db"))
    assert out.returncode == 1
    assert f"{path}:6: detectors[0].port: expected a port from 1 to 65535, got integer 70000" in out.stdout
    assert "detectors[1].kind: unknown detector kind 'telepathy'" in out.stdout and "tcp" in out.stdout
