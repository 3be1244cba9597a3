"""The log template store of a real ``flowsight serve``, on both stores:
a flood of distinct lines keeps it at its cap, saved and restored with the
same ids."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from flowsight.logs.analyzer import LogAnalyzer
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.logs.templates import MAX_TEMPLATES
from flowsight.monitors.log import ANALYZER_STATE
from tests.logs.test_templates import flood
from tests.server.conftest import Serve, sql_rows
from tests.helpers import wait_for

HEARTBEAT_EVERY = 20


def templates(c: httpx.Client) -> list[dict[str, Any]]:
    r = c.get("/api/v1/logs/templates", params={"since": "24h", "limit": 50})
    assert r.status_code == 200, r.text
    got: list[dict[str, Any]] = r.json()["templates"]
    return got


def saved_state(db: str) -> str:
    rows = sql_rows(db, f"SELECT value FROM kept_state WHERE name = '{ANALYZER_STATE}'")
    assert rows, "the server saved no log analyzer state"
    return str(rows[0][0])


def test_a_flood_of_distinct_lines_keeps_the_templates_at_the_cap_and_their_ids_across_a_restart(
    serve: Serve, store_url: str
) -> None:
    server = serve()
    c = server.client(timeout=60)
    lines = flood(3 * MAX_TEMPLATES)
    beats = 0
    for start in range(0, len(lines), 2000):
        batch: list[dict[str, Any]] = []
        for i, line in enumerate(lines[start : start + 2000], start):
            batch.append({"message": line, "workflow": "etl"})
            if i % HEARTBEAT_EVERY == 0:
                batch.append({"message": f"heartbeat from worker {i} ok", "workflow": "beat"})
                beats += 1
        r = c.post("/api/v1/logs", json=batch)
        assert r.status_code == 200 and r.json()["accepted"] == len(batch), r.text

    def templated(text: str) -> str | None:
        logs = c.get("/api/v1/logs", params={"q": text}).json()["logs"]
        return logs[0]["template_id"] if logs and logs[0]["template_id"] else None

    # the server's analyzer takes the stored lines oldest first: the last one templated, all are
    wait_for("the last line templated by the server's analyzer", lambda: templated(lines[-1]), timeout=120)
    before = templates(c)
    beat = next(t for t in before if t["template"] == "heartbeat from worker <*> ok")
    assert beat["count"] == beats
    assert server.stop() == 0, server.output()  # a clean stop saves the templates

    # saved: no more templates than the cap, no bigger than the cap's worth of these lines
    state = json.loads(saved_state(store_url))
    clusters = sum(len(b["clusters"]) for b in state["miner"]["buckets"])
    assert clusters <= MAX_TEMPLATES
    reference = LogAnalyzer()
    for i, line in enumerate(lines[:MAX_TEMPLATES]):
        reference.analyze(LogEntry(time.time(), LogLevel.INFO, line, "api", "etl"))
        if i % HEARTBEAT_EVERY == 0:
            reference.analyze(LogEntry(time.time(), LogLevel.INFO, f"heartbeat from worker {i} ok", "api", "beat"))
    assert len(saved_state(store_url)) <= 1.1 * len(json.dumps(reference.state()))

    again = serve()
    c = again.client(timeout=60)
    assert templates(c) == before  # the same ids, texts and counts
    r = c.post("/api/v1/logs", json=[{"id": "beat-after", "message": "heartbeat from worker 99 ok"}])
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert (
        wait_for("the new heartbeat templated", lambda: templated("worker 99 ok"), timeout=120) == beat["template_id"]
    )
