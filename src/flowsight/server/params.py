"""Query parameters of the read API: each checked, with an error (400) that
names the parameter and says what was wrong."""

from __future__ import annotations

import math

from starlette.requests import Request

from flowsight.errors import FlowsightError
from flowsight.model.durations import parse_time


def float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FlowsightError(f"query parameter {name!r}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise FlowsightError(f"query parameter {name!r}: {raw!r} is not a finite number")
    return value


def time_param(request: Request, name: str, now: float) -> float | None:
    """A time: epoch seconds, RFC 3339 text, or a duration before ``now``
    (``2h``), as the command line's ``--since`` reads it; None when absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    return parse_time(raw, now=now, what=f"query parameter {name!r}")  # its ConfigError is a 400


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FlowsightError(f"query parameter {name!r}: {raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise FlowsightError(f"query parameter {name!r}: {value} is outside {low}..{high}")
    return value


def text_param(request: Request, name: str) -> str | None:
    """A text query parameter; one with a NUL is refused (PostgreSQL cannot
    compare with it, and no stored name holds one)."""
    raw = request.query_params.get(name)
    if raw is not None and "\x00" in raw:
        raise FlowsightError(f"query parameter {name!r}: contains a NUL character (%00), which no name holds")
    return raw
