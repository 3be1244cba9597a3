"""Alerting under attack, against a real ``flowsight serve`` on both stores:
crafted regexes and floods of alerts must not stall the server, its
shutdown or its restart."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Recorder
from tests.server.conftest import Serve
from tests.server.test_alerting_e2e import config, wait_for

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
    wait_for("the 15 crafted alerts at the receiver", lambda: len(
        {a["labels"]["n"] for b in receiver.bodies for a in b["alerts"]}) == 15)
    shown = {a["labels"]["n"]: a["status"] for a in c.get("/api/v1/alerts").json()["alerts"]}
    assert shown == {**{str(i): "firing" for i in range(15)}, "matched": "silenced"}
    assert c.get("/api/v1/runs").status_code == 200
