"""Alerting under attack, against a real ``flowsight serve`` on both stores:
crafted regexes and floods of alerts must not stall the server, its
shutdown or its restart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from flowsight.model.alerts import Alert, AlertState
from flowsight.store import open_store
from tests.helpers import Recorder
from tests.server.conftest import Serve, flowsight, sql_rows
from tests.server.test_alerting_e2e import config
from tests.helpers import wait_for

CRAFTED = "a" * 32 + "!"  # (a+)+ backtracks 2^32 ways on it before failing


def test_a_regex_silence_cannot_stall_the_server(serve: Serve, tmp_path: Path, receiver: Recorder) -> None:
    server = serve("--config", str(config(tmp_path, receiver.server_address[1], group_by='["n"]')))
    c = server.client(timeout=30)
    r = c.post("/api/v1/silences", json={"matchers": ["alertname=~(a+)+"], "duration": "1h", "comment": "crafted"})
    assert r.status_code == 201, r.text
    crafted = [{"labels": {"alertname": CRAFTED, "n": str(i)}} for i in range(15)]
    r = c.post("/api/v1/alerts", json=[*crafted, {"labels": {"alertname": "a" * 32, "n": "matched"}}])
    assert r.status_code == 200, r.text

    # the round matched every alert against the silence (all but one are sent), and the API answers
    wait_for(
        "the 15 crafted alerts at the receiver",
        lambda: len({a["labels"]["n"] for b in receiver.bodies for a in b["alerts"]}) == 15,
    )
    shown = {a["labels"]["n"]: a["status"] for a in c.get("/api/v1/alerts").json()["alerts"]}
    assert shown == {**{str(i): "firing" for i in range(15)}, "matched": "silenced"}
    assert c.get("/api/v1/runs").status_code == 200


# ---- a flood of alerts -------------------------------------------------------------
N = 25_000  # per alertname: forgetting them was quadratic (N * N steps on the event loop: minutes)
BATCH = 1_000


def alerts(name: str, *, resolved: bool = False) -> list[dict[str, Any]]:
    end = {"ends_at": time.time() - 1} if resolved else {"ends_at": time.time() + 3600}
    return [{"labels": {"alertname": name, "i": str(i)}, **end} for i in range(N)]


def post_alerts(c: httpx.Client, items: list[dict[str, Any]], *, meanwhile: Callable[[], None]) -> None:
    """POST ``items`` in batches, calling ``meanwhile`` (another request) between them."""
    for i in range(0, len(items), BATCH):
        r = c.post("/api/v1/alerts", json=items[i : i + BATCH])
        assert r.status_code == 200, r.text
        meanwhile()


def told(rec: Recorder, name: str, status: str) -> set[str]:
    return {
        a["labels"]["i"]
        for b in list(rec.bodies)
        for a in b["alerts"]
        if a["labels"]["alertname"] == name and a["status"] == status
    }


def test_a_flood_of_alerts_resolved_in_batches_neither_stalls_the_server_nor_its_restart(
    serve: Serve, store_url: str, tmp_path: Path, receiver: Recorder
) -> None:
    cfg = str(config(tmp_path, receiver.server_address[1], group_by='["alertname"]'))
    server = serve("--config", cfg)
    c = server.client(timeout=30)
    other = server.client(timeout=20)  # another user of the server, throughout

    def runs_answer() -> None:
        assert other.get("/api/v1/runs").status_code == 200

    post_alerts(c, alerts("Keep") + alerts("Gone"), meanwhile=runs_answer)
    wait_for(
        "both groups told firing",
        lambda: (
            runs_answer(),
            len(told(receiver, "Keep", "firing")) == N and len(told(receiver, "Gone", "firing")) == N,
        )[1],
        60,
    )
    # resolved in batches while the 25,000 "Keep" are still owed their resolution
    post_alerts(c, alerts("Gone", resolved=True), meanwhile=runs_answer)
    wait_for(
        "every Gone alert told resolved and forgotten",
        lambda: (
            runs_answer(),
            len(told(receiver, "Gone", "resolved")) == N and len(c.get("/api/v1/alerts").json()["alerts"]) == N,
        )[1],
        60,
    )

    # SIGTERM ends it, and a restart on that store comes up with what it owes
    assert server.stop() == 0, server.output()
    assert sql_rows(store_url, "SELECT count(*) FROM alerts")[0][0] == N
    again = serve("--config", cfg).client(timeout=30)
    shown = again.get("/api/v1/alerts").json()["alerts"]
    assert len(shown) == N and {a["labels"]["alertname"] for a in shown} == {"Keep"}
    assert all(a["status"] == "firing" and a["receivers_told"] == ["team"] for a in shown)
    listed = flowsight("alerts", "--json", "--config", cfg, db=store_url)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["alerts"]
    assert len(rows) == N and {(r["labels"]["alertname"], r["status"]) for r in rows} == {("Keep", "firing")}


def test_a_restart_on_a_store_holding_a_flood_comes_up_and_lists_it(
    serve: Serve, store_url: str, tmp_path: Path, receiver: Recorder
) -> None:
    """60,000 alerts the receiver was told fire, kept by a server that
    stopped: restoring them was quadratic (a minute before the port was
    bound), and so was ``flowsight alerts``."""
    n = 60_000
    cfg = str(config(tmp_path, receiver.server_address[1], group_by='["alertname"]'))
    now = time.time()
    with open_store(store_url) as store:
        store.alerts.save_alerts(
            [
                AlertState(Alert({"alertname": "Flood", "i": str(i)}, starts_at=now - i, ends_at=now + 3600), ("team",))
                for i in range(n)
            ],
            now,
        )
    c = serve("--config", cfg).client(timeout=60)
    assert c.get("/api/v1/runs").status_code == 200
    shown = c.get("/api/v1/alerts").json()["alerts"]
    assert len(shown) == n and all(a["status"] == "firing" and a["receivers_told"] == ["team"] for a in shown)
    assert [a["labels"]["i"] for a in shown[:3]] == ["0", "1", "2"]  # newest first

    table = flowsight("alerts", "--config", cfg, db=store_url)
    assert table.returncode == 0, table.stderr
    assert f"{n} alerts, the newest 200 shown" in table.stdout and f"{n - 200} older alerts not shown" in table.stdout
    assert not [b for b in receiver.bodies if b["status"] == "firing"]  # told before the stop: not again
