"""``[[detectors]]``: the fault detectors, each kind's fields checked at load,
and :func:`build_detector`, which makes the detector.

Every detector has ``name`` (unique), ``kind``, and its schedule:
``interval`` (default 30 s), ``timeout`` (default 10 s) and ``retries``
(failed checks in a row tolerated before a fault is declared; default 1).
The other fields are the keyword arguments of the kind's class (see
:mod:`flowsight.detectors`); paths are relative to the configuration file.
A kind that is not built in is looked up in the ``flowsight.detectors``
entry-point group, and its fields are handed over as written.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from flowsight.config.fields import (
    Converter,
    Invalid,
    Reader,
    Table,
    array,
    boolean,
    choice,
    duration,
    found,
    integer,
    nonempty_string,
    number,
    string_table,
    url,
)
from flowsight.detectors.base import Schedule
from flowsight.errors import ConfigError
from flowsight.model.faults import FaultKind

if TYPE_CHECKING:
    from flowsight.detectors.base import FaultDetector


@dataclass(frozen=True)
class DetectorConfig:
    """One detector as configured: ``options`` are the keyword arguments of
    its kind's class; ``line`` is where its table starts."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)
    line: int = 0


def _port(value: Any) -> int:
    port = integer(1)(value)
    if port > 65535:
        raise Invalid(f"expected a port from 1 to 65535, got {found(value)}")
    return port


def _pid(value: Any) -> int | str:
    if value == "self":
        return "self"
    try:
        return integer(1)(value)
    except Invalid:
        raise Invalid(f'expected a process id or "self", got {found(value)}') from None


