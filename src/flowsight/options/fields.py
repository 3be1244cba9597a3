"""Reading a parsed TOML document field by field, collecting every problem.

A :class:`Reader` walks the document; each :class:`Table` hands out its
fields once, converted by a small converter function (``string``,
``duration``, ``matchers``...), and reports the keys nobody asked for as
unknown, with a suggestion. A converter raises :class:`Invalid` with what
was expected and what was found; the reader turns that into a
:class:`Problem` at the field's line and carries on, so one run of
``flowsight check`` lists everything wrong in the file.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flowsight.options.locate import Path, format_path
from flowsight.errors import ConfigError
from flowsight.model.alerts import Matcher, parse_matcher
from flowsight.model.durations import parse_duration

T = TypeVar("T")
Converter = Callable[[Any], T]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file, and where."""

    file: str
    line: int
    field: str  # the dotted path (``alerting.receivers[1].url``); "" for a TOML syntax error
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        return f"{where} {self.field}: {self.message}" if self.field else f"{where} {self.message}"


@dataclass(frozen=True)
class Opt:
    """One field of a kind of receiver or detector, declared in its class's
    ``OPTIONS`` (field name -> :class:`Opt`): its converter, whether it is
    required, the keyword argument it becomes (default: its name), and whether
    its value is a secret (never shown in a problem). For a receiver only:
    ``template``, a Jinja2 template compiled at load. For a detector only:
    ``path``, a path (or a list of paths) relative to the configuration file."""

    conv: Converter[Any]
    required: bool = False
    keyword: str | None = None
    secret: bool = False
    template: bool = False
    path: bool = False


#: a kind's fields, as its class declares them (``OPTIONS``)
Options = Mapping[str, Opt]


def declared(cls: type, kind: str) -> Options:
    """The ``OPTIONS`` of ``cls``, the class registered for ``kind``, which
    also declares that ``KIND``.

    Raises:
        TypeError: it does not declare them (a registry entry or a class in error).
    """
    options = getattr(cls, "OPTIONS", None)
    if (
        getattr(cls, "KIND", None) != kind
        or not isinstance(options, Mapping)
        or not all(isinstance(o, Opt) for o in options.values())
    ):
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} is registered as kind {kind!r}: it must declare "
            f"KIND = {kind!r} and OPTIONS, a table of field name -> Opt"
        )
    return options


