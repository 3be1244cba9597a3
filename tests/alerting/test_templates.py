"""Titles and bodies from Jinja2 templates: the defaults read like
Alertmanager's, custom templates see the payload, mistakes are named."""

from __future__ import annotations

import pytest

from flowsight.alerting.manager import Notification
from flowsight.alerting.templates import DEFAULT_BODY, DEFAULT_TITLE, compile_template, render
from flowsight.errors import ConfigError, DeliveryError
from flowsight.model.alerts import Alert, AlertStatus

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def make_alert(
    run: str,
    *,
    resolved: bool = False,
    alertname: str = "RunFailed",
    workflow: str = "nightly-etl",
    summary: str | None = "",
    description: str | None = None,
    link: str | None = None,
    starts_at: float = T0 - 60,
    ends_at: float = T0 - 10,
) -> Alert:
    """An alert about ``run`` of ``workflow``; ``summary=""`` means the default
    summary, ``None`` none at all."""
    annotations = {}
    if summary is not None:
        annotations["summary"] = summary or f"run {run} of {workflow} failed"
    if description is not None:
        annotations["description"] = description
    return Alert(
        {"alertname": alertname, "workflow": workflow, "run": run},
        annotations,
        starts_at=starts_at,
        ends_at=ends_at if resolved else None,
        status=AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
        link=link,
    )


def make_note(
    *alerts: Alert,
    receiver: str = "team",
    at: float = T0,
    group_labels: tuple[tuple[str, str], ...] = (("workflow", "nightly-etl"),),
) -> Notification:
    """A group notification as the manager makes it: firing while any alert fires."""
    if not alerts:
        alerts = (make_alert("1"), make_alert("2"))
    status = "firing" if any(a.status is AlertStatus.FIRING for a in alerts) else "resolved"
    key = "{}:{" + ",".join(f'{k}="{v}"' for k, v in group_labels) + "}"
    return Notification(receiver, key, status, alerts, "group", "root", at, group_labels)


TITLE = compile_template(DEFAULT_TITLE, where="test title")
BODY = compile_template(DEFAULT_BODY, where="test body")


@pytest.mark.parametrize(
    ("note", "title"),
    [
        (make_note(), "[FIRING:2] RunFailed nightly-etl"),
        (make_note(make_alert("1"), make_alert("2", resolved=True)), "[FIRING:1] RunFailed nightly-etl"),
        (make_note(make_alert("1", resolved=True), make_alert("2", resolved=True)), "[RESOLVED] RunFailed nightly-etl"),
        # different alertnames: no common one, only the group's labels
        (make_note(make_alert("1"), make_alert("2", alertname="RunStalled")), "[FIRING:2] nightly-etl"),
        # grouped by alertname as well: it is said once, the other group labels in label-name order
        (
            make_note(
                make_alert("1"), group_labels=(("alertname", "RunFailed"), ("workflow", "nightly-etl"), ("env", "prod"))
            ),
            "[FIRING:1] RunFailed prod nightly-etl",
        ),
        (make_note(make_alert("1"), group_labels=()), "[FIRING:1] RunFailed"),
    ],
)
def test_the_default_title_reads_like_alertmanagers(note: Notification, title: str) -> None:
    assert render(TITLE, note) == title


def test_the_default_body_lists_every_alert_with_its_annotations_labels_start_and_link() -> None:
    note = make_note(
        make_alert("1", description="exit code 3 in step load", link="http://fs:8640/runs/1"),
        make_alert("2", summary=None),
    )
    body = render(BODY, note, external_url="http://fs:8640")
    first, second = body.split("\n\n")
    assert first.splitlines() == [
        "[FIRING] RunFailed",
        "Summary: run 1 of nightly-etl failed",
        "Description: exit code 3 in step load",
        "Labels:",
        "  - alertname = RunFailed",
        "  - run = 1",
        "  - severity = warning",
        "  - workflow = nightly-etl",
        "Started: 2023-11-14T22:12:20Z",
        "Link: http://fs:8640/runs/1",
    ]
    # no summary, no description: no such lines; the link falls back to the external URL
    assert "Summary" not in second and "Description" not in second
    assert second.splitlines()[-1] == "Link: http://fs:8640"


def test_the_default_body_of_a_resolved_alert_says_when_it_ended() -> None:
    body = render(BODY, make_note(make_alert("1", resolved=True)))
    assert body.startswith("[RESOLVED] RunFailed\n")
    assert "Started: 2023-11-14T22:12:20Z\nEnded: 2023-11-14T22:13:10Z\n" in body
    assert "Link:" not in body  # neither the alert nor the receiver has one


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ receiver }}/{{ status }}/{{ alerts | length }}", "team/firing/2"),
        ("{{ groupLabels.workflow }}: {{ commonLabels.alertname }}", "nightly-etl: RunFailed"),
        ("{{ commonAnnotations.summary | default('(various)') }}", "(various)"),
        ("{% for a in alerts %}{{ a.labels.run }}{% endfor %}", "12"),
        ("{{ externalURL }}", "http://fs:8640"),
        ("{{ note.reason }} {{ note.idempotency_key == idempotencyKey }}", "group True"),
        ("<b>{{ alerts[0].annotations.summary }}</b>", "<b>run 1 of nightly-etl failed</b>"),  # no HTML escaping
        ("{% if status == 'firing' %}\nfire\n{% endif %}\n", "fire\n"),  # block lines leave no blank line
    ],
)
def test_a_custom_template_sees_the_payload_and_the_notification(source: str, expected: str) -> None:
    assert render(compile_template(source, where="custom"), make_note(), "http://fs:8640") == expected


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        ("{{ status", 1, "unexpected end of template"),
        ("ok\n{% if status %}\nno end", 3, "Unexpected end of template"),
        ("one\ntwo\n{{ status | nosuchfilter }}", 3, "No filter named 'nosuchfilter'"),
        ("{% for a in alerts %}\n{% endif %}", 2, "endif"),
    ],
)
def test_a_syntax_error_is_a_config_error_naming_where_and_the_line(source: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_template(source, where="receiver 'mail' field 'subject'")
    message = str(info.value)
    assert message.startswith(f"receiver 'mail' field 'subject': template syntax error on line {line}: ")
    assert words.lower() in message.lower()


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{{ nope }}", "'nope' is undefined"),
        ("line one\n{{ commonLabels.team }}", "on line 2: UndefinedError"),
        ("{{ alerts[0].annotations.runbook }}", "has no attribute 'runbook'"),
        ("{{ note.__class__ }}", "SecurityError"),  # the sandbox
        ("{{ 1 // 0 }}", "ZeroDivisionError"),
    ],
)
def test_a_template_failing_at_render_is_a_permanent_delivery_error_naming_it(source: str, words: str) -> None:
    template = compile_template(source, where="receiver 'chat' field 'text'")
    with pytest.raises(DeliveryError) as info:
        render(template, make_note())
    assert info.value.permanent is True
    assert str(info.value).startswith("receiver 'chat' field 'text': template failed")
    assert words in str(info.value)
