"""QuantileSketch: accuracy, memory and add() rate against the ``ddsketch`` package.

1,000,000 step latencies from a seeded heavy-tailed mixture (97% lognormal
around 200 ms, 3% slow path lognormal around 20 s). Printed:

1. p50/p90/p95/p99 exactly (by sorting; rank ``floor(q * (n - 1))`` as in
   DDSketch) and from both sketches, with the largest relative error — goal
   <= 1% (alpha is 0.5%).
2. flowsight's memory at 1k, 100k and 1M values: buckets in use and encoded
   bytes, bounded by ``max_buckets`` whatever the count.
3. add() rate of both (best of 3 fresh sketches), the ratio last.

The peer is ddsketch's ``LogCollapsingLowestDenseDDSketch`` with the same
relative accuracy and bucket limit: the same bounded-memory policy.

Run: ``.venv/bin/python bench/sketch.py [n]`` (needs the ``bench`` extra).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Sequence

from ddsketch import LogCollapsingLowestDenseDDSketch

from flowsight.model.performance.sketch import QuantileSketch

N = 1_000_000
ALPHA = 0.005
MAX_BUCKETS = 2048
QUANTILES = (0.5, 0.9, 0.95, 0.99)
REPEATS = 3


def latencies(n: int, seed: int = 42) -> list[float]:
    rng = random.Random(seed)
    fast, slow = math.log(0.2), math.log(20.0)
    return [rng.lognormvariate(slow, 1.0) if rng.random() < 0.03 else rng.lognormvariate(fast, 0.8) for _ in range(n)]


def flowsight_sketch(values: Sequence[float]) -> QuantileSketch:
    s = QuantileSketch(ALPHA, MAX_BUCKETS)
    add = s.add
    for v in values:
        add(v)
    return s


def ddsketch_sketch(values: Sequence[float]) -> LogCollapsingLowestDenseDDSketch:
    s = LogCollapsingLowestDenseDDSketch(ALPHA, bin_limit=MAX_BUCKETS)
    add = s.add
    for v in values:
        add(v)
    return s


def best_ns_per_add(build: Callable[[Sequence[float]], object], values: Sequence[float]) -> float:
    best = math.inf
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        build(values)
        best = min(best, time.perf_counter() - t0)
    return best / len(values) * 1e9


def accuracy_report(n: int) -> list[str]:
    """The lines this bench prints for ``n`` values, the ratio last."""
    values = latencies(n)
    ordered = sorted(values)
    exact = {q: ordered[math.floor(q * (n - 1))] for q in QUANTILES}
    ours = flowsight_sketch(values).quantiles(QUANTILES)
    peer = ddsketch_sketch(values)
    theirs = {q: peer.get_quantile_value(q) for q in QUANTILES}

    def err(estimate: float | None, q: float) -> float:
        assert estimate is not None
        return abs(estimate - exact[q]) / exact[q]

    lines = [
        f"{n:,} latencies: 97% lognormal(200 ms, 0.8) + 3% lognormal(20 s, 1.0), seed 42; "
        f"alpha {ALPHA}, max_buckets {MAX_BUCKETS}",
        f"{'':>4} {'exact s':>12} {'flowsight s':>12} {'err':>7} {'ddsketch s':>12} {'err':>7}",
    ]
    for q in QUANTILES:
        lines.append(
            f"p{q * 100:<3g} {exact[q]:>12.6f} {ours[q]:>12.6f} {err(ours[q], q):>7.3%} "
            f"{theirs[q]:>12.6f} {err(theirs[q], q):>7.3%}"
        )
    ours_max = max(err(ours[q], q) for q in QUANTILES)
    theirs_max = max(err(theirs[q], q) for q in QUANTILES)
    lines.append(
        f"max relative error p50/p90/p95/p99: flowsight = {ours_max:.3%} (goal <= 1%), ddsketch = {theirs_max:.3%}"
    )
    for size in sorted({s for s in (1_000, 100_000, n) if s <= n}):
        s = flowsight_sketch(values[:size])
        lines.append(
            f"flowsight memory at {size:>9,} values: {len(s.bucket_counts()):>5,} buckets, "
            f"{len(s.to_bytes()):>6,} bytes encoded"
        )
    ours_ns = best_ns_per_add(flowsight_sketch, values)
    theirs_ns = best_ns_per_add(ddsketch_sketch, values)
    lines.append(
        f"add() flowsight = {1e3 / ours_ns:.2f} M/s ({ours_ns:.0f} ns), "
        f"ddsketch = {1e3 / theirs_ns:.2f} M/s ({theirs_ns:.0f} ns)"
    )
    lines.append(f"ratio add rate flowsight/ddsketch = {theirs_ns / ours_ns:.2f}")
    return lines


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else N
    for line in accuracy_report(n):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
