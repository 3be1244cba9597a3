"""Receivers against real endpoints on 127.0.0.1: an HTTP server that records
webhooks, a real program on stdin, the log."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest

from flowsight.alerting.manager import AlertManager, Notification
from flowsight.alerting.notifiers.command import CommandNotifier
from flowsight.alerting.notifiers.log import LogNotifier
from flowsight.alerting.notifiers.webhook import WebhookNotifier
from flowsight.errors import DeliveryError
from flowsight.model.alerts import Alert
from flowsight.model.alerts.routing import Route
from tests.helpers import Recorder


def note() -> Notification:
    am = AlertManager(Route("team", group_by=("workflow",), group_wait=0), clock=lambda: 1_700_000_000.0)
    am.send_alert(
        Alert(
            {"alertname": "RunFailed", "workflow": "etl", "run": "1"},
            {"summary": "run 1 of etl failed"},
            starts_at=1_699_999_990.0,
        )
    )
    am.send_alert(
        Alert(
            {"alertname": "RunFailed", "workflow": "etl", "run": "2"},
            {"summary": "run 2 of etl failed"},
            starts_at=1_699_999_995.0,
        )
    )
    return am.tick()[0]


def test_the_webhook_body_is_alertmanagers_version_4(receiver: Recorder) -> None:
    n = note()
    asyncio.run(
        WebhookNotifier(f"http://127.0.0.1:{receiver.server_port}/hook", external_url="http://flowsight:8640").send(n)
    )
    body = receiver.bodies[0]
    assert {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    } <= set(body)
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "team"
    assert body["groupLabels"] == {"workflow": "etl"}
    assert body["commonLabels"] == {"alertname": "RunFailed", "workflow": "etl", "severity": "warning"}
    first = body["alerts"][0]
    assert set(first) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert first["endsAt"] == "0001-01-01T00:00:00Z" and first["startsAt"].endswith("Z")
    assert receiver.headers_seen[0]["Idempotency-Key"] == n.idempotency_key == body["idempotencyKey"]


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (503, False), (429, False), (400, True), (404, True)])
def test_webhook_errors_are_permanent_only_for_4xx_other_than_429(
    receiver: Recorder, status: int, permanent: bool
) -> None:
    receiver.status = status
    with pytest.raises(DeliveryError) as info:
        asyncio.run(WebhookNotifier(f"http://127.0.0.1:{receiver.server_port}/").send(note()))
    assert info.value.permanent is permanent and f"HTTP {status}" in str(info.value)


def test_an_unreachable_webhook_is_a_temporary_failure() -> None:
    with pytest.raises(DeliveryError) as info:
        asyncio.run(WebhookNotifier("http://127.0.0.1:1/", timeout=2).send(note()))
    assert not info.value.permanent


@pytest.mark.usefixtures("any_loop")
def test_the_command_receiver_gets_the_payload_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    asyncio.run(CommandNotifier([sys.executable, "-c", script]).send(note()))
    assert json.loads(out.read_text())["alerts"][1]["labels"]["run"] == "2"


@pytest.mark.usefixtures("any_loop")
def test_a_command_that_exits_0_without_reading_the_payload_has_delivered(tmp_path: Path) -> None:
    out = tmp_path / "status"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ['FLOWSIGHT_STATUS'])"
    asyncio.run(CommandNotifier([sys.executable, "-c", script]).send(note()))
    assert out.read_text() == "firing"


@pytest.mark.usefixtures("any_loop")
@pytest.mark.parametrize(
    ("code", "permanent", "words"),
    [
        ("import sys; print('disk full'); sys.exit(3)", True, "exited with status 3: disk full"),
        ("import sys; sys.stdin.close(); sys.exit(1)", True, "exited with status 1"),
        ("import sys; print('smtp busy', file=sys.stderr); sys.exit(75)", False, "exited with status 75: smtp busy"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", False, "was killed by signal 9"),
        ("import sys; sys.stdin.read(); sys.exit(3)", True, "exited with status 3"),
    ],
)
def test_a_command_that_fails_says_its_exit_status_and_only_tempfail_is_retried(
    code: str, permanent: bool, words: str
) -> None:
    with pytest.raises(DeliveryError) as info:
        asyncio.run(CommandNotifier([sys.executable, "-c", code]).send(note()))
    assert info.value.permanent is permanent and words in str(info.value)


@pytest.mark.usefixtures("any_loop")
def test_a_command_that_cannot_run_is_a_permanent_failure() -> None:
    with pytest.raises(DeliveryError, match="cannot run") as info:
        asyncio.run(CommandNotifier(["/nonexistent/notify"]).send(note()))
    assert info.value.permanent


@pytest.mark.usefixtures("any_loop")
def test_a_command_past_its_timeout_is_killed_and_retried() -> None:
    with pytest.raises(DeliveryError, match="did not finish within 1 s") as info:
        asyncio.run(CommandNotifier([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1).send(note()))
    assert not info.value.permanent


def test_the_log_receiver_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowsight.alerts"):
        asyncio.run(LogNotifier().send(note()))
    assert "[FIRING]" in caplog.text and "2 alerts" in caplog.text and "RunFailed" in caplog.text
