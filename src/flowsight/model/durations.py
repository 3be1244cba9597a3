"""Durations people type: ``90s``, ``15m``, ``2h``, ``30d``, ``1h30m``, or plain
seconds; and times (:func:`parse_time`): epoch seconds, RFC 3339, or a
duration ago."""

from __future__ import annotations

import math
import re

from flowsight.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Seconds in ``text``.

    Raises:
        ConfigError: ``<what>: 'soon' is not a duration; write e.g. 90s, 15m, 2h, 30d``.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ConfigError(f"{what}: {text} must not be negative")
        return float(text)
    s = str(text).strip().lower().replace(" ", "")
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value < 0:
            raise ConfigError(f"{what}: {text!r} must not be negative")
        return value
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ConfigError(f"{what}: {text!r} is not a duration; write e.g. 90s, 15m, 2h, 30d")
    return total


def format_duration(seconds: float | None) -> str:
    """``4m 10s``, ``1h 02m``, ``850ms``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


TIME_FORMS = "a duration ago (2h, 30m, 7d), an RFC 3339 time (2024-05-01T12:00:00Z) or epoch seconds (1714564800)"


def parse_time(text: str, *, now: float, what: str | None = None) -> float:
    """Epoch seconds of a time people type: epoch seconds (``1714564800.5``),
    RFC 3339 / ISO 8601 text (``2024-05-01T12:00:00Z``, ``2024-05-01
    12:00:00+02:00``; without a zone: UTC, as in log lines), or a duration
    before ``now`` (``2h``, ``30m``, ``1h30m``, ``7d``). A plain number is a
    time, not a duration: ``3600`` is an hour after the epoch.

    Raises:
        ConfigError: ``[<what>: ]'soon' is not a time; write a duration ago ...``.
    """
    where = f"{what}: " if what else ""
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ConfigError(f"{where}{text!r} is not a finite number; write {TIME_FORMS}")
        return value
    if s[:4].isdigit() and s[4:5] == "-":
        # the reader of the times in log lines, so RFC 3339 is read one way; imported here, as the
        # SDK imports this module and needs no time reader
        from flowsight.model.runs.timestamps import parse_timestamp

        ts = parse_timestamp(s)
        if ts is None:
            raise ConfigError(f"{where}{text!r} is not a valid RFC 3339 time; write {TIME_FORMS}")
        return ts
    try:
        return now - parse_duration(s)
    except ConfigError:
        raise ConfigError(f"{where}{text!r} is not a time; write {TIME_FORMS}") from None


def duration_text(seconds: float) -> str:
    """``1h30m``, ``15m``, ``20s``, ``1.5s``: the shortest text :func:`parse_duration` reads back as ``seconds``."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    left, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            n, left = divmod(left, size)
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
