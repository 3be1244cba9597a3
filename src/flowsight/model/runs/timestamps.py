"""Times as log lines, JSON records and command-line arguments write them:
RFC 3339 / ISO 8601 text and epoch seconds (ms, us or ns by magnitude), read
without :mod:`datetime` on the hot path (a log parser reads one per line). No
I/O. :mod:`flowsight.logs.parse` reads the times of log lines with these;
:func:`flowsight.model.durations.parse_time` the ``--since``/``since=`` values.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from typing import Any

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

_day_cache: dict[tuple[int, int, int], int | None] = {}


def _days(y: int, mo: int, d: int) -> int | None:
    """Days from 1970-01-01 to the date, None for no such date (cached)."""
    key = (y, mo, d)
    days = _day_cache.get(key, -1)
    if days == -1:
        try:
            days = date(y, mo, d).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            days = None
        if len(_day_cache) > 4096:
            _day_cache.clear()
        _day_cache[key] = days
    return days


def epoch(
    y: int, mo: int, d: int, h: int, mi: int, s: int, frac: str | None = None, zone: str | None = None
) -> float | None:
    """Seconds since the epoch of a UTC wall time (``zone``: ``Z`` or
    ``+hh:mm``/``+hhmm``), None when it is no real time."""
    days = _days(y, mo, d)
    if days is None or h > 23 or mi > 59 or s > 60:
        return None
    ts = float(days * 86400 + h * 3600 + mi * 60 + s)
    if frac:
        ts += int(frac) / 10 ** len(frac)
    if zone and zone != "Z" and zone != "z":
        sign = -1 if zone[0] == "-" else 1
        zone = zone[1:].replace(":", "")
        ts -= sign * (int(zone[:2]) * 3600 + int(zone[2:4]) * 60)
    return ts


ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(?: ?(Z|z|[+-]\d\d:?\d\d)(?![\d:]))?"
)


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds of a time written as log lines and JSON records write
    it: RFC 3339 / ISO 8601 text (``2024-05-01T12:00:00.25Z``, ``2024-05-01
    12:00:00+02:00``, ``2024-05-01``; without a zone: UTC) or epoch seconds
    (ms, us or ns by magnitude); None when it is neither."""
    return time_value(text, 0.0)


def time_value(value: Any, now: float) -> float | None:
    """A JSON or logfmt time: epoch seconds (ms, us, ns by magnitude) or RFC 3339."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ts = float(value)
        if not math.isfinite(ts) or ts < 0:
            return None
        for _ in range(3):  # past the year 5138 in seconds: ms, then us, then ns
            if ts <= 1e11:
                return ts
            ts /= 1000
        return ts if ts <= 1e11 else None  # past the year 5138 in ns: no time
    if isinstance(value, str):
        if value.isascii() and value[:1].isdigit() and value.replace(".", "", 1).isdigit():
            return time_value(float(value), now)
        m = ISO.match(value)
        if m is not None and m.end() == len(value):
            y, mo, d, h, mi, s, frac, zone = m.groups()
            return epoch(int(y), int(mo), int(d), int(h), int(mi), int(s), frac, zone)
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    return None
