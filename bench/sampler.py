"""Sampling 50 process trees every second: what it costs this process.

50 trees, each a child with one grandchild (one tree in five lightly busy,
the others idle). flowsight: :class:`~flowsight.collect.resources.MetricsCollector`
``.sample`` of the host and the 50 runs every second for ``--seconds``. The
peer: the same psutil calls made bare, as a careful user would, for the same
time: the host's cpu_percent, virtual_memory, disk_io_counters and
net_io_counters, then for each tree ``Process(pid).children(recursive=True)``
and, inside ``oneshot()``, cpu_percent, memory_info, io_counters, num_fds and
num_threads of each process, the Process objects kept from one second to
the next (so that cpu_percent has something to compare with). Printed: the
CPU each used (share of one core, this process only: ``time.process_time``),
then the quantile sketch's error against exact percentiles over 1,000,000
latencies and its memory (:func:`sketch.accuracy_report`), and last the
ratio. Goals: ratio <= 1.3, flowsight under 2% of one core; sketch error <= 1%
with memory independent of the count.

Run: ``.venv/bin/python bench/sampler.py`` (``--seconds 60``, ``--trees 50``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sketch import accuracy_report  # noqa: E402  (bench/sketch.py beside this file)

from flowsight.collect.resources import MetricsCollector

# argv[1]: "busy" or "idle"; the grandchild does the same as its parent
TREE = textwrap.dedent("""
    import subprocess, sys, time
    if sys.argv[2] == "child":
        subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1], "grandchild", ""])
    while True:
        if sys.argv[1] == "busy":
            sum(range(20_000))
        time.sleep(0.1)
""")


def start_trees(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` trees, each in a session of its own; returns once each has its grandchild."""
    trees = [
        subprocess.Popen(
            [sys.executable, "-c", TREE, "busy" if i % 5 == 0 else "idle", "child", TREE], start_new_session=True
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 120
    while any(len(psutil.Process(t.pid).children()) < 1 for t in trees):
        if time.monotonic() > deadline:
            raise RuntimeError("the trees did not start within 120 s")
        time.sleep(0.1)
    return trees


def every_second(seconds: float, work: Callable[[], None]) -> float:
    """Calls ``work`` once a second for ``seconds``; the CPU seconds this process used meanwhile."""
    cpu, start = time.process_time(), time.monotonic()
    for tick in range(int(seconds)):
        due = start + tick
        if (now := time.monotonic()) < due:
            time.sleep(due - now)
        work()
    if (now := time.monotonic()) < start + seconds:
        time.sleep(start + seconds - now)
    return time.process_time() - cpu


def bare_psutil(pids: list[int]) -> Callable[[], None]:
    procs: dict[int, psutil.Process] = {}  # kept across seconds, so cpu_percent(None) has a previous value

    def one_second() -> None:
        psutil.cpu_percent(interval=None)
        psutil.virtual_memory()
        psutil.disk_io_counters()
        psutil.net_io_counters(pernic=True)
        for pid in pids:
            try:
                tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for fresh in tree:
                p = procs.setdefault(fresh.pid, fresh)
                if p != fresh:  # the pid was reused: another process
                    p = procs[fresh.pid] = fresh
                try:
                    with p.oneshot():
                        p.cpu_percent(None)
                        p.memory_info()
                        p.io_counters()
                        p.num_fds()
                        p.num_threads()
                except psutil.NoSuchProcess:
                    pass

    return one_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--trees", type=int, default=50)
    ap.add_argument("--latencies", type=int, default=1_000_000, help="latencies for the sketch's accuracy")
    args = ap.parse_args()
    trees = start_trees(args.trees)
    try:
        runs = {f"run-{i}": t.pid for i, t in enumerate(trees)}
        collector = MetricsCollector()
        seen: list[int] = []  # processes in the trees, each second
        on_host: list[int] = []

        def flowsight() -> None:
            host, usage = collector.sample(runs)
            seen.append(sum(u.processes for u in usage.values()))
            on_host.append(host.processes)

        fs_cpu = every_second(args.seconds, flowsight)
        bare_cpu = every_second(args.seconds, bare_psutil([t.pid for t in trees]))
    finally:
        for t in trees:
            os.killpg(t.pid, signal.SIGKILL)
            t.wait()
    assert min(seen) == 2 * args.trees, f"a sample saw {min(seen)} processes, not {2 * args.trees}"
    print(
        f"{args.trees} trees (child + grandchild), sampled every second for {args.seconds:g} s, "
        f"{max(on_host)} processes on the host, {os.cpu_count()} cores"
    )
    print(f"flowsight MetricsCollector.sample: CPU {100 * fs_cpu / args.seconds:.2f}% of one core")
    print(f"bare psutil (children(recursive=True) per tree): CPU {100 * bare_cpu / args.seconds:.2f}% of one core")
    # the latency side of the performance monitor: the quantile sketch against
    # exact percentiles over 1,000,000 latencies (bench/sketch.py has the detail)
    for line in accuracy_report(args.latencies)[:-1]:
        print(line)
    print(f"ratio flowsight/bare psutil = {fs_cpu / bare_cpu:.2f}")


if __name__ == "__main__":
    main()
