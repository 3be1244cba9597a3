"""A receiver's credentials stay out of what a real ``flowsight serve`` logs
and shows: a webhook and an Alertmanager whose URLs carry a user, a password
and a token in the query break for good (their answers even quote the URL),
and neither the server's log, nor the ``ReceiverBroken`` alerts read from the
API, nor what the other receivers are told, nor the outbox holds a secret."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Recorder
from tests.server.conftest import Serve, sql_rows
from tests.helpers import wait_for

SECRETS = ("hookuser", "hunter2", "s3cr3t-token", "amuser", "am-pa55", "am-k3y")


class Refusing(ThreadingHTTPServer):
    """Answers every POST with ``status`` and a body that quotes the request
    line, query string included (as many servers' error pages do); keeps the
    paths and Authorization headers it got."""

    def __init__(self, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _Refuse)
        self.status = status
        self.seen: list[tuple[str, str]] = []


class _Refuse(BaseHTTPRequestHandler):
    server: Refusing

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, self.headers.get("Authorization", "")))
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(f"Cannot POST {self.path} (http://{self.headers['Host']}{self.path})".encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing() -> Iterator[tuple[Refusing, Refusing]]:
    """A webhook answering 404 and an Alertmanager answering 400: both permanent failures."""
    servers = (Refusing(404), Refusing(400))
    for s in servers:
        threading.Thread(target=s.serve_forever, args=(0.01,), daemon=True).start()
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def config(tmp_path: Path, hook: int, am: int, ops: int) -> Path:
    path = tmp_path / "flowsight.toml"
    path.write_text(f"""
[alerting.route]
receiver = "ops"
group_wait = "0s"
group_interval = "1s"
repeat_interval = "1h"

[[alerting.route.routes]]
matchers = ["target=team"]
receiver = "team"

[[alerting.route.routes]]
matchers = ["target=am"]
receiver = "am"

[[alerting.receivers]]
name = "team"
kind = "webhook"
url = "http://hookuser:hunter2@127.0.0.1:{hook}/hook?token=s3cr3t-token"

[[alerting.receivers]]
name = "am"
kind = "alertmanager"
url = "http://amuser:am-pa55@127.0.0.1:{am}/?key=am-k3y"

[[alerting.receivers]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:{ops}/ops"
""")
    return path


def broken_alerts(c: Any) -> dict[str, dict[str, Any]]:
    return {
        a["labels"]["receiver"]: a
        for a in c.get("/api/v1/alerts").json()["alerts"]
        if a["labels"].get("alertname") == "ReceiverBroken"
    }


def test_receiver_credentials_never_reach_the_log_the_api_or_other_receivers(
    serve: Serve, store_url: str, tmp_path: Path, refusing: tuple[Refusing, Refusing], receiver: Recorder
) -> None:
    hook, am = refusing
    server = serve(
        "--config", str(config(tmp_path, hook.server_address[1], am.server_address[1], receiver.server_address[1]))
    )
    c = server.client()
    r = c.post(
        "/api/v1/alerts",
        json=[{"labels": {"alertname": "Probe", "target": "team"}}, {"labels": {"alertname": "Probe", "target": "am"}}],
    )
    assert r.status_code == 200, r.text

    broken = wait_for("both receivers marked broken", lambda: len(b := broken_alerts(c)) == 2 and b)
    told = wait_for(
        "ops told of both",
        lambda: (
            {
                a["labels"]["receiver"]
                for body in receiver.bodies
                for a in body["alerts"]
                if a["labels"].get("alertname") == "ReceiverBroken"
            }
            == {"team", "am"}
        ),
    )
    assert told
    # the secrets were really sent: the URL's user info as Basic auth, the query as written
    assert hook.seen[0][0] == "/hook?token=s3cr3t-token" and hook.seen[0][1].startswith("Basic ")
    assert am.seen[0][0] == "/api/v2/alerts?key=am-k3y" and am.seen[0][1].startswith("Basic ")

    team = broken["team"]["annotations"]["description"]
    assert team.startswith(
        f"webhook http://***@127.0.0.1:{hook.server_address[1]}/hook?token=***: HTTP 404: Cannot POST /hook?token=*** "
    ), team
    amd = broken["am"]["annotations"]["description"]
    assert amd.startswith(
        f"alertmanager http://***@127.0.0.1:{am.server_address[1]}/api/v2/alerts?key=***: "
        "HTTP 400: Cannot POST /api/v2/alerts?key=*** "
    ), amd

    server.stop()
    shown = {
        "the server's log": server.output(),
        "GET /api/v1/alerts": json.dumps(broken),
        "the other receiver": json.dumps(receiver.bodies),
        "the outbox and the notification log": repr(sql_rows(store_url, "SELECT * FROM outbox"))
        + repr(sql_rows(store_url, "SELECT * FROM notification_log")),
    }
    assert "failed for good" in shown["the server's log"] and "is broken" in shown["the server's log"]
    leaks = [(where, s) for where, text in shown.items() for s in SECRETS if s in text]
    assert leaks == []