class Invalid(Exception):
    """A value a converter refuses. ``problems``: (sub-path, message) pairs,
    the sub-path relative to the value (``(2,)`` for its third element)."""

    def __init__(self, message: str = "", *, at: Path = (), problems: list[tuple[Path, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [(at, message)]


def found(value: Any) -> str:
    """How a TOML value is named in a message: ``integer 3``, ``string 'x'``."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"string {shown!r}"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return f"date/time {value.isoformat()}"
    return type(value).__name__


def kind_of(value: Any) -> str:
    """How a TOML value is named where its value must not be shown: ``a string``."""
    if isinstance(value, bool):
        return "a boolean"
    for types, name in (
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        ((dt.datetime, dt.date, dt.time), "a date/time"),
    ):
        if isinstance(value, types):
            return name
    return type(value).__name__


def hidden(conv: Converter[T]) -> Converter[T]:
    """``conv`` for a field whose value is a secret (a password, a webhook URL
    that is its own credential, a header holding a token): its problems say
    what was expected and what kind of value was found, never the value."""

    def conv_secret(value: Any) -> T:
        try:
            return conv(value)
        except Invalid as exc:
            raise Invalid(problems=[(at, _unshown(msg, _part(value, at))) for at, msg in exc.problems]) from None

    return conv_secret


def _part(value: Any, at: Path) -> Any:
    """The element of ``value`` at the sub-path ``at`` (a problem's place in it)."""
    for key in at:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return value
    return value


def _unshown(message: str, value: Any) -> str:
    # every converter's message ends with ", got <the value>"
    expected, sep, _ = message.rpartition(", got ")
    return f"{expected}, got {kind_of(value)} (a secret: not shown)" if sep else "invalid (a secret: not shown)"


def suggest(key: str, known: Iterable[str]) -> str:
    """``; did you mean 'receivers'?`` or ``; expected one of: a, b``."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return "; expected one of: " + ", ".join(known) if known else "; nothing is expected here"


# ---- the reader ------------------------------------------------------------------
class Reader:
    """Where problems are collected, with the lines of ``locate``."""

    def __init__(self, file: str, lines: Mapping[Path, int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor written in the file (a
        missing field is reported at its table's header); 1 if none is."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1

    def error(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.file, self.line(path), format_path(path), message))

    def convert(self, path: Path, value: Any, conv: Converter[T]) -> T | None:
        """``conv(value)``, or None after recording its problems."""
        try:
            return conv(value)
        except Invalid as exc:
            for sub, message in exc.problems:
                self.error((*path, *sub), message)
            return None

    def table(self, path: Path, value: Any, known: Iterable[str]) -> Table | None:
        """``value`` as a :class:`Table` with these ``known`` keys; None (and a
        problem) when it is not a table."""
        if not isinstance(value, dict):
            self.error(path, f"expected a table, got {found(value)}")
            return None
        return Table(self, path, value, known)


class Table:
    """One TOML table. Keys that are not ``known`` are reported at once as unknown."""

    def __init__(self, reader: Reader, path: Path, data: dict[str, Any], known: Iterable[str]) -> None:
        self.reader = reader
        self.path = path
        self.data = data
        self.known = tuple(known)
        for key in data:
            if key not in self.known:
                reader.error((*path, key), f"unknown field {key!r}{suggest(key, self.known)}")

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def at(self, key: str | int) -> Path:
        return (*self.path, key)

    def get(self, key: str, conv: Converter[T], *, required: bool = False, secret: bool = False) -> T | None:
        """The field converted; None when it is absent (a problem when ``required``)
        or invalid (a problem, which never shows the value when it is a ``secret``)."""
        if key not in self.data:
            if required:
                self.reader.error(self.at(key), "missing; this field is required")
            return None
        return self.reader.convert(self.at(key), self.data[key], hidden(conv) if secret else conv)

    def unique_name(self, names: dict[str, int], what: str, *, say_name: bool = True) -> str | None:
        """The table's required ``name``; a problem when one before it (in
        ``names``: name -> line, to which it is added) has it already.
        ``what`` names the kind ("receiver"); ``say_name``: the message repeats the name."""
        name = self.get("name", nonempty_string, required=True)
        if name is None:
            return None
        if name in names:
            shown = f" {name!r}" if say_name else ""
            self.reader.error(
                self.at("name"),
                f"duplicate {what} name{shown} (first defined on line {names[name]}); names must be unique",
            )
        else:
            names[name] = self.reader.line(self.path)
        return name

    def sub(self, key: str, known: Iterable[str]) -> Table | None:
        """A sub-table; None when absent or not a table (a problem)."""
        if key not in self.data:
            return None
        return self.reader.table(self.at(key), self.data[key], known)

    def tables(self, key: str) -> list[tuple[Path, Any]]:
        """The elements of an array of tables (``[[key]]``) with their paths;
        [] when absent or not an array (a problem)."""
        if key not in self.data:
            return []
        value = self.data[key]
        if not isinstance(value, list):
            self.reader.error(
                self.at(key), f"expected an array of tables ([[{format_path(self.at(key))}]]), got {found(value)}"
            )
            return []
        return [((*self.path, key, i), v) for i, v in enumerate(value)]


# ---- converters ---------------------------------------------------------------------
def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {found(value)}")
    return value


def nonempty_string(value: Any) -> str:
    if not string(value).strip():
        raise Invalid("expected a non-empty string, got ''")
    return str(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {found(value)}")
    return value


def integer(minimum: int | None = None) -> Converter[int]:
    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected a whole number, got {found(value)}")
        if minimum is not None and value < minimum:
            raise Invalid(f"expected a whole number of at least {minimum}, got {value}")
        return value

    return conv


def number(*, above: float | None = None) -> Converter[float]:
    def conv(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Invalid(f"expected a number, got {found(value)}")
        if above is not None and not value > above:
            raise Invalid(f"expected a number greater than {above:g}, got {value!r}")
        return float(value)

    return conv


DURATION_HINT = 'a duration such as "30s", "5m", "2h" or a number of seconds'


def duration(*, positive: bool = False) -> Converter[float]:
    """Seconds, from ``"30s"``/``"1h30m"`` or a number; finite (``inf`` and
    ``nan`` are numbers to TOML and to :func:`float`, never a duration),
    never negative, and more than zero when ``positive``."""

    def conv(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise Invalid(f"expected {DURATION_HINT}, got {found(value)}")
        try:
            seconds = parse_duration(value)
        except ConfigError as exc:
            if "negative" in str(exc):
                raise Invalid(f"expected a duration that is not negative, got {found(value)}") from None
            raise Invalid(f"expected {DURATION_HINT}, got {found(value)}") from None
        if not math.isfinite(seconds):
            raise Invalid(f"expected {DURATION_HINT}, got {found(value)}")
        if positive and seconds <= 0:
            raise Invalid(f"expected a duration greater than zero, got {found(value)}")
        return seconds

    return conv


def choice(options: Iterable[str]) -> Converter[str]:
    opts = tuple(options)

    def conv(value: Any) -> str:
        if not isinstance(value, str) or value not in opts:
            raise Invalid(f"expected one of {', '.join(repr(o) for o in opts)}, got {found(value)}")
        return value

    return conv


def array(element: Converter[T], *, nonempty: bool = False) -> Converter[list[T]]:
    """A list, each element converted; every bad element is reported."""

    def conv(value: Any) -> list[T]:
        if not isinstance(value, list):
            raise Invalid(f"expected an array, got {found(value)}")
        if nonempty and not value:
            raise Invalid("expected a non-empty array, got []")
        out: list[T] = []
        problems: list[tuple[Path, str]] = []
        for i, item in enumerate(value):
            try:
                out.append(element(item))
            except Invalid as exc:
                problems.extend(((i, *sub), msg) for sub, msg in exc.problems)
        if problems:
            raise Invalid(problems=problems)
        return out

    return conv


def string_table(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise Invalid(f"expected a table of strings, got {found(value)}")
    bad: list[tuple[Path, str]] = [
        ((k,), f"expected a string, got {found(v)}") for k, v in value.items() if not isinstance(v, str)
    ]
    if bad:
        raise Invalid(problems=bad)
    return dict(value)


def url(value: Any) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    text = string(value)
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise Invalid(f"expected an http:// or https:// URL with a host, got {found(value)}")
    return text


def matcher(value: Any) -> Matcher:
    text = string(value)
    try:
        return parse_matcher(text)
    except ConfigError as exc:
        raise Invalid(str(exc)) from None


matchers = array(matcher)
