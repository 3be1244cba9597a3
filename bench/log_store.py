"""Log entries into the store: ``save_logs`` against a bare ``sqlite3``
``executemany`` of the same rows into the same table with the same indexes
(migration 4), same run, batches of 1,000, alternating rounds.

The peer is the floor the store cannot beat (the same inserts and index
updates with nothing around them); the ratio is what building the rows from
``LogRecord``s, the dedupe bookkeeping (which id got which seq) and the
NUL checks cost on top.

Run: ``.venv/bin/python bench/log_store.py`` (``--rows N``, ``--rounds R``;
``--pg DSN`` adds the PostgreSQL figure, printed only).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from flowsight.model.runs.ids import new_ids
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.store import open_store
from flowsight.store.logs import LogRecord, _row
from flowsight.store.migrations import MIGRATIONS

BATCH = 1000


def records(n: int) -> list[LogRecord]:
    levels = list(LogLevel)
    now = time.time()
    ids = new_ids([int((now + i * 1e-3) * 1e9) for i in range(n)])
    return [
        LogRecord(
            ids[i],
            LogEntry(
                now + i * 1e-3,
                levels[i % 6],
                f"processed block blk_{i} in {i % 97} ms from 10.0.{i % 255}.1",
                "/var/log/app.log",
                "etl",
                f"run-{i // 5000}",
                f"step-{i % 7}",
                {"pid": 1234, "thread": "main"},
            ),
        )
        for i in range(n)
    ]


def flowsight_rate(url: str, recs: list[LogRecord]) -> float:
    with open_store(url) as store:
        t = time.perf_counter()
        for i in range(0, len(recs), BATCH):
            store.logs.save_logs(recs[i : i + BATCH])
        return len(recs) / (time.perf_counter() - t)


def bare_rate(path: Path, recs: list[LogRecord]) -> float:
    rows = [_row(r) for r in recs]  # built before the clock starts: the peer does only the inserts
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")
    (stmts,) = [m[2]["sqlite"] for m in MIGRATIONS if m[0] == 4]
    for stmt in stmts:
        conn.execute(stmt)
    sql = (
        "INSERT INTO logs (id, ts, level, message, source, workflow, run_id, step, template_id, fields) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
    )
    t = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[i : i + BATCH])
        conn.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - t)
    conn.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", help="also time save_logs into this PostgreSQL (printed only)")
    args = ap.parse_args()
    recs = records(args.rows)
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            ours.append(flowsight_rate(str(Path(tmp) / f"fs{r}.db"), recs))
            bare.append(bare_rate(Path(tmp) / f"bare{r}.db", recs))
    fs, peer = statistics.median(ours), statistics.median(bare)
    print(f"save_logs into SQLite: {fs:,.0f} rows/s (rounds: {', '.join(f'{x:,.0f}' for x in ours)})")
    print(
        f"bare sqlite3 executemany, same rows and indexes: {peer:,.0f} rows/s "
        f"(rounds: {', '.join(f'{x:,.0f}' for x in bare)})"
    )
    if args.pg:
        print(f"save_logs into PostgreSQL: {flowsight_rate(args.pg, recs):,.0f} rows/s")
    print(f"ratio flowsight/bare = {fs / peer:.2f}")


if __name__ == "__main__":
    main()
