"""The ``absence`` log rule: an expected line did not come (ElastAlert's
flatline, Prometheus' ``absent``). See :mod:`flowsight.logs.alert_rules` for
what every rule shares.

``within``: fires when no matching line came for that long, since the last
one or since the rule started (so a restart waits a whole ``within`` before it
can fire). ``by`` (``HH:MM`` in ``timezone``): each day's deadline closes a
period that began at the deadline before; fires when no matching line came in
it. A period that began before the rule started (or, per key, before the key's
first line) is not judged: a restart never fires for a day it did not watch.
A deadline in a DST gap (02:30 on the night clocks go forward) falls an hour
later; in a repeated hour, at its first occurrence.

Judged by :meth:`AbsenceRule.tick`: the alert fires at the deadline, not
before; it carries no ``ends_at`` and resolves when a matching line comes. A
line that comes at or after a deadline that no tick has judged yet is late but
here: no alert is made for it only to be resolved at once. State is in memory.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from typing import Any

from flowsight.errors import ConfigError
from flowsight.model.alerts import Alert, AlertStatus
from flowsight.model.durations import format_duration
from flowsight.logs.analyzer import Analysis
from flowsight.logs.alert_rules import Key, LogAlertRule, format_time, time_of_day, zone
from flowsight.logs.entries import LogEntry


class _Watch:
    """What an absence rule knows of one key."""

    __slots__ = ("last", "due", "period_start", "seen", "firing")

    def __init__(self, last: float, due: float, period_start: float) -> None:
        self.last = last  # the last match, or when watching began
        self.due = due  # `by`: the next deadline to judge
        self.period_start = period_start  # `by`: the start of the period `due` closes
        self.seen = False  # `by`: a match since period_start
        self.firing: Alert | None = None


class AbsenceRule(LogAlertRule):
    """An expected line did not come: ``within`` seconds, or ``by`` a time of day."""

    kind = "absence"
    default_group_by = ()

    def __init__(
        self,
        name: str,
        *,
        within: float | None = None,
        by: str | dt.time | None = None,
        timezone: str = "UTC",
        **common: Any,
    ) -> None:
        super().__init__(name, **common)
        if (within is None) == (by is None):
            raise ConfigError(f"rule {name!r}: give within (a duration) or by (a time of day), one of them")
        if within is not None and not (math.isfinite(within) and within > 0):
            raise ConfigError(f"rule {name!r}: within must be a duration greater than zero, got {within!r}")
        try:
            self.by = by if isinstance(by, dt.time) or by is None else time_of_day(by)
            self.tz = zone(timezone)
        except ConfigError as exc:
            raise ConfigError(f"rule {name!r}: {exc}") from None
        self.within = within
        self.timezone = timezone
        self._watch: dict[Key, _Watch] = {}

    def start(self, now: float) -> None:
        if self._started is None:
            super().start(now)
            if not self.group_by:
                self._watch[()] = self._new_watch(now)

    def _new_watch(self, now: float) -> _Watch:
        if self.by is None:
            return _Watch(now, math.inf, now)
        first = self.deadline_after(now, strict=False)  # its period began before now: not judged
        return _Watch(now, self.deadline_after(first), first)

    def deadline_after(self, t: float, *, strict: bool = True) -> float:
        """The first deadline after ``t`` (at or after it unless ``strict``)."""
        assert self.by is not None
        day = dt.datetime.fromtimestamp(t, self.tz).date()
        while True:
            d = dt.datetime.combine(day, self.by, tzinfo=self.tz).timestamp()
            if d > t or (d == t and not strict):
                return d
            day += dt.timedelta(days=1)

    def _advance(self, key: Key, w: _Watch, now: float, *, fire: bool = True) -> list[Alert]:
        """Judge what fell due by ``now`` (``fire=False``: only move to the next period)."""
        if self.within is not None:
            due = w.last + self.within
            if fire and w.firing is None and now >= due and not self._cooling(key, now):
                w.firing = self._absence_alert(key, now, due, w.last)
                self._made(key, now)
                return [w.firing]
            return []
        out = []
        while w.due <= now:
            if fire and not w.seen and w.firing is None and not self._cooling(key, now):
                w.firing = self._absence_alert(key, now, w.due, w.period_start)
                self._made(key, now)
                out.append(w.firing)
            w.period_start, w.due, w.seen = w.due, self.deadline_after(w.due), False
        return out

    def _matched(self, entry: LogEntry, analysis: Analysis | None, now: float) -> list[Alert]:
        key = self.key(entry)
        w = self._watch.get(key)
        if w is None:
            if len(self._watch) >= self.max_keys:
                return []  # a bound on keys: further ones are not watched
            w = self._watch[key] = self._new_watch(now)
        out = self._advance(key, w, now, fire=False)
        w.last = now
        w.seen = now >= w.period_start
        if w.firing is not None:
            out.append(
                replace(
                    w.firing,
                    status=AlertStatus.RESOLVED,
                    ends_at=now,
                    annotations={**w.firing.annotations, "resolution": f"a matching line came at {format_time(now)}"},
                )
            )
            w.firing = None
        return out

    def tick(self, now: float) -> list[Alert]:
        out = [a for key, w in self._watch.items() for a in self._advance(key, w, now)]
        return out + super().tick(now)

    def create_alert(self, entry: LogEntry, now: float) -> Alert:
        key = self.key(entry)
        w = self._watch.get(key)
        return self._absence_alert(key, now, now, w.last if w is not None else now)

    def _absence_alert(self, key: Key, now: float, due: float, since: float) -> Alert:
        if self.within is not None:
            summary = f"{self._scope(key)}: no {self._what()} for {format_duration(self.within)}"
            expected = f"at least one every {format_duration(self.within)}"
        else:
            assert self.by is not None
            summary = f"{self._scope(key)}: no {self._what()} by {self.by:%H:%M} {self.timezone}"
            expected = f"one every day by {self.by:%H:%M} {self.timezone}"
        return self._alert(
            key,
            now,
            due,
            summary,
            f"rule {self.name!r} expects {expected}; none since {format_time(since, self.tz)}",
            ends=False,
        )
