"""What wrapping a command in ``flowsight run`` costs, same run.

The command prints ``--lines`` lines (default 1,000,000: ``seq 1 N``). Wall
time of ``flowsight run -- seq 1 N`` (its run and every line stored in a
fresh SQLite store, output passed through to a pipe that is read and
discarded) against plain ``seq 1 N`` into the same kind of pipe. Printed:
both times, lines/s, and last the ratio. Goal: <= 1.2.

Run: ``.venv/bin/python bench/run_overhead.py`` (``--lines 1000000``, ``--repeat 3``: the best of each).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall(argv: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    while proc.stdout.read(1 << 16):
        pass
    assert proc.wait() == 0, argv
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    command = ["seq", "1", str(args.lines)]
    plain = min(wall(command) for _ in range(args.repeat))
    times = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.repeat):
            db = str(Path(d) / f"run-{i}.db")
            times.append(wall([sys.executable, "-m", "flowsight", "--db", db, "run", "--run-id", f"r-{i}", "--",
                               *command]))
            from flowsight.store import open_store

            with open_store(db) as store:
                stored = store.count_logs()
            assert stored == args.lines, f"{stored} lines stored, not {args.lines}"
    wrapped = min(times)
    print(f"{args.lines:,} lines: plain {plain:.2f} s, flowsight run {wrapped:.2f} s "
          f"({args.lines / wrapped:,.0f} lines/s passed through and stored)")
    print(f"ratio flowsight run/plain = {wrapped / plain:.2f}")


if __name__ == "__main__":
    main()
