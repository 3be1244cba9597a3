"""Throughput over sliding windows: completions per second over the last
1 minute, 5 minutes and 1 hour, with memory bounded by the longest window.

:class:`RateWindow` counts events in one-second buckets (at most
``horizon`` of them, however many events there are); :meth:`RateWindow.rate`
is the count in the last ``window`` seconds divided by ``window``.
"""

from __future__ import annotations

import math
from collections import deque

#: the windows throughput is given over, in seconds, by name
WINDOWS = {"1m": 60.0, "5m": 300.0, "1h": 3600.0}


class RateWindow:
    """Events per second over sliding windows up to ``horizon`` seconds."""

    __slots__ = ("horizon", "_buckets", "_total")

    def __init__(self, horizon: float = 3600.0) -> None:
        if not horizon > 0:
            raise ValueError(f"horizon must be above 0 s, got {horizon!r}")
        self.horizon = horizon
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first
        self._total = 0

    def add(self, ts: float, n: int = 1) -> None:
        """Count ``n`` events at ``ts`` (late ones go to their own second)."""
        if not math.isfinite(ts) or n <= 0:
            return
        second = int(ts)
        b = self._buckets
        if b and b[-1][0] == second:
            b[-1][1] += n
        elif not b or b[-1][0] < second:
            b.append([second, n])
        else:  # out of order: find its second (rare: events arrive nearly in order)
            for bucket in reversed(b):
                if bucket[0] == second:
                    bucket[1] += n
                    break
                if bucket[0] < second:
                    idx = b.index(bucket) + 1
                    b.insert(idx, [second, n])
                    break
            else:
                b.appendleft([second, n])
        self._total += n
        self._prune(second)

    def _prune(self, now_second: int) -> None:
        oldest = now_second - int(self.horizon)
        b = self._buckets
        while b and b[0][0] <= oldest:
            self._total -= b.popleft()[1]

    def count(self, now: float, window: float) -> int:
        """Events in the ``window`` seconds up to ``now``."""
        self._prune(int(now))
        since = int(now) - int(window)
        total = 0
        for second, n in reversed(self._buckets):
            if second <= since:
                break
            if second <= now:
                total += n
        return total

    def rate(self, now: float, window: float) -> float:
        """Events per second over the last ``window`` seconds."""
        if window > self.horizon:
            raise ValueError(f"window {window:g} s is longer than the horizon {self.horizon:g} s")
        return self.count(now, window) / window

    def rates(self, now: float) -> dict[str, float]:
        """Per second over each of :data:`WINDOWS` (those within the horizon)."""
        return {name: self.rate(now, w) for name, w in WINDOWS.items() if w <= self.horizon}

    def __len__(self) -> int:
        """Buckets held (bounded by the horizon)."""
        return len(self._buckets)
