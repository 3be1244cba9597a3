"""When runs are expected: the slots of a cron schedule (``cronsim`` in the
workflow's zone, so a daylight-saving night loses no slot and doubles none,
as Debian cron does), a deadline's instant after a slot, and the tolerance
for a run that starts a little early. No I/O.

A slot is an instant, in epoch seconds. ``every`` schedules have no grid:
each slot follows the previous one's start (see :func:`~flowsight.model.schedules.judge.judge`).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from flowsight.model.schedules import zone

#: a start this long before its slot (at most a tenth of the interval) still counts for it: clocks differ
EARLY = 60.0
_KEEP = 32  # slots kept by a grid: those a judgement walks back over
_WALK = 64  # further ahead than this many slots, a grid starts again from the instant asked about
NEVER = float("inf")


class CronGrid:
    """The slots of ``expr`` in the zone ``timezone``. The ``cronsim``
    iterator is kept, so walking forward (as time passes) costs one of its
    steps per new slot; the last few slots are kept for looking back."""

    __slots__ = ("expr", "zone", "_it", "_known", "_from")

    def __init__(self, expr: str, timezone: str = "UTC") -> None:
        self.expr = expr
        self.zone: ZoneInfo = zone(timezone)
        self._it: CronSim | None = None
        self._known: list[float] = []  # consecutive slots
        self._from = NEVER  # no slot lies between this and the first known one

    def after(self, t: float) -> float:
        """The first slot strictly after ``t`` (:data:`NEVER` if none within 50 years)."""
        known = self._known
        if known and self._from <= t < known[0]:
            return known[0]
        if known and known[0] <= t:
            if t < known[-1]:
                return known[bisect_right(known, t)]
            it = self._it
            for _ in range(_WALK):
                if it is None:
                    break
                try:
                    nxt = next(it).timestamp()
                except StopIteration:
                    self._it = None
                    return NEVER
                known.append(nxt)
                if nxt > t:
                    if len(known) > _KEEP * 2:
                        self._from = known[-_KEEP - 1]
                        del known[:-_KEEP]
                    return nxt
        self._it = it = CronSim(self.expr, datetime.fromtimestamp(t, self.zone))
        try:
            first = next(it).timestamp()
            while first <= t:  # t in a repeated hour (fold=1): cronsim reads the clock, and may give the first pass
                first = next(it).timestamp()
        except StopIteration:
            self._it = None
            self._known = []
            return NEVER
        self._known = [first]
        self._from = t
        return first

    def before(self, t: float, n: int = 1) -> float | None:
        """The ``n``-th slot counting back from ``t`` (the last one at or
        before it is the first); None if there are not that many in the last 50 years."""
        it = CronSim(self.expr, datetime.fromtimestamp(t + 1, self.zone), reverse=True)
        found = None
        try:
            for _ in range(n):
                found = next(it).timestamp()
        except StopIteration:
            return None
        return found


def early(interval: float) -> float:
    """How early a start may come and still count for its slot."""
    return min(EARLY, interval / 10)


def deadline_after(at: float, deadline: time, tz: ZoneInfo) -> float:
    """The first instant at or after ``at`` when the clock in ``tz`` reads
    ``deadline`` (a time that a spring-forward night skips is read with the
    offset before the change, i.e. an hour later on that one day)."""
    local = datetime.fromtimestamp(at, tz)
    day = local.date()
    cand = datetime.combine(day, deadline, tzinfo=tz).timestamp()
    if cand < at:
        cand = datetime.combine(day + timedelta(days=1), deadline, tzinfo=tz).timestamp()
    return cand


def local_text(t: float, tz: ZoneInfo) -> str:
    """``2026-03-29 03:00 CEST``: an instant as a clock in ``tz`` reads it."""
    try:
        d = datetime.fromtimestamp(t, tz)
    except (ValueError, OverflowError, OSError):  # past year 9999 (an expectation's durations are capped)
        return f"@{t:.0f}"
    sec = f":{d.second:02d}" if d.second else ""
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}{sec} {d.tzname()}"
