"""What a workflow is expected to do and when: :class:`Expectations`, and
reading each of its fields (a cron expression with ``cronsim``, a time zone
with ``zoneinfo``, a time of day, durations). No I/O.

The fields, as ``flowsight.toml`` (``[workflows.NAME]``), the API
(``PUT /api/v1/schedules/NAME``) and the SDK (``flowsight.expect``) give them:

``schedule``
    A cron expression of 5 fields (minute hour day-of-month month
    day-of-week, Debian cron's meaning, as ``cronsim`` reads it), or one of
    ``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily``
    ``@midnight`` ``@hourly``.
``every``
    Instead of ``schedule``: a run is expected ``every`` after the previous
    one started (a heartbeat, as Healthchecks' simple checks: a job that
    sleeps between runs drifts, and is not late for that).
``timezone``
    The IANA zone the schedule and the deadline are read in (default UTC).
``start_grace``
    How late a start may be before the slot is ``late`` (default: 5 minutes,
    or half the shortest interval between slots when that is shorter). It must
    be shorter than the shortest interval: a slot is ``late`` before it is
    ``missed``.
``max_runtime`` / ``min_runtime``
    A run running longer is ``overran``; one that completed quicker ``too_short``.
``deadline``
    A time of day (``"06:00"``) by which the slot's run must have completed.
``failures_before_alert``
    ``WorkflowFailing`` fires after this many failed runs in a row.
``steps``
    ``{step: max_runtime}``: a step running longer is ``overran`` too.

Every reader raises :class:`~flowsight.errors.ConfigError` with a message
that says what was expected and what was found; :func:`make_expectations`
collects every field's problem in :class:`ExpectationError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from flowsight.errors import ConfigError
from flowsight.model.durations import duration_text, format_duration, parse_duration

#: the names cron knows for common schedules (Debian cron's table); @reboot has no slots
NAMED = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DEFAULT_GRACE = 300.0
#: the shortest interval a schedule may have (every = "1s" would judge a slot a second)
MIN_INTERVAL = 1.0
#: the longest duration an expectation takes (a year and a day: a yearly job's)
LONGEST = 366 * 86400.0
FIELDS = (
    "schedule",
    "every",
    "timezone",
    "start_grace",
    "max_runtime",
    "min_runtime",
    "deadline",
    "failures_before_alert",
    "steps",
)
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


@dataclass(frozen=True)
class Expectations:
    """One workflow's expectations. Build with :func:`make_expectations` (or
    check with :func:`cross_check`): the constructor takes fields as read."""

    workflow: str
    schedule: str | None = None  #: a 5-field cron expression (a name such as @daily is expanded)
    every: float | None = None
    timezone: str = "UTC"
    start_grace: float | None = None  #: None: :data:`DEFAULT_GRACE`, or half the shortest interval
    max_runtime: float | None = None
    min_runtime: float | None = None
    deadline: time | None = None
    failures_before_alert: int | None = None
    steps: Mapping[str, float] = field(default_factory=dict)  #: step -> max_runtime

    @property
    def scheduled(self) -> bool:
        """Whether runs are expected at times (``schedule`` or ``every``)."""
        return self.schedule is not None or self.every is not None

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)

    @cached_property
    def grace(self) -> float:
        """``start_grace``, or its default."""
        if self.start_grace is not None:
            return self.start_grace
        gap = (
            self.every
            if self.every is not None
            else (shortest_interval(self.schedule, self.timezone) if self.schedule else None)
        )
        return DEFAULT_GRACE if gap is None else min(DEFAULT_GRACE, gap / 2)

    @cached_property
    def grace_text(self) -> str:
        """The grace as alerts say it (``5m 00s``)."""
        return format_duration(self.grace)

    def describe(self) -> str:
        """``0 2 * * * (Europe/Copenhagen)``, ``every 15m``, or ``not scheduled``."""
        return self._described

    @cached_property
    def _described(self) -> str:
        if self.schedule is not None:
            return f"{self.schedule} ({self.timezone})"
        if self.every is not None:
            return f"every {duration_text(self.every)}"
        return "not scheduled"

    def to_doc(self) -> dict[str, Any]:
        """The fields given, as ``flowsight.toml`` and the API write them."""
        doc: dict[str, Any] = {}
        if self.schedule is not None:
            doc["schedule"] = self.schedule
        if self.every is not None:
            doc["every"] = self.every
        if self.timezone != "UTC":
            doc["timezone"] = self.timezone
        for name in ("start_grace", "max_runtime", "min_runtime", "failures_before_alert"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        if self.deadline is not None:
            doc["deadline"] = self.deadline.isoformat(timespec="seconds" if self.deadline.second else "minutes")
        if self.steps:
            doc["steps"] = {name: {"max_runtime": limit} for name, limit in self.steps.items()}
        return doc


class ExpectationError(ConfigError):
    """Expectations with problems: ``problems`` holds (field, message) for
    each; the message says them all, one per line."""

    def __init__(self, workflow: str, problems: list[tuple[str, str]]) -> None:
        self.workflow = workflow
        self.problems = problems
        super().__init__("\n".join(f"workflow {workflow!r}: {f}: {m}" for f, m in problems))


# ---- one field each ---------------------------------------------------------------
def cron(value: Any) -> str:
    """A 5-field cron expression or a ``@name``, checked by ``cronsim``;
    returns the expression (names expanded, spaces normalised)."""
    if not isinstance(value, str):
        raise ConfigError(f'expected a cron expression such as "0 2 * * *" or "@daily", got {_found(value)}')
    text = " ".join(value.split())
    expr = NAMED.get(text.lower(), text)
    if text.lower() == "@reboot":
        raise ConfigError('"@reboot" has no times to expect a run at; give a schedule such as "0 2 * * *"')
    if text.startswith("@") and expr == text:
        raise ConfigError(f"unknown cron name {text!r}; one of {', '.join(sorted(NAMED))}")
    fields = expr.split()
    if len(fields) != 5:
        raise ConfigError(
            f"expected a cron expression of 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)} in {value!r}"
        )
    try:
        next(CronSim(expr, datetime(2000, 1, 1)))
    except CronSimError as exc:
        raise ConfigError(f"invalid cron expression {value!r}: {str(exc).lower()}") from None
    except StopIteration:
        raise ConfigError(f"cron expression {value!r} never matches a time") from None
    return expr


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"expected an IANA time zone such as 'Europe/Copenhagen', got {_found(name)}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise ConfigError(
            f"unknown time zone {name!r}; give an IANA name such as 'Europe/Copenhagen' or 'UTC'"
        ) from None


def timezone_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected an IANA time zone such as 'Europe/Copenhagen', got {_found(value)}")
    zone(value)
    return value


def time_of_day(value: Any) -> time:
    """``"06:00"`` or ``"06:00:30"`` (24-hour clock)."""
    m = _TIME.match(value) if isinstance(value, str) else None
    if m is None:
        raise ConfigError(f'expected a time of day such as "06:00" (24-hour, HH:MM), got {_found(value)}')
    return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def seconds(value: Any, *, positive: bool = True) -> float:
    """A duration (``"15m"``, ``90``) in seconds."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f'expected a duration such as "30s", "5m", "2h", got {_found(value)}')
    try:
        s = parse_duration(value)
    except ConfigError:
        raise ConfigError(f'expected a duration such as "30s", "5m", "2h", got {_found(value)}') from None
    if not math.isfinite(s) or (positive and s <= 0):
        raise ConfigError(f"expected a duration greater than zero, got {_found(value)}")
    if s > LONGEST:
        raise ConfigError(f"expected a duration of at most 366 days, got {_found(value)}")
    return s