def _status(value: Any) -> int:
    code = integer(100)(value)
    if code > 599:
        raise Invalid(f"expected an HTTP status from 100 to 599, got {found(value)}")
    return code


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def size(value: Any) -> int:
    """Bytes: an integer, or text such as ``"5 GiB"``, ``"500MB"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(digits):]
        try:
            amount = float(digits)
        except ValueError:
            amount = -1.0
        if amount >= 0 and unit in _UNITS:
            return int(amount * _UNITS[unit])
    raise Invalid(f'expected a size in bytes such as 5000000000 or "5 GiB", got {found(value)}')


def _percent(value: Any) -> float:
    p = number()(value)
    if not 0 <= p <= 100:
        raise Invalid(f"expected a percentage from 0 to 100, got {found(value)}")
    return p


@dataclass(frozen=True)
class Opt:
    conv: Converter[Any]
    required: bool = False
    path: bool = False  # relative to the configuration file
    secret: bool = False  # its value is never shown in a problem (a header or variable holding a token)


_SERVICE = Opt(nonempty_string)
FIELDS: dict[str, dict[str, Opt]] = {
    "http": {"url": Opt(url, required=True), "method": Opt(choice(("GET", "HEAD"))),
             "keyword": Opt(nonempty_string), "expect_status": Opt(array(_status, nonempty=True)),
             "headers": Opt(string_table, secret=True), "slow": Opt(duration(positive=True)), "service": _SERVICE},
    "tcp": {"host": Opt(nonempty_string, required=True), "port": Opt(_port, required=True), "service": _SERVICE},
    "command": {"argv": Opt(array(nonempty_string, nonempty=True), required=True),
                "fault": Opt(choice(k.value for k in FaultKind)), "target": Opt(nonempty_string),
                "cwd": Opt(nonempty_string, path=True), "env": Opt(string_table, secret=True)},
    "resource": {"resource": Opt(choice(("disk", "inodes", "memory", "swap", "fds", "cpu")), required=True),
                 "path": Opt(nonempty_string, path=True), "pid": Opt(_pid), "min_free_bytes": Opt(size),
                 "min_free_percent": Opt(_percent), "max_load_per_core": Opt(number(above=0)),
                 "max_used_percent": Opt(_percent)},
    "integrity": {"manifest": Opt(nonempty_string, path=True), "registered": Opt(boolean),
                  "paths": Opt(array(nonempty_string, nonempty=True), path=True)},
    "config": {"path": Opt(nonempty_string, required=True, path=True),
               "format": Opt(choice(("toml", "yaml", "json", "ini", "env"))),
               "required": Opt(array(nonempty_string)), "types": Opt(string_table),
               "env": Opt(array(nonempty_string))},
}
COMMON = ("name", "kind", "interval", "timeout", "retries")


def read_detectors(reader: Reader, top: Table, base_dir: FsPath) -> list[DetectorConfig]:
    """The valid ``[[detectors]]``, in file order; problems go to ``reader``."""
    out: list[DetectorConfig] = []
    names: dict[str, int] = {}
    for path, raw in top.tables("detectors"):
        if not isinstance(raw, dict):
            reader.error(path, f"expected a table, got {found(raw)}")
            continue
        before = len(reader.problems)
        kind = raw.get("kind")
        plugin = False
        if "kind" not in raw:
            reader.error((*path, "kind"), f"missing; this field is required (one of {', '.join(_kinds())})")
        elif not isinstance(kind, str) or (kind not in FIELDS and kind not in _plugin_kinds()):
            reader.error((*path, "kind"), f"unknown detector kind {kind!r}; expected one of {', '.join(_kinds())}")
            kind = None
        else:
            plugin = kind not in FIELDS
        fields = FIELDS.get(kind or "", {})
        known = (*COMMON, *fields) if kind and not plugin else tuple(raw)
        t = Table(reader, path, raw, known)
        name = t.unique_name(names, "detector")
        interval = t.get("interval", duration(positive=True))
        timeout = t.get("timeout", duration(positive=True))
        retries = t.get("retries", integer(0))
        if kind is None or name is None:
            continue
        options: dict[str, Any] = {}
        if plugin:
            options = {k: v for k, v in raw.items() if k not in COMMON}
        for key, opt in fields.items():
            value = t.get(key, opt.conv, required=opt.required, secret=opt.secret)
            if value is None:
                continue
            if opt.path:
                value = [str(base_dir / v) for v in value] if isinstance(value, list) else str(base_dir / value)
            options[key] = value
        if len(reader.problems) > before:
            continue
        default = Schedule()
        schedule = Schedule(interval=interval or default.interval, timeout=timeout or default.timeout,
                            retries=default.retries if retries is None else retries)
        dc = DetectorConfig(name, kind, options, schedule, reader.line(path))
        try:
            build_detector(dc)  # what only the class checks is reported now, not at the first check
        except ConfigError as exc:
            reader.error(path, str(exc).removeprefix(f"detector {name!r}: "))
            continue
        out.append(dc)
    return out


def build_detector(dc: DetectorConfig, store: Any = None) -> FaultDetector:
    """The detector ``dc`` describes (its class imported only now); a class
    that takes ``store`` (the integrity detector's registered outputs) gets
    ``store``.

    Raises:
        ConfigError: the class refused the options; the message names the detector.
    """
    from flowsight.detectors.registry import detector_class

    try:
        cls = detector_class(dc.kind)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"detector {dc.name!r}: {exc}") from None
    kwargs = dict(dc.options)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if "timeout" in params and "timeout" not in kwargs:
        kwargs["timeout"] = dc.schedule.timeout
    if "store" in params and store is not None:
        kwargs["store"] = store
    try:
        detector: FaultDetector = cls(name=dc.name, **kwargs)
    except (ConfigError, ValueError, TypeError) as exc:
        prefix = f"detector {dc.name!r}: "
        text = str(exc)
        raise ConfigError(text if text.startswith(prefix) else prefix + text) from None
    return detector


def _kinds() -> list[str]:
    return [*FIELDS, *sorted(k for k in _plugin_kinds() if k not in FIELDS)]


def _plugin_kinds() -> set[str]:
    try:
        from flowsight.detectors.registry import plugin_kinds
    except ImportError:  # pragma: no cover - while the registry is being written
        return set()
    return set(plugin_kinds())
