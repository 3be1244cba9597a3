"""Detector kinds: the one table of built-in kinds, and third-party plug-ins.

A ``[[detectors]]`` table names its ``kind``; :func:`detector_class` gives the
class for it. Built-in kinds are the lines of :data:`DETECTOR_CLASSES`, one
module each, imported only when asked for. Each built-in class declares,
beside its code, its ``KIND`` and its ``OPTIONS``: the fields of its table,
each a :class:`~flowsight.options.fields.Opt` (converter, required, a path
relative to the configuration file...). The configuration reads a detector's
fields with them (:func:`flowsight.config.detectors.read_detectors`,
``flowsight check``) and makes the detector from the same class
(:func:`flowsight.config.detectors.build_detector`, as
``Cls(name=..., **options)``). Adding a kind: its module, one line in
:data:`DETECTOR_CLASSES`, its tests.

Other kinds come from installed distributions, through the entry-point group
:data:`ENTRY_POINT_GROUP`: the entry point's name is the kind, its object a
class built the same way, whose instances follow
:class:`~flowsight.detectors.base.FaultDetector`; its fields are handed over
as written (the class checks them). In ``pyproject.toml``::

    [project.entry-points."flowsight.detectors"]
    ping = "flowsight_ping:PingDetector"

A plug-in cannot replace a built-in kind: the built-in wins.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["DETECTOR_CLASSES", "ENTRY_POINT_GROUP", "detector_class", "plugin_kinds"]

#: the built-in kinds: kind (as written in flowsight.toml) -> (module under ``flowsight.detectors``, its class)
DETECTOR_CLASSES: dict[str, tuple[str, str]] = {
    "http": ("http", "HttpDetector"),
    "tcp": ("tcp", "TcpDetector"),
    "command": ("command", "CommandDetector"),
    "resource": ("resource", "ResourceDetector"),
    "integrity": ("integrity", "IntegrityDetector"),
    "config": ("config", "ConfigDetector"),
}
ENTRY_POINT_GROUP = "flowsight.detectors"


def _plugins() -> dict[str, EntryPoint]:
    # imported only now: reading the configuration (which reads the table) needs it only for a plug-in
    from importlib.metadata import entry_points

    # read afresh each time: a distribution installed while running counts
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in DETECTOR_CLASSES}


def plugin_kinds() -> list[str]:
    """The kinds installed plug-ins add, sorted (those named like a built-in are left out)."""
    return sorted(_plugins())


def detector_class(kind: str) -> type[Any]:
    """The class of detectors of ``kind``, imported now.

    Raises:
        ValueError: no such kind (the message lists the known ones), or a
            plug-in that cannot be loaded (naming its entry point and why).
    """
    if kind in DETECTOR_CLASSES:
        module, cls_name = DETECTOR_CLASSES[kind]
        cls: object = getattr(importlib.import_module(f"flowsight.detectors.{module}"), cls_name)
    else:
        plugin = _plugins().get(kind)
        if plugin is None:
            known = ", ".join([*DETECTOR_CLASSES, *plugin_kinds()])
            raise ValueError(f"unknown detector kind {kind!r}; known kinds: {known}")
        try:
            cls = plugin.load()
        except Exception as exc:
            raise ValueError(
                f"detector kind {kind!r}: the plug-in's entry point {plugin.name} = {plugin.value} "
                f"(group {ENTRY_POINT_GROUP!r}) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        if not inspect.isclass(cls):
            raise ValueError(
                f"detector kind {kind!r}: the entry point {plugin.name} = {plugin.value} "
                f"must name a class, it names {cls!r}"
            )
    assert inspect.isclass(cls)
    return cls
