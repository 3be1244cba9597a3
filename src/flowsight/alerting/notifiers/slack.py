"""Slack (and Slack-compatible: Mattermost, Rocket.Chat) incoming webhooks.

The message is Alertmanager's Slack message: ``text`` (the title, which is
also what notifications and clients without attachments show) and one
attachment coloured by status — ``danger`` (red) while firing, ``good``
(green) once resolved, as Alertmanager's default — with the title, linked to
``external_url``, and the body from the templates.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import msgspec

from flowsight.alerting.manager import Notification
from flowsight.alerting.notifiers.http import URL, post_body
from flowsight.alerting.templates import DEFAULT_BODY, DEFAULT_TITLE, compile_template, render
from flowsight.options.fields import Options, Opt, duration, nonempty_string, string

COLORS = {"firing": "danger", "resolved": "good"}


class SlackNotifier:
    """POSTs to a Slack incoming-webhook ``url``.

    ``title`` and ``text`` are Jinja2 template sources (see
    :mod:`flowsight.alerting.templates`); ``None`` takes the defaults.
    ``channel`` and ``username`` override the webhook's own, where the
    workspace allows it.

    Raises:
        ConfigError: ``title`` or ``text`` is not a valid template.
    """

    KIND: ClassVar[str] = "slack"
    OPTIONS: ClassVar[Options] = {
        "url": URL,
        "channel": Opt(nonempty_string),
        "username": Opt(nonempty_string),
        "title": Opt(string, template=True),
        "text": Opt(string, template=True),
        "timeout": Opt(duration(positive=True)),
    }

    def __init__(
        self,
        url: str,
        *,
        channel: str | None = None,
        username: str | None = None,
        title: str | None = None,
        text: str | None = None,
        timeout: float = 10.0,
        external_url: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.channel = channel
        self.username = username
        self.title = compile_template(DEFAULT_TITLE if title is None else title, where="slack field 'title'")
        self.text = compile_template(DEFAULT_BODY if text is None else text, where="slack field 'text'")
        self.timeout = timeout
        self.external_url = external_url
        self.transport = transport

    def message(self, note: Notification) -> dict[str, Any]:
        """The JSON body for ``note``.

        Raises:
            DeliveryError: permanent — a template failed on it.
        """
        title = render(self.title, note, self.external_url).strip()
        attachment: dict[str, Any] = {
            "color": COLORS.get(note.status, "warning"),
            "title": title,
            "text": render(self.text, note, self.external_url),
            "fallback": title,
            "mrkdwn_in": ["text"],
        }
        if self.external_url:
            attachment["title_link"] = self.external_url
        body: dict[str, Any] = {"text": title, "attachments": [attachment]}
        if self.channel:
            body["channel"] = self.channel
        if self.username:
            body["username"] = self.username
        return body

    async def send(self, note: Notification) -> None:
        """Deliver ``note``: a 2xx answer is success.

        Raises:
            DeliveryError: temporary on network errors, 429, 3xx and 5xx;
                permanent on other 4xx (a revoked webhook, an archived
                channel) and on a template that fails.
        """
        body = msgspec.json.encode(self.message(note))
        # a Slack webhook's path is its credential
        await post_body(
            self.url,
            body,
            idempotency_key=note.idempotency_key,
            kind="slack",
            secret_path=True,
            timeout=self.timeout,
            transport=self.transport,
        )
