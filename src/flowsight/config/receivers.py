"""``[[alerting.receivers]]``: each receiver's fields, checked and converted
at load, and :func:`build_notifier`, which makes the notifier from them.

A kind's fields are what its notifier class declares (``OPTIONS``, see
:mod:`flowsight.alerting.notifiers`, whose :data:`KINDS` is the one table of
receiver kinds): the same class serves the check and the construction. A
:class:`ReceiverConfig`'s ``options`` are exactly the keyword arguments of
that class (durations in seconds, ``from`` as ``sender``, ``password_file``
read into ``password``, a log level as an ``int``), so building one is
``cls(**options)``.

The receivers' package is imported only when a receiver is read or made:
its modules import this package's field helpers (an import cycle otherwise).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, cast

from flowsight.options.fields import Options, Reader, Table, choice, declared, found
from flowsight.options.locate import Path
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


def kinds() -> tuple[str, ...]:
    """The receiver kinds, in the order of their table."""
    from flowsight.alerting.notifiers import KINDS

    return tuple(KINDS)


def notifier_class(kind: str) -> type:
    """The class of receivers of ``kind`` (the one the fields are read with).

    Raises:
        KeyError: no such kind.
    """
    from flowsight.alerting.notifiers import notifier_class

    return notifier_class(kind)


def field_of(kind: str, keyword: str) -> str:
    """The field of ``kind`` that becomes the keyword argument ``keyword``
    (``from`` for ``sender``); ``keyword`` when none does."""
    fields = declared(notifier_class(kind), kind)
    return next((key for key, opt in fields.items() if opt.keyword == keyword), keyword)


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
    known_kinds = kinds()
    kind = reader.convert((*path, "kind"), raw["kind"], choice(known_kinds)) if "kind" in raw else None
    if "kind" not in raw:
        reader.error((*path, "kind"), f"missing; this field is required (one of {', '.join(known_kinds)})")
    cls: type | None = None
    fields: Options = {}
    if kind is not None:
        cls = notifier_class(kind)
        fields = declared(cls, kind)
    # with an unknown kind the other fields cannot be judged: only name is read
    known = ("name", "kind", *fields) if kind else tuple(raw)
    t = Table(reader, path, raw, known)

    name = t.unique_name(names, "receiver")
    from flowsight.alerting.notifiers import EXPORT_PREFIX  # lazily, as notifier_class (see the docstring)

    if name is not None and name.lower().startswith(EXPORT_PREFIX):  # in any case: SQLite's LIKE ignores it
        reader.error(
            t.at("name"), f"a receiver's name may not begin with {EXPORT_PREFIX!r}: the exporters' ([export]) names do"
        )
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
    check_options = getattr(cls, "check_options", None)
    if check_options is not None:
        check_options(reader, t, options, base_dir)
    if len(reader.problems) > before or name is None:
        return None
    return ReceiverConfig(name, kind, options, reader.line(path))
