"""Judging 10,000 scheduled workflows in one pass, against ``cronsim`` alone
computing the same next slots.

A mix of schedules a team has (daily at many hours, hourly, every 15 minutes,
weekdays, monthly; in UTC, Europe/Copenhagen, America/New_York and
Asia/Tokyo), each judged at an instant just after its grace ran out, with
half of them having had their run on time and half late (so half raise
``RunLate``: the alerts are computed too).

* **cronsim alone**: for each workflow, ``next(CronSim(expr, slot))``, the
  next slot after its current one: what any checker must compute.
* **flowsight, one pass**: for each workflow, the judgement of its current
  slot (:func:`flowsight.model.schedules.judge.judge`, which computes that
  same next slot through ``cronsim``) and the alerts it calls for
  (:func:`flowsight.model.schedules.alerts.wanted`), from a fresh grid
  (no slot kept from an earlier pass: the worst case, as after a restart).
* **flowsight, kept grids**: the same, with each workflow's grid kept from an
  earlier pass (what the schedule monitor does between passes), for information.
* **the monitor**: :class:`flowsight.monitors.schedules.ScheduleMonitor` over a
  real SQLite store, a tick in which every workflow is due (its judgements
  written), for information.

The ratio printed last is the pass's time over cronsim's (goal ≤ 1.5), and a
pass must stay under 1 s.

    .venv/bin/python bench/schedules.py [--workflows 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from cronsim import CronSim

from flowsight.model.runs.state import WorkflowState
from flowsight.model.schedules import Expectations, make_expectations
from flowsight.model.schedules.alerts import wanted
from flowsight.model.schedules.judge import Coverage, RunFacts, judge
from flowsight.model.schedules.slots import CronGrid

ZONES = ("UTC", "Europe/Copenhagen", "America/New_York", "Asia/Tokyo")


def expressions(rng: random.Random) -> str:
    kind = rng.randrange(6)
    m, h = rng.randrange(60), rng.randrange(24)
    if kind == 0:
        return f"{m} {h} * * *"
    if kind == 1:
        return f"{m} * * * *"
    if kind == 2:
        return "*/15 * * * *"
    if kind == 3:
        return f"{m} {h} * * 1-5"
    if kind == 4:
        return f"{m} {h} 1 * *"
    return f"{m} {h},{(h + 12) % 24} * * *"


def setup(n: int) -> list[tuple[Expectations, float, list[RunFacts]]]:
    """Per workflow: expectations, its current slot (the last one at or before the reference day), its runs."""
    rng = random.Random(19)
    ref = datetime(2026, 11, 18, 12, 0).timestamp()
    out = []
    for i in range(n):
        expr = expressions(rng)
        exp = make_expectations(f"wf-{i}", {"schedule": expr, "timezone": rng.choice(ZONES), "start_grace": "5m"})
        slot = CronGrid(expr, exp.timezone).before(ref)
        assert slot is not None
        runs = [RunFacts(f"r-{i}", slot + 30, WorkflowState.RUNNING)] if i % 2 else []
        out.append((exp, slot, runs))
    return out


def cronsim_alone(work: list[tuple[Expectations, float, list[RunFacts]]]) -> float:
    zones = {z: ZoneInfo(z) for z in ZONES}
    t = time.perf_counter()
    for exp, slot, _ in work:
        assert exp.schedule is not None
        next(CronSim(exp.schedule, datetime.fromtimestamp(slot, zones[exp.timezone])))
    return time.perf_counter() - t


def one_pass(
    work: list[tuple[Expectations, float, list[RunFacts]]], grids: list[CronGrid] | None = None
) -> tuple[float, int]:
    always = Coverage.always()
    fresh = grids is None
    t = time.perf_counter()
    alerts = 0
    for k, (exp, slot, runs) in enumerate(work):
        assert exp.schedule is not None
        grid = CronGrid(exp.schedule, exp.timezone) if fresh or grids is None else grids[k]
        now = slot + 301.0
        v = judge(exp, runs, now, first=slot, coverage=always, grid=grid)
        alerts += len(wanted(exp, v.slots, runs, now))
    return time.perf_counter() - t, alerts


def monitor_tick(work: list[tuple[Expectations, float, list[RunFacts]]]) -> tuple[float, float]:
    """The monitor's first tick (reads the store) and a tick where every workflow is due."""
    from flowsight.monitors.schedules import ScheduleMonitor
    from flowsight.store import open_store

    with tempfile.TemporaryDirectory() as d:
        store = open_store(str(Path(d) / "bench.db"))
        exps = {e.workflow: e for e, _, _ in work}
        now = [min(slot for _, slot, _ in work) - 60]
        sent: list[object] = []
        mon = ScheduleMonitor(store, sent.append, exps, clock=lambda: now[0], read_only=False)
        t = time.perf_counter()
        mon.tick()
        first = time.perf_counter() - t
        now[0] += 86400  # a day on: every workflow has slots to judge (those every 15 minutes, 96)
        t = time.perf_counter()
        mon.tick()
        due = time.perf_counter() - t
        store.close()
        return first, due


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workflows", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-monitor", action="store_true", help="skip the monitor-over-a-store figures")
    args = ap.parse_args()
    work = setup(args.workflows)
    gc.collect()
    gc.freeze()  # the setup's objects out of the collector's way, for both sides alike
    peer, ours, warm = [], [], []
    alerts = 0
    grids = [CronGrid(e.schedule or "", e.timezone) for e, _, _ in work]
    one_pass(work, grids)  # the kept grids hold the slots of an earlier pass
    for _ in range(args.repeat):
        peer.append(cronsim_alone(work))
        took, alerts = one_pass(work)
        ours.append(took)
        warm.append(one_pass(work, grids)[0])
    p, o, w = statistics.median(peer), statistics.median(ours), statistics.median(warm)
    n = args.workflows
    print(f"{n:,} scheduled workflows, {len(ZONES)} zones, {alerts:,} RunLate alerts per pass")
    print(f"cronsim alone (next slot of each): {p * 1000:.0f} ms ({p / n * 1e6:.1f} µs a workflow)")
    print(f"flowsight pass, fresh grids:        {o * 1000:.0f} ms ({o / n * 1e6:.1f} µs a workflow; goal < 1 s)")
    print(f"flowsight pass, kept grids:         {w * 1000:.0f} ms ({w / n * 1e6:.1f} µs a workflow)")
    if not args.no_monitor:
        first, due = monitor_tick(work)
        print(
            f"the monitor over SQLite: first tick {first * 1000:.0f} ms; a day later, a tick judging every "
            f"slot of the day of all {n:,} and writing them {due * 1000:.0f} ms"
        )
    print(f"ratio flowsight pass/cronsim alone = {o / p:.2f}")


if __name__ == "__main__":
    main()
