"""The Slack receiver against a real HTTP server on 127.0.0.1 that records
what a Slack incoming webhook would get."""

from __future__ import annotations

import asyncio

import pytest

from flowsight.alerting.notifiers.slack import SlackNotifier
from flowsight.errors import ConfigError, DeliveryError
from tests.helpers import Recorder
from tests.alerting.test_templates import make_alert, make_note


@pytest.fixture
def slack(receiver: Recorder) -> Recorder:
    return receiver


def url(srv: Recorder) -> str:
    return f"http://127.0.0.1:{srv.server_port}/services/T000/B000/XXXX"


def test_a_firing_group_is_a_red_attachment_with_the_default_title_and_body(slack: Recorder) -> None:
    note = make_note()
    asyncio.run(
        SlackNotifier(url(slack), channel="#ops", username="flowsight", external_url="http://fs:8640").send(note)
    )
    body = slack.bodies[0]
    assert body["text"] == "[FIRING:2] RunFailed nightly-etl"
    assert body["channel"] == "#ops" and body["username"] == "flowsight"
    (attachment,) = body["attachments"]
    assert attachment["color"] == "danger"
    assert attachment["title"] == attachment["fallback"] == "[FIRING:2] RunFailed nightly-etl"
    assert attachment["title_link"] == "http://fs:8640"
    assert "Summary: run 1 of nightly-etl failed" in attachment["text"]
    assert "Summary: run 2 of nightly-etl failed" in attachment["text"]
    assert slack.headers_seen[0]["Idempotency-Key"] == note.idempotency_key


def test_a_resolved_group_is_green(slack: Recorder) -> None:
    note = make_note(make_alert("1", resolved=True))
    asyncio.run(SlackNotifier(url(slack)).send(note))
    body = slack.bodies[0]
    assert body["text"] == "[RESOLVED] RunFailed nightly-etl"
    assert body["attachments"][0]["color"] == "good"
    assert "channel" not in body and "username" not in body and "title_link" not in body["attachments"][0]


def test_custom_templates_make_the_title_and_text(slack: Recorder) -> None:
    notifier = SlackNotifier(
        url(slack),
        title="{{ status }} on {{ groupLabels.workflow }}",
        text="{% for a in alerts %}*{{ a.labels.run }}* {% endfor %}",
    )
    asyncio.run(notifier.send(make_note()))
    body = slack.bodies[0]
    assert body["text"] == body["attachments"][0]["title"] == "firing on nightly-etl"
    assert body["attachments"][0]["text"] == "*1* *2* "


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (400, True),
        (403, True),
        (404, True),
        (410, True),
        (429, False),
        (500, False),
        (503, False),
    ],
)
def test_slack_errors_are_permanent_only_for_4xx_other_than_429(slack: Recorder, status: int, permanent: bool) -> None:
    slack.status = status
    with pytest.raises(DeliveryError) as info:
        asyncio.run(SlackNotifier(url(slack)).send(make_note()))
    assert info.value.permanent is permanent and f"HTTP {status}" in str(info.value)
    assert "XXXX" not in str(info.value)  # the webhook's secret path is not in errors


def test_an_unreachable_slack_is_a_temporary_failure() -> None:
    with pytest.raises(DeliveryError) as info:
        asyncio.run(SlackNotifier("http://127.0.0.1:1/hook", timeout=2).send(make_note()))
    assert not info.value.permanent


def test_a_bad_template_is_refused_when_the_receiver_is_made() -> None:
    with pytest.raises(ConfigError, match=r"^slack field 'text': template syntax error on line 2"):
        SlackNotifier("http://127.0.0.1:1/hook", text="ok\n{% if %}")


def test_a_template_failing_on_a_notification_is_permanent_and_sends_nothing(slack: Recorder) -> None:
    with pytest.raises(DeliveryError) as info:
        asyncio.run(SlackNotifier(url(slack), title="{{ groupLabels.team }}").send(make_note()))
    assert info.value.permanent and "slack field 'title'" in str(info.value)
    assert slack.bodies == []