def count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"expected a whole number of at least 1, got {_found(value)}")
    return value


def _found(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool)) else type(value).__name__


# ---- the whole ------------------------------------------------------------------
def shortest_interval(expr: str, timezone: str = "UTC", *, slots: int = 16) -> float:
    """The shortest time between two of the schedule's next ``slots`` slots
    (seconds, from 2000-01-03). A zone with daylight saving time moves a
    daily slot by an hour twice a year: callers that compare with it leave
    that hour's margin, or ask for a year of slots."""
    return _shortest(expr, timezone, slots)


@lru_cache(maxsize=4096)
def _shortest(expr: str, timezone: str, slots: int) -> float:
    it = CronSim(expr, datetime(2000, 1, 3, tzinfo=zone(timezone)))
    prev = next(it).timestamp()
    best = math.inf
    for _ in range(slots):
        try:
            t = next(it).timestamp()
        except StopIteration:
            break
        best, prev = min(best, t - prev), t
    return best


def cross_check(e: Expectations) -> list[tuple[str, str]]:
    """What the fields say together that none says alone: (field, message) each."""
    problems: list[tuple[str, str]] = []
    if e.schedule is not None and e.every is not None:
        problems.append(("every", "give either schedule (cron) or every, not both"))
    if not e.scheduled:
        for name in ("start_grace", "deadline"):
            if getattr(e, name) is not None:
                problems.append((name, f"{name} needs a schedule or every (when is a run expected?)"))
    if e.every is not None and e.every < MIN_INTERVAL:
        problems.append(("every", f"expected at least {MIN_INTERVAL:g}s, got {e.every:g}s"))
    if e.start_grace is not None and (e.schedule is not None) != (e.every is not None):
        gap = e.every if e.every is not None else None
        if e.schedule is not None:
            gap = shortest_interval(e.schedule, e.timezone)
            if e.start_grace >= gap - 3600:  # within a DST hour of it: look at a year of slots
                gap = shortest_interval(e.schedule, e.timezone, slots=400)
        if gap is not None and e.start_grace >= gap:
            problems.append(
                (
                    "start_grace",
                    f"{format_duration(e.start_grace)} is not shorter than the shortest interval between "
                    f"expected runs ({format_duration(gap)}): a run would be missed before it is late",
                )
            )
    if e.min_runtime is not None and e.max_runtime is not None and e.min_runtime >= e.max_runtime:
        problems.append(
            (
                "min_runtime",
                f"{format_duration(e.min_runtime)} is not less than max_runtime ({format_duration(e.max_runtime)})",
            )
        )
    return problems


