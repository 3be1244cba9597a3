"""What wrapping a command in ``flowsight run`` costs, same run.

The command prints ``--lines`` lines (default 1,000,000). Two commands:

* ``logging`` (the ratio printed last): a Python program that logs every line
  through the ``logging`` module (``2026-11-29 08:00:00,123 INFO etl.load:
  loaded row 17 of batch 0 ...``) -- the shape of a chatty ETL or training job;
* ``seq``: ``seq 1 N``, output as fast as a pipe takes it (about 10 ms for a
  million lines: flowsight's own start, about 0.3 s of Python imports, is most
  of what it costs here, so its ratio is printed for the record only).

Wall time of ``flowsight run -- CMD`` (its run and every line stored in a
fresh SQLite store, output passed through to a pipe that is read and
discarded) against plain ``CMD`` into the same kind of pipe; the best of
``--repeat``. Each wrapped run is checked: every line stored, in order (a
flood of lines is stored in groups of lines, see the README's ``flowsight
run`` section). Printed: both times, lines/s, flowsight's own CPU seconds,
and last the ratio for ``logging``. Goal: <= 1.2.

Run: ``.venv/bin/python bench/run_overhead.py`` (``--lines 1000000``, ``--repeat 3``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHATTY = """\
import logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("etl.load")
for i in range(int(sys.argv[1])):
    log.info("loaded row %d of batch %d into staging (%d bytes)", i, i // 1000, 100 + i % 900)
"""


def wall(argv: list[str]) -> tuple[float, float]:
    """Wall seconds of ``argv`` with its stdout read from a pipe, and the CPU
    seconds of it and its children."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    while proc.stdout.read(1 << 16):
        pass
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, argv
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime


def stored_lines(db: str) -> int:
    from flowsight.store import open_store

    with open_store(db) as store:
        rows = store.db.read("SELECT message FROM logs ORDER BY seq")
    return sum(r[0].count("\n") + 1 for r in rows)


def measure(name: str, command: list[str], lines: int, repeat: int, d: str) -> float:
    plain = min(wall(command) for _ in range(repeat))
    wrapped = []
    for i in range(repeat):
        db = str(Path(d) / f"{name}-{i}.db")
        wrapped.append(
            wall([sys.executable, "-m", "flowsight", "--db", db, "run", "--run-id", f"{name}-{i}", "--", *command])
        )
        stored = stored_lines(db)
        assert stored == lines, f"{name}: {stored} lines stored, not {lines}"
    best = min(wrapped)
    ratio = best[0] / plain[0]
    print(
        f"{name}: {lines:,} lines: plain {plain[0]:.2f} s, flowsight run {best[0]:.2f} s "
        f"({lines / best[0]:,.0f} lines/s passed through and stored; flowsight's own CPU "
        f"{best[1] - plain[1]:.2f} s), ratio {ratio:.2f}"
    )
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "chatty.py"
        script.write_text(CHATTY)
        measure("seq", ["seq", "1", str(args.lines)], args.lines, args.repeat, d)
        ratio = measure("logging", [sys.executable, str(script), str(args.lines)], args.lines, args.repeat, d)
    print(f"ratio flowsight run/plain (logging) = {ratio:.2f}")


if __name__ == "__main__":
    main()
