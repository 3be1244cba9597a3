"""``[[alerting.receivers]]``: each kind's fields, checked and converted at
load, and :func:`build_notifier`, which makes the notifier from them.

A :class:`ReceiverConfig`'s ``options`` are exactly the keyword arguments of
its kind's notifier class (durations in seconds, ``from`` as ``sender``,
``password_file`` read into ``password``, a log level as an ``int``), so
building one is ``cls(**options)``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, cast

from flowsight.config.fields import (
    Converter,
    Invalid,
    Reader,
    Table,
    array,
    choice,
    duration,
    found,
    nonempty_string,
    string,
    string_table,
    url,
)
from flowsight.config.locate import Path
from flowsight.errors import ConfigError

if TYPE_CHECKING:
    from flowsight.alerting.notifiers import Notifier


@dataclass(frozen=True)
class ReceiverConfig:
    """One receiver as configured: ``options`` are already checked and are the
    keyword arguments of the kind's notifier class; ``line`` is where its
    table starts in the file (0 for a built-in one)."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    line: int = 0


# kind -> (module under flowsight.alerting.notifiers, class)
NOTIFIER_CLASSES = {
    "alertmanager": ("alertmanager", "AlertmanagerNotifier"),
    "command": ("command", "CommandNotifier"),
    "email": ("email", "EmailNotifier"),
    "log": ("log", "LogNotifier"),
    "slack": ("slack", "SlackNotifier"),
    "webhook": ("webhook", "WebhookNotifier"),
}
KINDS = tuple(NOTIFIER_CLASSES)
SECURITY = ("starttls", "tls", "none")
LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def notifier_class(kind: str) -> type:
    module, name = NOTIFIER_CLASSES[kind]
    return cast(type, getattr(importlib.import_module(f"flowsight.alerting.notifiers.{module}"), name))


def build_notifier(rc: ReceiverConfig, external_url: str = "") -> Notifier:
    """The notifier ``rc`` describes (its class imported only now).

    Raises:
        ConfigError: the class refused the options; the message names the receiver.
    """
    cls = notifier_class(rc.kind)
    kwargs = dict(rc.options)
    if "external_url" in inspect.signature(cls).parameters:
        kwargs["external_url"] = external_url
    try:
        return cast("Notifier", cls(**kwargs))
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"receiver {rc.name!r}: {exc}") from None


# ---- field converters only receivers use ------------------------------------------
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
        raise Invalid(f"expected an e-mail address such as 'ops@example.com' or 'Ops <ops@example.com>', "
                      f"got {found(value)}")
    return text


def log_level(value: Any) -> int:
    return LOG_LEVELS[choice(LOG_LEVELS)(value)]


@dataclass(frozen=True)
class Opt:
    """One field of a kind: its converter, whether it is required, the keyword
    it becomes, whether it is a template (compiled at load), and whether its
    value is a secret (never shown in a problem)."""

    conv: Converter[Any]
    required: bool = False
    keyword: str | None = None
    template: bool = False
    secret: bool = False


_TIMEOUT = Opt(duration(positive=True))
_TEMPLATE = Opt(string, template=True)
# a receiver's URL may hold its credentials (user info, a token in the query;
# a Slack webhook's path is one), a header a token: secrets, like a password
_URL = Opt(url, required=True, secret=True)
FIELDS: dict[str, dict[str, Opt]] = {
    "webhook": {"url": _URL, "headers": Opt(string_table, secret=True), "timeout": _TIMEOUT},
    "slack": {"url": _URL, "channel": Opt(nonempty_string), "username": Opt(nonempty_string),
              "title": _TEMPLATE, "text": _TEMPLATE, "timeout": _TIMEOUT},
    "email": {"smarthost": Opt(smarthost, required=True), "from": Opt(address, required=True, keyword="sender"),
              "to": Opt(array(address, nonempty=True), required=True), "security": Opt(choice(SECURITY)),
              "username": Opt(nonempty_string), "password": Opt(string, secret=True),
              "password_file": Opt(nonempty_string),
              "subject": _TEMPLATE, "body": _TEMPLATE, "ca_file": Opt(nonempty_string), "timeout": _TIMEOUT},
    "alertmanager": {"url": _URL, "timeout": _TIMEOUT},
    "command": {"argv": Opt(array(nonempty_string, nonempty=True), required=True), "timeout": _TIMEOUT},
    "log": {"level": Opt(log_level)},
}


def _template_compiler() -> Callable[..., object] | None:
    try:
        from flowsight.alerting.templates import compile_template
    except ImportError:  # pragma: no cover - only while the templates module is missing
        return None
    return compile_template


# ---- reading ---------------------------------------------------------------------
def read_receivers(reader: Reader, alerting: Table, base_dir: FsPath) -> tuple[list[ReceiverConfig], set[str]]:
    """The valid receivers, and the names of all receivers written (valid or
    not, so a route naming a broken receiver is not reported twice)."""
    out: list[ReceiverConfig] = []
    names: dict[str, int] = {}
    for path, raw in alerting.tables("receivers"):
        rc = _read_one(reader, path, raw, base_dir, names)
        if rc is not None:
            out.append(rc)
    return out, set(names)


def _read_one(reader: Reader, path: Path, raw: Any, base_dir: FsPath, names: dict[str, int]) -> ReceiverConfig | None:
    if not isinstance(raw, dict):
        reader.error(path, f"expected a table, got {found(raw)}")
        return None
    before = len(reader.problems)
    kind = reader.convert((*path, "kind"), raw["kind"], choice(KINDS)) if "kind" in raw else None
    if "kind" not in raw:
        reader.error((*path, "kind"), f"missing; this field is required (one of {', '.join(KINDS)})")
    fields = FIELDS.get(kind or "", {})
    # with an unknown kind the other fields cannot be judged: only name is read
    known = ("name", "kind", *fields) if kind else tuple(raw)
    t = Table(reader, path, raw, known)

    name = t.unique_name(names, "receiver")
    if kind is None:
        return None

    options: dict[str, Any] = {}
    compile_template = _template_compiler()
    for key, opt in fields.items():
        value = t.get(key, opt.conv, required=opt.required, secret=opt.secret)
        if value is None:
            continue
        if opt.template and compile_template is not None:
            where = f"receiver {name!r} field {key!r}"
            try:
                compile_template(value, where=where)
            except ConfigError as exc:
                reader.error(t.at(key), str(exc).removeprefix(where + ": "))
                continue
        options[opt.keyword or key] = value
    if kind == "email":
        _email(reader, t, options, base_dir)
    if len(reader.problems) > before or name is None:
        return None
    return ReceiverConfig(name, kind, options, reader.line(path))


def _email(reader: Reader, t: Table, options: dict[str, Any], base_dir: FsPath) -> None:
    """What the e-mail fields need of each other, and the files they name."""
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