#: field -> its reader, for a document (the API's, the SDK's)
READERS: dict[str, Any] = {
    "schedule": cron,
    "every": seconds,
    "timezone": timezone_name,
    "start_grace": lambda v: seconds(v, positive=False),
    "max_runtime": seconds,
    "min_runtime": seconds,
    "deadline": time_of_day,
    "failures_before_alert": count,
}


def make_expectations(workflow: str, doc: Mapping[str, Any]) -> Expectations:
    """Expectations from a document of the fields above (``steps`` is
    ``{step: {"max_runtime": ...}}`` or ``{step: duration}``).

    Raises:
        ExpectationError: every problem found, each with its field.
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(workflow, str) or not workflow:
        raise ExpectationError(str(workflow), [("workflow", "expected a workflow name")])
    if not isinstance(doc, Mapping):
        raise ExpectationError(workflow, [("", f"expected an object of fields, got {_found(doc)}")])
    given: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "steps":
            steps = _steps(value, problems) if value is not None else {}
            if steps:
                given["steps"] = steps
            continue
        reader = READERS.get(key)
        if reader is None:
            problems.append((str(key), f"unknown field; one of {', '.join(FIELDS)}"))
            continue
        if value is None:
            continue
        try:
            given[key] = reader(value)
        except ConfigError as exc:
            problems.append((key, str(exc)))
    if problems:
        raise ExpectationError(workflow, problems)
    e = Expectations(workflow, **given)
    problems = cross_check(e)
    if problems:
        raise ExpectationError(workflow, problems)
    return e


def _steps(value: Any, problems: list[tuple[str, str]]) -> dict[str, float]:
    if not isinstance(value, Mapping):
        problems.append(("steps", f"expected a table of steps ({{step = {{max_runtime = ...}}}}), got {_found(value)}"))
        return {}
    out: dict[str, float] = {}
    for name, limit in value.items():
        raw = limit.get("max_runtime") if isinstance(limit, Mapping) else limit
        if isinstance(limit, Mapping) and set(limit) - {"max_runtime"}:
            problems.append(
                (f"steps.{name}", f"unknown field(s) {sorted(set(limit) - {'max_runtime'})}; a step takes max_runtime")
            )
            continue
        try:
            out[str(name)] = seconds(raw)
        except ConfigError as exc:
            problems.append((f"steps.{name}.max_runtime", str(exc)))
    return out
