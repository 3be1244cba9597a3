"""What this server has seen since it started (commits, step and run
durations, write times), fed by every commit and read by ``/metrics``."""

from __future__ import annotations

import bisect
import threading

from flowsight.store.base import WriteResult

DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Histogram:
    """Cumulative-bucket histogram (the exposition's own shape)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts):
            total += n
            out.append((bound, float(total)))
        return out


class Counters:
    """What this server has seen since it started; fed by every commit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted = 0
        self.duplicates = 0
        self.steps: dict[tuple[str, str], Histogram] = {}
        self.runs: dict[tuple[str, str], Histogram] = {}
        self.writes = Histogram(WRITE_BUCKETS)

    def on_commit(self, result: WriteResult, seconds: float) -> None:
        with self.lock:
            self.accepted += len(result.accepted)
            self.duplicates += len(result.duplicates)
            self.writes.observe(seconds)
            for wf, step, d in result.step_durations:
                h = self.steps.get((wf, step))
                if h is None:
                    h = self.steps[(wf, step)] = Histogram(DURATION_BUCKETS)
                h.observe(d)
            for wf, state, d in result.run_durations:
                h = self.runs.get((wf, state))
                if h is None:
                    h = self.runs[(wf, state)] = Histogram(DURATION_BUCKETS)
                h.observe(d)
