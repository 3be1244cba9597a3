"""E-mail through an SMTP smarthost, with the standard library's ``smtplib``
run in a worker thread.

The message: the subject and a ``text/plain`` body from the templates, the
webhook payload (JSON) attached as ``notification.json``, an
``X-Flowsight-Idempotency-Key`` header, and a ``Message-ID`` made from that
key — a retried delivery carries the same Message-ID, so mail clients that
deduplicate on it show the message once.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path as FsPath
from typing import Any, ClassVar

import msgspec

from flowsight.alerting.manager import Notification
from flowsight.alerting.payload import webhook_payload
from flowsight.alerting.templates import DEFAULT_BODY, DEFAULT_TITLE, compile_template, render
from flowsight.options.fields import (
    Invalid,
    Options,
    Opt,
    Reader,
    Table,
    array,
    choice,
    duration,
    found,
    nonempty_string,
    string,
)
from flowsight.errors import ConfigError, DeliveryError

SECURITY = ("starttls", "tls", "none")


# ---- the fields' converters -------------------------------------------------------
def smarthost(value: Any) -> str:
    """``host:port`` (``[::1]:25`` for an IPv6 address)."""
    text = string(value)
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f'expected "host:port" such as "smtp.example.com:587", got {found(value)}')
    return text


def address(value: Any) -> str:
    text = string(value)
    if "@" not in parseaddr(text)[1]:
        raise Invalid(
            f"expected an e-mail address such as 'ops@example.com' or 'Ops <ops@example.com>', got {found(value)}"
        )
    return text


class EmailNotifier:
    """Sends each notification as one e-mail to ``to``.

    ``smarthost`` is ``host:port`` (``[::1]:25`` for an IPv6 address).
    ``security``: ``"starttls"`` (plain connection upgraded with STARTTLS,
    usually port 587), ``"tls"`` (TLS from the first byte, usually 465) or
    ``"none"``. With ``username`` it logs in (AUTH), which needs ``password``.
    ``ca_file`` is a PEM bundle to trust instead of the system's.
    ``subject`` and ``body`` are Jinja2 template sources (see
    :mod:`flowsight.alerting.templates`); ``None`` takes the defaults.

    Raises:
        ConfigError: naming the field — a smarthost without a port, an unknown
            ``security``, no recipients, a sender that is not an address, a
            ``username`` without ``password``, an unreadable ``ca_file``, a
            template that does not compile.
    """

    KIND: ClassVar[str] = "email"
    OPTIONS: ClassVar[Options] = {
        "smarthost": Opt(smarthost, required=True),
        "from": Opt(address, required=True, keyword="sender"),
        "to": Opt(array(address, nonempty=True), required=True),
        "security": Opt(choice(SECURITY)),
        "username": Opt(nonempty_string),
        "password": Opt(string, secret=True),
        "password_file": Opt(nonempty_string),
        "subject": Opt(string, template=True),
        "body": Opt(string, template=True),
        "ca_file": Opt(nonempty_string),
        "timeout": Opt(duration(positive=True)),
    }

    @staticmethod
    def check_options(reader: Reader, t: Table, options: dict[str, Any], base_dir: FsPath) -> None:
        """At load: what the fields need of each other, and the files they
        name (``password_file`` read into ``password``; ``ca_file`` made
        absolute), relative to ``base_dir``."""
        if "password" in t and "password_file" in t:
            reader.error(t.at("password_file"), "give password or password_file, not both")
        file = options.pop("password_file", None)
        if file is not None and "password" not in t:
            p = base_dir / FsPath(file).expanduser()
            try:
                options["password"] = p.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reader.error(t.at("password_file"), f"cannot read {str(p)!r}: {getattr(exc, 'strerror', None) or exc}")
        if "username" in t and "password" not in t and "password_file" not in t:
            reader.error(t.at("username"), "a username needs a password: give password or password_file")
        ca = options.get("ca_file")
        if ca is not None:
            p = base_dir / FsPath(ca).expanduser()
            if not p.is_file():
                reader.error(t.at("ca_file"), f"no such file {str(p)!r} (a PEM bundle of certificates to trust)")
            options["ca_file"] = str(p)

    def __init__(
        self,
        smarthost: str,
        *,
        sender: str,
        to: list[str],
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        subject: str | None = None,
        body: str | None = None,
        ca_file: str | None = None,
        timeout: float = 10.0,
        external_url: str = "",
    ) -> None:
        self.host, self.port = _host_port(smarthost)
        if security not in SECURITY:
            raise ConfigError(f"email field 'security': {security!r} must be one of {', '.join(SECURITY)}")
        if not to or not all(isinstance(r, str) and "@" in parseaddr(r)[1] for r in to):
            raise ConfigError(f"email field 'to': give one or more addresses, got {to!r}")
        if "@" not in parseaddr(sender)[1]:
            raise ConfigError(
                f"email field 'sender': {sender!r} is not an address (write e.g. "
                "'flowsight@example.com' or 'Flowsight <flowsight@example.com>')"
            )
        if username is not None and password is None:
            raise ConfigError("email field 'password': needed with 'username'")
        self.security = security
        self.sender = sender
        self.to = list(to)
        self.username = username
        self.password = password
        self.subject = compile_template(DEFAULT_TITLE if subject is None else subject, where="email field 'subject'")
        self.body = compile_template(DEFAULT_BODY if body is None else body, where="email field 'body'")
        self.tls = _tls_context(ca_file) if security != "none" else None
        self.timeout = timeout
        self.external_url = external_url

    def message(self, note: Notification) -> EmailMessage:
        """The e-mail for ``note``.

        Raises:
            DeliveryError: permanent — a template failed on it.
        """
        msg = EmailMessage()
        # a header cannot hold a line break: a multi-line subject is folded to one line
        msg["Subject"] = " ".join(render(self.subject, note, self.external_url).split())
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(note.at, localtime=False)
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "flowsight.invalid"
        msg["Message-ID"] = f"<{note.idempotency_key}@{domain}>"
        msg["X-Flowsight-Idempotency-Key"] = note.idempotency_key
        msg.set_content(render(self.body, note, self.external_url))
        msg.add_attachment(
            msgspec.json.encode(webhook_payload(note, self.external_url)),
            maintype="application",
            subtype="json",
            filename="notification.json",
        )
        return msg

    async def send(self, note: Notification) -> None:
        """Deliver ``note`` to every recipient.

        Raises:
            DeliveryError: permanent on a 5xx reply, a failed login, a server
                without STARTTLS or AUTH, a certificate that does not verify,
                some recipients refused for good, a template that fails;
                temporary on a 4xx reply, a refused or timed-out connection,
                a dropped connection.
        """
        msg = self.message(note)
        await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        where = f"email via {self.host}:{self.port}"
        try:
            refused = self._deliver(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(where, exc.recipients) from exc
        except smtplib.SMTPResponseException as exc:
            # a failed login too: 535 is permanent, 454 ("temporary
            # authentication failure") is retried like any 4xx
            reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise DeliveryError(
                f"{where}: {type(exc).__name__}: {exc.smtp_code} {reply}", permanent=exc.smtp_code >= 500
            ) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise DeliveryError(f"{where}: server disconnected: {exc}") from exc
        except smtplib.SMTPException as exc:
            # no STARTTLS, no AUTH, no common AUTH mechanism: the server will
            # not change its mind on a retry
            raise DeliveryError(f"{where}: {exc} (check 'security' and 'username')", permanent=True) from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"{where}: certificate not trusted: {exc.verify_message} (check 'ca_file')", permanent=True
            ) from exc
        except OSError as exc:  # refused, timed out, unreachable, TLS handshake cut
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if refused:
            raise _refused(where, refused)

    def _deliver(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.tls)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=self.tls)
                smtp.ehlo()
            if self.username is not None:
                smtp.login(self.username, self.password or "")
            return smtp.send_message(msg, from_addr=parseaddr(self.sender)[1], to_addrs=self.to)


def _refused(where: str, recipients: dict[str, tuple[int, bytes]]) -> DeliveryError:
    """Recipients refused: permanent only when every refusal is a 5xx."""
    detail = "; ".join(
        f"{addr}: {code} {reply.decode(errors='replace')}" for addr, (code, reply) in sorted(recipients.items())
    )
    return DeliveryError(
        f"{where}: recipients refused: {detail}", permanent=all(code >= 500 for code, _ in recipients.values())
    )


def _host_port(smarthost: str) -> tuple[str, int]:
    host, sep, port = smarthost.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"email field 'smarthost': {smarthost!r} must be host:port, e.g. smtp.example.com:587")
    return host, int(port)


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"email field 'ca_file': cannot load {ca_file!r}: {exc}") from None
