"""Alerting end to end: a real ``flowsight serve`` with a flowsight.toml, real
events, the built-in rules, a real webhook receiver on 127.0.0.1; silences
from the API and the CLI; an outbox that survives ``kill -9``."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any


from flowsight.model.runs.events import make_event
from flowsight.store import open_store
from tests.helpers import Recorder, recording, wait_for
from tests.server.conftest import Serve, event, flowsight, free_port, post, sql_rows


def config(tmp_path: Path, hook_port: int, more: str = "", group_by: str = '["alertname", "workflow"]') -> Path:
    """flowsight.toml: every alert to a webhook at ``hook_port`` at once, then ``more``."""
    path = tmp_path / "flowsight.toml"
    path.write_text(
        f"""
[alerting.route]
receiver = "team"
group_by = {group_by}
group_wait = "0s"
group_interval = "1s"
repeat_interval = "1h"

[[alerting.receivers]]
name = "team"
kind = "webhook"
url = "http://127.0.0.1:{hook_port}/hook"
timeout = "2s"
"""
        + more
    )
    return path


def failed_run(run_id: str, workflow: str = "etl") -> list[dict[str, Any]]:
    return [
        event("started", workflow, run_id),
        event("step_started", workflow, run_id, "load"),
        event("step_failed", workflow, run_id, "load", error="disk full"),
        event("failed", workflow, run_id, error="load failed"),
    ]


def bodies(rec: Recorder, alertname: str, status: str) -> list[dict[str, Any]]:
    return [
        b
        for b in rec.bodies
        if b["status"] == status and any(a["labels"].get("alertname") == alertname for a in b["alerts"])
    ]


def test_a_failed_run_reaches_the_webhook_and_its_resolution_beats_a_silence(
    serve: Serve, tmp_path: Path, receiver: Recorder
) -> None:
    server = serve("--config", str(config(tmp_path, receiver.server_address[1])))
    c = server.client()
    post(c, failed_run("r1"))

    firing = wait_for("the RunFailed notification", lambda: bodies(receiver, "RunFailed", "firing"))
    alert = firing[0]["alerts"][0]
    assert alert["labels"]["workflow"] == "etl" and alert["labels"]["run_id"] == "r1"
    assert firing[0]["version"] == "4" and firing[0]["idempotencyKey"]
    listed = c.get("/api/v1/alerts").json()["alerts"]
    mine = [a for a in listed if a["labels"]["alertname"] == "RunFailed"]
    assert mine and mine[0]["status"] == "firing" and mine[0]["receivers_told"] == ["team"]

    r = c.post("/api/v1/silences", json={"matchers": ["workflow=etl"], "duration": "1h", "comment": "maintenance"})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "active"
    wait_for(
        "the alert to show as silenced",
        lambda: any(
            a["status"] == "silenced" for a in c.get("/api/v1/alerts", params={"status": "silenced"}).json()["alerts"]
        ),
    )

    # a newer run of the workflow completes: RunFailed resolves, and the
    # receiver that heard "firing" hears "resolved" though the alert is silenced
    post(c, [event("started", "etl", "r2"), event("completed", "etl", "r2")])
    wait_for("the resolved notification", lambda: bodies(receiver, "RunFailed", "resolved"))


def test_silences_from_the_cli_are_seen_by_the_server_and_listed(
    serve: Serve, store_url: str, tmp_path: Path, receiver: Recorder
) -> None:
    server = serve("--config", str(config(tmp_path, receiver.server_address[1])))
    c = server.client()
    post(c, failed_run("r1", "nightly-etl"))
    wait_for("the RunFailed notification", lambda: bodies(receiver, "RunFailed", "firing"))

    out = flowsight("silence", "add", "workflow=nightly-etl", "--for", "2h", "-c", "maintenance", db=store_url)
    assert out.returncode == 0, out.stderr
    sid = out.stdout.split()[1]
    wait_for(
        "the server to apply the CLI's silence",
        lambda: [
            a
            for a in c.get("/api/v1/alerts", params={"status": "silenced"}).json()["alerts"]
            if a["muted_by"] == f"silenced by {sid}"
        ],
    )

    ls = flowsight("silence", "ls", "--json", db=store_url)
    assert ls.returncode == 0, ls.stderr
    assert sid in ls.stdout and "maintenance" in ls.stdout
    shown = flowsight("alerts", "--config", str(tmp_path / "flowsight.toml"), db=store_url)
    assert shown.returncode == 0, shown.stderr
    assert "RunFailed" in shown.stdout and "silenced" in shown.stdout

    assert flowsight("silence", "expire", sid, db=store_url).returncode == 0
    wait_for(
        "the silence to end on the server",
        lambda: [
            a
            for a in c.get("/api/v1/alerts", params={"status": "firing"}).json()["alerts"]
            if a["labels"]["alertname"] == "RunFailed"
        ],
    )
    api = c.get("/api/v1/silences", params={"all": "true"}).json()["silences"]
    assert [s["state"] for s in api if s["id"] == sid] == ["expired"]


def test_bad_silences_are_refused_with_the_reason(serve: Serve) -> None:
    """400: not as the OpenAPI document describes a silence; 422: as described, but a regular
    expression RE2 cannot compile (no schema can say which)."""
    c = serve().client()
    for body, status, words in [
        ({"matchers": ["workflow=~("], "duration": "1h", "comment": "x"}, 422, "regex"),
        (
            {"matchers": ["workflow=etl", "run_id=~(\\d+)-\\1"], "duration": "1h", "comment": "x"},
            422,
            "matcher run_id=~'(\\\\d+)-\\\\1': invalid regex '(\\\\d+)-\\\\1': invalid escape sequence: "
            "\\1: backreferences are not supported",
        ),
        (
            {"matchers": ["alertname=~Disk(?!Full).*"], "duration": "1h", "comment": "x"},
            422,
            "invalid regex 'Disk(?!Full).*': invalid perl operator: (?!: lookahead assertions are not supported",
        ),
        ({"matchers": ["workflow=etl"], "comment": "x"}, 400, "how long"),
        ({"matchers": ["workflow=etl"], "duration": "1h", "comment": " "}, 400, "comment"),
        ({"matchers": [], "duration": "1h", "comment": "x"}, 400, "matcher"),
        ({"matchers": ["workflow=etl"], "duration": "soon", "comment": "x"}, 400, "duration"),
    ]:
        r = c.post("/api/v1/silences", json=body)
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["error"], r.text
    assert c.delete("/api/v1/silences/nope").status_code == 404


def test_notifications_in_the_outbox_of_a_killed_server_are_sent_after_restart(
    serve: Serve, store_url: str, tmp_path: Path
) -> None:
    hook_port = free_port()  # nothing listens there yet: every delivery fails and stays in the outbox
    cfg = str(config(tmp_path, hook_port))
    server = serve("--config", cfg)
    post(server.client(), failed_run("r1"))
    wait_for(
        "a failed delivery attempt",
        lambda: sql_rows(store_url, "SELECT count(*) FROM notification_log WHERE result = 'temporary'")[0][0] > 0,
    )
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL

    with recording(hook_port) as rec:
        serve("--config", cfg)
        got = wait_for("the notification from the outbox", lambda: bodies(rec, "RunFailed", "firing"), 40.0)
        wait_for(
            "an empty outbox",
            lambda: sql_rows(store_url, "SELECT count(*) FROM outbox WHERE state = 'pending'")[0][0] == 0,
        )
        assert len(bodies(rec, "RunFailed", "firing")) == 1, rec.bodies  # sent once, not again after restart
        assert got[0]["alerts"][0]["labels"]["run_id"] == "r1"


def test_metrics_count_alerts_by_status_and_severity(serve: Serve, tmp_path: Path, receiver: Recorder) -> None:
    server = serve("--config", str(config(tmp_path, receiver.server_address[1])))
    c = server.client()
    post(c, failed_run("r1"))
    text = wait_for(
        "the alert in /metrics",
        lambda: (
            t if 'flowsight_alerts{severity="error",status="firing"} 1.0' in (t := c.get("/metrics").text) else None
        ),
    )
    assert 'flowsight_notifications_pending{receiver="team"}' in text


def test_a_run_written_straight_into_the_store_is_alerted_on_too(
    serve: Serve, store_url: str, tmp_path: Path, receiver: Recorder
) -> None:
    # the SDK's embedded mode writes to the store, not over HTTP: the server's rules read the store
    serve("--config", str(config(tmp_path, receiver.server_address[1])))
    with open_store(store_url) as store:
        store.runs.write_events(
            [make_event("started", "local-etl", "L1"), make_event("failed", "local-etl", "L1", attrs={"error": "boom"})]
        )
    got = wait_for("the RunFailed of a run the SDK wrote", lambda: bodies(receiver, "RunFailed", "firing"))
    assert got[0]["alerts"][0]["labels"]["workflow"] == "local-etl"
    assert "boom" in got[0]["alerts"][0]["annotations"]["description"]


def test_log_lines_sent_to_the_server_are_templated_and_alerted_on(
    serve: Serve, tmp_path: Path, receiver: Recorder
) -> None:
    cfg = config(tmp_path, receiver.server_address[1])
    cfg.write_text(
        cfg.read_text()
        + """
