"""The alertmanager receiver against a real Prometheus Alertmanager, started
from the test on a free 127.0.0.1 port (Debian package
'prometheus-alertmanager'; scripts/test installs it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowsight.alerting.manager import Notification
from flowsight.alerting.notifiers.alertmanager import FIRING_VALIDITY, AlertmanagerNotifier
from flowsight.alerting.payload import alert_json, rfc3339
from flowsight.errors import DeliveryError
from flowsight.model.alerts import Alert, AlertStatus
from tests.alerting.test_email import free_port
from tests.helpers import Recorder
from tests.alerting.test_templates import T0, make_alert, make_note

NAMES = ("alertmanager", "prometheus-alertmanager")
STARTUP_SECONDS = 20.0
CONFIG = """\
route:
  receiver: blackhole
receivers:
  - name: blackhole
"""


def alertmanager_binary() -> str:
    """The Alertmanager binary: missing fails under CI=true, else skips."""
    for name in NAMES:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
        if path:
            return path
    why = "Alertmanager is not installed (Debian package 'prometheus-alertmanager'; scripts/test installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def start(binary: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """One Alertmanager, clustering off, ready (``/-/ready``) or failed."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "alertmanager.yml").write_text(CONFIG)
    log = tmp_path / "alertmanager.log"
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return proc, url, log
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"alertmanager not ready on port {port}:\n{log.read_text()[-2000:]}")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A running Alertmanager's base URL (stopped with SIGTERM after the test)."""
    binary = alertmanager_binary()
    for attempt in range(3):  # the free port may be taken before it binds
        try:
            proc, url, log = start(binary, tmp_path / f"am{attempt}")
            break
        except RuntimeError as exc:
            error = exc
    else:
        pytest.fail(str(error))
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"alertmanager did not stop on SIGTERM:\n{log.read_text()[-2000:]}")


def active_alerts(url: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{url}/api/v2/alerts", timeout=5)
    assert resp.status_code == 200, resp.text
    alerts: list[dict[str, Any]] = resp.json()
    return alerts


def test_a_firing_group_becomes_active_alerts_and_resolving_it_ends_them(alertmanager: str) -> None:
    now = time.time()
    firing = make_note(
        make_alert("1", starts_at=now - 60, link="http://fs:8640/runs/1"),
        make_alert("2", starts_at=now - 30, description="exit 3"),
        at=now,
    )
    notifier = AlertmanagerNotifier(alertmanager + "/", external_url="http://fs:8640")
    asyncio.run(notifier.send(firing))

    got = sorted(active_alerts(alertmanager), key=lambda a: a["labels"]["run"])
    assert [a["labels"] for a in got] == [alert_json(a, "")["labels"] for a in firing.alerts]
    assert got[0]["labels"] == {"alertname": "RunFailed", "workflow": "nightly-etl", "run": "1", "severity": "warning"}
    assert [a["status"]["state"] for a in got] == ["active", "active"]
    assert got[0]["annotations"] == {"summary": "run 1 of nightly-etl failed"}
    assert got[1]["annotations"] == {"summary": "run 2 of nightly-etl failed", "description": "exit 3"}
    assert [a["generatorURL"] for a in got] == ["http://fs:8640/runs/1", "http://fs:8640"]
    assert got[0]["startsAt"][:19] == rfc3339(now - 60)[:19]

    resolved = make_note(
        *(make_alert(run, resolved=True, starts_at=now - 60, ends_at=now - 1) for run in "12"), at=now + 1
    )
    asyncio.run(notifier.send(resolved))
    assert active_alerts(alertmanager) == []  # Alertmanager lists only alerts that have not ended


def test_alertmanager_refusing_the_alerts_is_permanent(alertmanager: str) -> None:
    now = time.time()
    bad = Alert({"alertname": "RunFailed", "bad-label": "x"}, starts_at=now - 60)
    with pytest.raises(DeliveryError) as info:
        asyncio.run(AlertmanagerNotifier(alertmanager).send(make_note(bad, at=now)))
    assert info.value.permanent is True and "HTTP 400" in str(info.value) and "bad-label" in str(info.value)


def test_an_unreachable_alertmanager_is_temporary() -> None:
    with pytest.raises(DeliveryError) as info:
        asyncio.run(AlertmanagerNotifier(f"http://127.0.0.1:{free_port()}", timeout=2).send(make_note()))
    assert info.value.permanent is False and "/api/v2/alerts" in str(info.value)


@pytest.fixture
def recorder(receiver: Recorder) -> Recorder:
    return receiver


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (404, True), (429, False), (500, False), (503, False)])
def test_http_errors_are_permanent_only_for_4xx_other_than_429(
    recorder: Recorder, status: int, permanent: bool
) -> None:
    recorder.status = status
    with pytest.raises(DeliveryError) as info:
        asyncio.run(AlertmanagerNotifier(f"http://127.0.0.1:{recorder.server_port}").send(make_note()))
    assert info.value.permanent is permanent and f"HTTP {status}" in str(info.value)


def posted(alert: Alert, note: Notification | None = None, external_url: str = "") -> dict[str, Any]:
    (body,) = AlertmanagerNotifier("http://am:9093", external_url=external_url).alerts(note or make_note(alert))
    return body


LABELS = {"alertname": "RunFailed", "workflow": "nightly-etl"}


@pytest.mark.parametrize(
    ("alert", "ends_at"),
    [
        # firing without an end: valid long past any repeat_interval, counted from the notification (at T0)
        (Alert(LABELS, starts_at=T0 - 60), rfc3339(T0 + FIRING_VALIDITY)),
        # firing with an end still ahead: that end
        (Alert(LABELS, starts_at=T0 - 60, ends_at=T0 + 600), rfc3339(T0 + 600)),
        # resolved: its own end, in the past
        (Alert(LABELS, starts_at=T0 - 60, ends_at=T0 - 10, status=AlertStatus.RESOLVED), rfc3339(T0 - 10)),
        # resolved without an end: the notification's time
        (Alert(LABELS, starts_at=T0 - 60, status=AlertStatus.RESOLVED), rfc3339(T0)),
        # started after the notification was made: counted from the start, never ending before it
        (Alert(LABELS, starts_at=T0 + 60), rfc3339(T0 + 60 + FIRING_VALIDITY)),
    ],
)
def test_end_times_sent_to_alertmanager(alert: Alert, ends_at: str) -> None:
    assert posted(alert)["endsAt"] == ends_at


@pytest.mark.parametrize(
    ("alert", "external_url", "absent"),
    [
        (Alert({"alertname": "X"}), "", {"startsAt", "generatorURL"}),  # no start, no link: left to Alertmanager
        (Alert({"alertname": "X"}, starts_at=T0, link="http://fs/runs/1"), "", set()),
        (Alert({"alertname": "X"}, starts_at=T0), "http://fs", set()),
    ],
)
def test_unknown_start_and_link_are_left_out(alert: Alert, external_url: str, absent: set[str]) -> None:
    body = posted(alert, external_url=external_url)
    assert {"labels", "annotations", "startsAt", "endsAt", "generatorURL"} - set(body) == absent
