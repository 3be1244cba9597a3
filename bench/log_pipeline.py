"""The log monitor end to end: tail + parse + template + rules + store.

A file of HDFS-like lines (the Loghub HDFS sample, replicated with its
numbers varied) is read by ``FileTail`` and collected by ``LogMonitor`` into a
fresh SQLite store (parse, ids, ``save_logs``, offsets saved after each
batch), as ``flowsight logs watch`` does; then the server's side runs over
the stored lines: templates, 20 rules, template ids written back
(``LogMonitor.analyze_stored``, as ``flowsight serve`` does every second).
The peer is the floor under both: ``cat`` of the file into a bare
``sqlite3`` executemany of (ts, line) rows in the same run. Ratio printed last
(flowsight lines/s / floor lines/s).

Run: ``.venv/bin/python bench/log_pipeline.py [lines] [loghub-dir]`` (default 300,000 lines).
"""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from flowsight.collect import FileTail
from flowsight.logs.analyzer import LogAnalyzer
from flowsight.logs.records import LogRecord
from flowsight.logs.ruleset import make_rule
from flowsight.monitors.log import LogMonitor
from flowsight.store import open_store

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "loghub"
RULES = [
    ("match", {"contains": "Exception"}),
    ("match", {"pattern": r"(?i)timeout"}),
    ("match", {"contains": "Got exception while serving"}),
    ("match", {"level": "warn"}),
    ("match", {"pattern": r"PacketResponder \d+ for block \S+ terminating", "level": "error"}),
    ("match", {"contains": "Connection reset by peer"}),
    ("match", {"pattern": r"(?i)disk (full|error)"}),
    ("match", {"contains": "checksum error"}),
    ("match", {"pattern": r"Deleting block blk_-?\d+ file /mnt/x"}),
    ("match", {"contains": "addStoredBlock request received for blk_9"}),
    ("frequency", {"contains": "Exception", "threshold": 100, "window": 60}),
    ("frequency", {"pattern": r"(?i)error", "threshold": 50, "window": 60}),
    ("spike", {"contains": "Verification succeeded", "window": 60}),
    ("spike", {"level": "error", "window": 60}),
    ("new_template", {}),
    ("match", {"contains": "OutOfMemoryError"}),
    ("match", {"pattern": r"java\.io\.IOException: Could not", "ignore_case": True}),
    ("match", {"contains": "Unexpected error trying to delete block"}),
    ("match", {"pattern": r"Slow BlockReceiver write"}),
    ("absence", {"contains": "heartbeat", "within": 3600}),
]
_NUM = re.compile(r"\d+")


def make_lines(n: int, loghub: Path) -> list[str]:
    sample = (loghub / "HDFS" / "HDFS_2k.log").read_text().splitlines()
    rng = random.Random(7)
    out = []
    for i in range(n):
        line = sample[i % len(sample)]
        if i >= len(sample):  # vary the block ids and sizes, keep the dates and times
            head, _, rest = line.partition(" INFO ") if " INFO " in line else line.partition(" WARN ")
            line = (
                head
                + (" INFO " if " INFO " in line else " WARN ")
                + _NUM.sub(lambda m: str(rng.randrange(10 ** len(m.group())))[: len(m.group())] or "0", rest)
            )
        out.append(line)
    return out


async def collect(path: Path, db: str) -> int:
    store = open_store(db)
    tail = FileTail([str(path)], state_path=Path(db + ".offsets.json"), start="beginning", multiline=False)
    monitor = LogMonitor([tail])

    async def save(records: list[LogRecord]) -> None:
        store.logs.save_logs(records)

    stop = asyncio.Event()
    stop.set()
    await monitor.monitor_logs(save, stop=stop, drain=True)
    store.close()
    return monitor.collected


def analyze(db: str) -> tuple[int, int]:
    store = open_store(db)
    rules = [make_rule(kind, f"r{i}", **opts) for i, (kind, opts) in enumerate(RULES)]
    alerts: list[object] = []
    monitor = LogMonitor(log_analyzer=LogAnalyzer(), alert_rules=rules, send_alert=alerts.append)
    n = 0
    while True:
        got = monitor.analyze_stored(store, limit=20_000)
        n += got
        if got < 20_000:
            break
    store.close()
    return n, len(alerts)


def floor(path: Path, db: str) -> int:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE lines (seq INTEGER PRIMARY KEY, ts REAL, line TEXT)")
    n = 0
    with path.open(encoding="utf-8") as f:
        batch: list[tuple[float, str]] = []
        for line in f:
            batch.append((time.time(), line.rstrip("\n")))
            if len(batch) == 5000:
                with conn:
                    conn.executemany("INSERT INTO lines (ts, line) VALUES (?, ?)", batch)
                n += len(batch)
                batch = []
        with conn:
            conn.executemany("INSERT INTO lines (ts, line) VALUES (?, ?)", batch)
        n += len(batch)
    conn.close()
    return n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    loghub = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_DIR
    if not (loghub / "HDFS" / "HDFS_2k.log").exists():
        print(f"skipped: no Loghub HDFS sample under {loghub}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hdfs.log"
        path.write_text("\n".join(make_lines(n, loghub)) + "\n")
        t0 = time.perf_counter()
        got = asyncio.run(collect(path, str(Path(tmp) / "fs.db")))
        t_collect = time.perf_counter() - t0
        t0 = time.perf_counter()
        analyzed, alerts = analyze(str(Path(tmp) / "fs.db"))
        t_analyze = time.perf_counter() - t0
        t0 = time.perf_counter()
        floor_n = floor(path, str(Path(tmp) / "floor.db"))
        t_floor = time.perf_counter() - t0
    assert got == analyzed == floor_n == n, (got, analyzed, floor_n, n)
    total = t_collect + t_analyze
    print(f"lines: {n:,}; rules: {len(RULES)}; alerts raised: {alerts}")
    print(f"collect (tail + parse + ids + store):   {n / t_collect:>10,.0f} lines/s")
    print(f"analyze (template + rules + write ids): {n / t_analyze:>10,.0f} lines/s")
    print(f"end to end (both, one after the other): {n / total:>10,.0f} lines/s")
    print(f"floor (read lines + bare sqlite3 insert): {n / t_floor:>8,.0f} lines/s")
    print(f"ratio end to end / floor: {(n / total) / (n / t_floor):.2f}")


if __name__ == "__main__":
    main()