[[log_rules]]
name = "DatabaseUnreachable"
kind = "match"
pattern = 'connection refused'
level = "error"
severity = "critical"
group_by = ["run_id"]
"""
    )
    server = serve("--config", str(cfg))
    c = server.client()
    r = c.post(
        "/api/v1/logs",
        json=[
            {"id": "l1", "line": "2024-05-01 12:00:00,250 INFO [main] etl: user 1 logged in", "run_id": "r7"},
            {"id": "l2", "line": "2024-05-01 12:00:01,250 INFO [main] etl: user 2 logged in", "run_id": "r7"},
            {"id": "l3", "line": "2024-05-01 12:00:02,000 ERROR [main] db: connection refused", "run_id": "r7"},
        ],
    )
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text

    firing = wait_for("the log rule's notification", lambda: bodies(receiver, "DatabaseUnreachable", "firing"))
    alert = firing[0]["alerts"][0]
    assert alert["labels"]["run_id"] == "r7" and alert["labels"]["severity"] == "critical"
    assert "connection refused" in alert["annotations"]["description"]
    logs = wait_for(
        "templates on the stored lines",
        lambda: [e for e in c.get("/api/v1/logs", params={"run_id": "r7"}).json()["logs"] if e["template_id"]] or None,
    )
    by_id = {e["id"]: e["template_id"] for e in c.get("/api/v1/logs", params={"run_id": "r7"}).json()["logs"]}
    assert logs and by_id["l1"] == by_id["l2"] != by_id["l3"]
    # a template's lines, by its id
    same = c.get("/api/v1/logs", params={"template": by_id["l1"]}).json()["logs"]
    assert sorted(e["id"] for e in same) == ["l1", "l2"]
    # and the analyzer's counts per template
    top = c.get("/api/v1/logs/templates", params={"since": 0}).json()["templates"]
    assert top[0] == {"template_id": by_id["l1"], "template": "user <*> logged in", "count": 2}, top
