"""The e-mail receiver against a real SMTP server (aiosmtpd) on 127.0.0.1:
plain, STARTTLS with AUTH, TLS from the first byte — certificates from a
throwaway CA (trustme) that the receiver trusts through ``ca_file``."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from flowsight.alerting.notifiers.email import EmailNotifier
from flowsight.errors import ConfigError, DeliveryError
from tests.alerting.test_templates import make_alert, make_note

USER, PASSWORD = "flowsight", "s3cret"


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps what it gets; ``reply`` answers DATA instead."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, login)
    reply: str = "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if not self.reply.startswith("250"):
            return self.reply
        assert isinstance(envelope.content, bytes)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), msg))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((mechanism, auth_data.login.decode()))
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # unhandled: aiosmtpd answers 535 itself


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Certs:
    ca_file: str
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return Certs(str(path), ctx)


Start = Callable[..., tuple[Mailbox, int]]


@pytest.fixture
def smtp_server() -> Iterator[Start]:
    """``start(**smtp_kwargs)`` runs an SMTP server on a free port; it returns
    the mailbox and the port. Stopped after the test."""
    controllers: list[Controller] = []

    def start(**kwargs: Any) -> tuple[Mailbox, int]:
        box = Mailbox()
        port = free_port()
        controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate, **kwargs)
        controller.start()
        controllers.append(controller)
        return box, port

    yield start
    for controller in controllers:
        controller.stop()


def only_message(box: Mailbox) -> tuple[str, list[str], EmailMessage]:
    assert len(box.received) == 1, box.received
    return box.received[0]


def test_a_plain_smtp_server_gets_the_templated_message_with_the_payload(smtp_server: Start) -> None:
    box, port = smtp_server()
    note = make_note()
    notifier = EmailNotifier(
        f"127.0.0.1:{port}",
        sender="Flowsight <flowsight@example.com>",
        to=["ops@example.com", "oncall@example.com"],
        security="none",
        external_url="http://fs:8640",
    )
    asyncio.run(notifier.send(note))
    mail_from, rcpt_tos, msg = only_message(box)
    assert mail_from == "flowsight@example.com"
    assert rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert msg["Subject"] == "[FIRING:2] RunFailed nightly-etl"
    assert msg["To"] == "ops@example.com, oncall@example.com"
    assert msg["X-Flowsight-Idempotency-Key"] == note.idempotency_key
    assert msg["Message-ID"] == f"<{note.idempotency_key}@example.com>"
    text = msg.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert "Summary: run 1 of nightly-etl failed" in content and "Link: http://fs:8640" in content
    (attachment,) = msg.iter_attachments()
    assert attachment.get_content_type() == "application/json"
    assert attachment.get_filename() == "notification.json"
    payload = json.loads(attachment.get_content())
    assert payload["status"] == "firing" and payload["idempotencyKey"] == note.idempotency_key


def test_custom_subject_and_body_templates(smtp_server: Start) -> None:
    box, port = smtp_server()
    notifier = EmailNotifier(
        f"127.0.0.1:{port}",
        sender="flowsight@example.com",
        to=["ops@example.com"],
        security="none",
        subject="{{ status | upper }}:\n{{ groupLabels.workflow }}",
        body="{{ alerts | length }} alert(s) for {{ receiver }}",
    )
    asyncio.run(notifier.send(make_note(make_alert("1", resolved=True))))
    _, _, msg = only_message(box)
    assert msg["Subject"] == "RESOLVED: nightly-etl"  # a line break in a subject is folded away
    body = msg.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "1 alert(s) for team"


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_starttls_with_login(smtp_server: Start, certs: Certs, mechanism: str) -> None:
    others = [m for m in ("LOGIN", "PLAIN") if m != mechanism]
    box, port = smtp_server(
        tls_context=certs.server,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=others,
    )
    note = make_note()
    asyncio.run(
        EmailNotifier(
            f"127.0.0.1:{port}",
            sender="flowsight@example.com",
            to=["ops@example.com"],
            username=USER,
            password=PASSWORD,
            ca_file=certs.ca_file,
        ).send(note)
    )
    assert box.logins == [(mechanism, USER)]
    _, rcpt_tos, msg = only_message(box)
    assert rcpt_tos == ["ops@example.com"] and msg["X-Flowsight-Idempotency-Key"] == note.idempotency_key


def test_tls_from_the_first_byte(smtp_server: Start, certs: Certs) -> None:
    box, port = smtp_server(ssl_context=certs.server, auth_require_tls=False)
    asyncio.run(
        EmailNotifier(
            f"127.0.0.1:{port}",
            sender="flowsight@example.com",
            to=["ops@example.com"],
            security="tls",
            username=USER,
            password=PASSWORD,
            ca_file=certs.ca_file,
        ).send(make_note())
    )
    _, _, msg = only_message(box)
    assert msg["Subject"] == "[FIRING:2] RunFailed nightly-etl"


def test_a_wrong_password_is_permanent(smtp_server: Start, certs: Certs) -> None:
    box, port = smtp_server(tls_context=certs.server, auth_required=True)
    notifier = EmailNotifier(
        f"127.0.0.1:{port}",
        sender="flowsight@example.com",
        to=["ops@example.com"],
        username=USER,
        password="wrong",
        ca_file=certs.ca_file,
    )
    with pytest.raises(DeliveryError) as info:
        asyncio.run(notifier.send(make_note()))
    assert info.value.permanent is True and "535" in str(info.value)
    assert box.received == []


def test_a_certificate_the_receiver_does_not_trust_is_permanent(smtp_server: Start, certs: Certs) -> None:
    _, port = smtp_server(tls_context=certs.server)
    # no ca_file: the system's CAs do not know the test CA
    notifier = EmailNotifier(f"127.0.0.1:{port}", sender="flowsight@example.com", to=["ops@example.com"])
    with pytest.raises(DeliveryError) as info:
        asyncio.run(notifier.send(make_note()))
    assert info.value.permanent is True and "ca_file" in str(info.value)


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        ("451 4.3.0 try again later", False),
        ("452 4.3.1 insufficient storage", False),
        ("554 5.7.1 message rejected", True),
        ("552 5.3.4 message too big", True),
    ],
)
def test_smtp_replies_are_permanent_only_when_5xx(smtp_server: Start, reply: str, permanent: bool) -> None:
    box, port = smtp_server()
    box.reply = reply
    notifier = EmailNotifier(
        f"127.0.0.1:{port}", sender="flowsight@example.com", to=["ops@example.com"], security="none"
    )
    with pytest.raises(DeliveryError) as info:
        asyncio.run(notifier.send(make_note()))
    assert info.value.permanent is permanent and reply.split()[0] in str(info.value)


def test_nothing_listening_is_temporary() -> None:
    notifier = EmailNotifier(
        f"127.0.0.1:{free_port()}", sender="flowsight@example.com", to=["ops@example.com"], timeout=2
    )
    with pytest.raises(DeliveryError) as info:
        asyncio.run(notifier.send(make_note()))
    assert info.value.permanent is False and "ConnectionRefusedError" in str(info.value)


def test_a_server_that_never_answers_is_a_temporary_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never says hello
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        notifier = EmailNotifier(
            f"127.0.0.1:{silent.getsockname()[1]}",
            sender="flowsight@example.com",
            to=["ops@example.com"],
            security="none",
            timeout=0.3,
        )
        with pytest.raises(DeliveryError) as info:
            asyncio.run(notifier.send(make_note()))
    assert info.value.permanent is False and "timed out" in str(info.value)


GOOD: dict[str, Any] = {"sender": "flowsight@example.com", "to": ["ops@example.com"]}


@pytest.mark.parametrize(
    ("smarthost", "overrides", "field_name"),
    [
        ("smtp.example.com", {}, "smarthost"),
        ("smtp.example.com:", {}, "smarthost"),
        (":587", {}, "smarthost"),
        ("smtp.example.com:smtp", {}, "smarthost"),
        ("smtp.example.com:70000", {}, "smarthost"),
        ("smtp.example.com:587", {"security": "ssl"}, "security"),
        ("smtp.example.com:587", {"to": []}, "to"),
        ("smtp.example.com:587", {"to": ["nobody"]}, "to"),
        ("smtp.example.com:587", {"sender": "flowsight"}, "sender"),
        ("smtp.example.com:587", {"username": "me"}, "password"),
        ("smtp.example.com:587", {"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ("smtp.example.com:587", {"subject": "{{ status"}, "subject"),
        ("smtp.example.com:587", {"body": "{% for %}"}, "body"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(smarthost: str, overrides: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^email field '{field_name}': "):
        EmailNotifier(smarthost, **{**GOOD, **overrides})


@pytest.mark.parametrize(
    ("smarthost", "host", "port"),
    [
        ("smtp.example.com:587", "smtp.example.com", 587),
        ("[::1]:25", "::1", 25),
        ("127.0.0.1:465", "127.0.0.1", 465),
    ],
)
def test_the_smarthost_is_host_and_port(smarthost: str, host: str, port: int) -> None:
    notifier = EmailNotifier(smarthost, **GOOD)
    assert (notifier.host, notifier.port) == (host, port)
