"""The alert manager's speed and its restraint, in-process.

1. 10,000 alerts/s through ``AlertManager`` with 1,000 silences and 100
   routes: wall-clock rate sustained and the p99 of one decision (take the
   alert, route it, check silences) — goal p99 < 1 ms.
2. A flapping signal (an alert firing and resolving every 30 s for 2 hours):
   notifications sent by flowsight against a plain notify-on-every-change
   policy on the same signal — goal ratio <= 0.1, printed last.

Run: ``.venv/bin/python bench/alerts.py``.
"""

from __future__ import annotations

import random
import statistics
import time

from flowsight.alerting.manager import AlertManager
from flowsight.model.alerts import Alert, Matcher, Silence
from flowsight.model.flapping import FlapPolicy
from flowsight.model.routing import Route


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def throughput(n_alerts: int = 150_000, rate: float = 10_000.0) -> tuple[float, float, float, int]:
    rng = random.Random(7)
    clock = Clock()
    routes = tuple(Route(f"team-{i}", matchers=(Matcher("workflow", "=", f"wf-{i}"),), group_by=("workflow",),
                         group_wait=10, group_interval=60) for i in range(100))
    am = AlertManager(Route("default", routes=routes), clock=clock)
    t0 = clock.now
    for i in range(1000):
        m = [Matcher("workflow", "=", f"wf-{i % 150}")]
        if i % 3 == 0:
            m.append(Matcher("run", "=~", f"run-{i}.*"))
        active = i % 2 == 0
        am.add_silence(Silence(f"s{i}", tuple(m), t0 - 10 if active else t0 + 1e6, t0 + 1e7, "bench", ""))
    alerts = [Alert({"alertname": rng.choice(["RunFailed", "RunStalled", "StepFailed"]),
                     "workflow": f"wf-{rng.randrange(200)}", "run": f"run-{rng.randrange(5000)}"})
              for _ in range(n_alerts)]
    decisions = []
    notes = 0
    start = time.perf_counter()
    for i, a in enumerate(alerts):
        clock.now = t0 + i / rate
        d0 = time.perf_counter_ns()
        am.send_alert(a)
        am.muted(a, clock.now)
        decisions.append(time.perf_counter_ns() - d0)
        if i % int(rate) == 0:
            notes += len(am.tick())
    wall = time.perf_counter() - start
    decisions.sort()
    p99 = decisions[int(len(decisions) * 0.99)] / 1e6
    return n_alerts / wall, p99, statistics.median(decisions) / 1e6, notes


def flapping(hours: float = 2.0, every: float = 30.0) -> tuple[int, int]:
    clock = Clock()
    am = AlertManager(Route("team", group_by=("alertname",), group_wait=0, group_interval=60),
                      flap_policy=FlapPolicy(max_changes=4, window=600, settle=600), clock=clock)
    alert = Alert({"alertname": "DiskAlmostFull", "host": "db-1"})
    sent = changes = 0
    t, end, firing = clock.now, clock.now + hours * 3600, False
    next_flip = t
    while t < end:
        if t >= next_flip:
            firing = not firing
            changes += 1
            am.send_alert(alert) if firing else am.resolve(alert)
            next_flip += every
        sent += len(am.tick(t))
        t += 1.0
        clock.now = t
    # the signal stops flapping; let it settle
    for _ in range(3600):
        t += 1.0
        clock.now = t
        sent += len(am.tick(t))
    return sent, changes


def main() -> None:
    rate, p99, p50, notes = throughput()
    print(f"alerts through the manager: {rate:,.0f}/s sustained (target 10,000/s), 1,000 silences, 100 routes")
    print(f"decision latency: p50 {p50 * 1000:.1f} us, p99 {p99 * 1000:.1f} us (goal p99 < 1000 us); "
          f"{notes} notifications")
    sent, changes = flapping()
    print(f"flapping signal, 2 h, a change every 30 s: flowsight sent {sent} notifications; "
          f"notify-on-every-change sends {changes}")
    print(f"ratio flowsight/notify-on-every-change = {sent / changes:.3f}")


if __name__ == "__main__":
    main()
