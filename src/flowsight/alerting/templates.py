"""Titles and bodies of notifications, from Jinja2 templates.

A template sees what an Alertmanager template sees, under the names of
Alertmanager's webhook payload (:func:`~flowsight.alerting.payload.webhook_payload`):
``status``, ``receiver``, ``groupLabels``, ``commonLabels``,
``commonAnnotations``, ``externalURL``, ``alerts`` (each with ``status``,
``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``,
``fingerprint``), ``groupKey``, ``idempotencyKey``, ``flowsight`` — plus
``note``, the :class:`~flowsight.alerting.manager.Notification` itself.

Templates run in Jinja2's sandbox (a template from a config file cannot reach
Python internals), with ``StrictUndefined`` (a misspelt name is an error, not
an empty string; test optional keys with ``is defined`` or ``| default``) and
without HTML autoescaping (the output is plain text, Slack mrkdwn or a
subject line). ``trim_blocks`` and ``lstrip_blocks`` are on, so a
``{% ... %}`` line leaves no blank line behind.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from flowsight.alerting.manager import Notification
from flowsight.alerting.payload import webhook_payload
from flowsight.errors import ConfigError, DeliveryError

# Alertmanager's default title: "[FIRING:2] RunFailed nightly-etl" — the status,
# the number of firing alerts (only while firing), then the common alertname and
# the values of the other group labels, sorted by label name.
DEFAULT_TITLE = (
    "[{{ status | upper }}"
    "{% if status == 'firing' %}:{{ alerts | selectattr('status', 'eq', 'firing') | list | length }}{% endif %}]"
    "{% if commonLabels.alertname is defined %} {{ commonLabels.alertname }}{% endif %}"
    "{% for name, value in groupLabels | dictsort %}{% if name != 'alertname' %} {{ value }}{% endif %}{% endfor %}"
)

DEFAULT_BODY = """\
{% for a in alerts %}
{% if not loop.first %}

{% endif %}
[{{ a.status | upper }}] {{ a.labels.alertname | default(a.fingerprint) }}
{% if a.annotations.summary is defined %}
Summary: {{ a.annotations.summary }}
{% endif %}
{% if a.annotations.description is defined %}
Description: {{ a.annotations.description }}
{% endif %}
Labels:
{% for name, value in a.labels | dictsort %}
  - {{ name }} = {{ value }}
{% endfor %}
Started: {{ a.startsAt }}
{% if a.status == 'resolved' %}
Ended: {{ a.endsAt }}
{% endif %}
{% if a.generatorURL %}
Link: {{ a.generatorURL }}
{% endif %}
{% endfor %}
"""

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Template:
    """A compiled template and where it came from (named in every error)."""

    where: str
    source: str
    compiled: jinja2.Template


def compile_template(text: str, *, where: str) -> Template:
    """Compile ``text``; ``where`` says where it was written, for errors
    (e.g. ``"receiver 'mail' field 'subject'"``).

    Raises:
        ConfigError: ``text`` is not a valid template; the message names
            ``where``, the line and Jinja2's reason.
    """
    try:
        compiled = _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{where}: template syntax error on line {exc.lineno}: {exc.message}") from None
    return Template(where, text, compiled)


def render(template: Template, note: Notification, external_url: str = "") -> str:
    """``template`` rendered over the webhook payload of ``note`` (see the
    module docstring for the names it sees).

    Raises:
        DeliveryError: permanent — the template failed on this notification
            (an undefined name, a forbidden operation, an error inside it);
            the message names ``template.where`` and, when known, the line.
    """
    context: dict[str, Any] = {**webhook_payload(note, external_url), "note": note}
    try:
        return template.compiled.render(context)
    except Exception as exc:  # anything a template can raise: retrying the same render fails the same way
        line = _template_line(exc.__traceback__)
        at = f" on line {line}" if line is not None else ""
        raise DeliveryError(
            f"{template.where}: template failed{at}: {type(exc).__name__}: {exc}", permanent=True
        ) from exc


def _template_line(tb: types.TracebackType | None) -> int | None:
    # Jinja2 rewrites tracebacks so that template frames carry the template's
    # own line numbers under the file name "<template>"; the last one is where
    # it failed.
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
