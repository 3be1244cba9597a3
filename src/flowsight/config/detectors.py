"""``[[detectors]]``: the fault detectors, each kind's fields checked at load,
and :func:`build_detector`, which makes the detector.

Every detector has ``name`` (unique), ``kind``, and its schedule:
``interval`` (default 30 s), ``timeout`` (default 10 s) and ``retries``
(failed checks in a row tolerated before a fault is declared; default 1).
The other fields are those the kind's class declares (its ``OPTIONS``, see
:mod:`flowsight.detectors.registry`, whose table is the one table of
built-in kinds), which become its keyword arguments; paths are relative to
the configuration file. A kind that is not built in is looked up in the
``flowsight.detectors`` entry-point group, and its fields are handed over as
written.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from flowsight.options.fields import Options, Reader, Table, declared, duration, found, integer
from flowsight.detectors.base import Schedule
from flowsight.detectors.registry import DETECTOR_CLASSES, detector_class, plugin_kinds
from flowsight.errors import ConfigError

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
        elif not isinstance(kind, str) or (kind not in DETECTOR_CLASSES and kind not in plugin_kinds()):
            reader.error((*path, "kind"), f"unknown detector kind {kind!r}; expected one of {', '.join(_kinds())}")
            kind = None
        else:
            plugin = kind not in DETECTOR_CLASSES
        # a built-in kind's fields are what its class declares; a plug-in's are handed over as written
        fields: Options = declared(detector_class(kind), kind) if kind and not plugin else {}
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
            options[opt.keyword or key] = value
        if len(reader.problems) > before:
            continue
        default = Schedule()
        schedule = Schedule(
            interval=interval or default.interval,
            timeout=timeout or default.timeout,
            retries=default.retries if retries is None else retries,
        )
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
    return [*DETECTOR_CLASSES, *plugin_kinds()]
