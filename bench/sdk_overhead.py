"""What instrumenting costs: flowsight's SDK against OpenTelemetry's, same run.

1. Per step (enter + exit) on the caller's thread: ``with run.step("s")``
   against an OpenTelemetry SDK span (start + end; BatchSpanProcessor to a
   no-op exporter). Both with their background threads running. Wall time and
   the caller thread's CPU time, median of alternating rounds.
   Goal: flowsight <= 0.1x OpenTelemetry.
2. The background writer's sustained rate into SQLite, against a bare
   ``sqlite3`` executemany of the same event rows into the same table, batches
   of 1,000. Goal: >= 120,000 events/s and >= 0.6x bare.

Run: ``.venv/bin/python bench/sdk_overhead.py`` (``--steps N`` to change the size).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from flowsight.model.runs.events import EventKind
from flowsight.model.runs.ids import new_ids
from flowsight.sdk.client import Client, Run
from flowsight.store import open_store
from flowsight.store.migrations import MIGRATIONS


class NoopExporter(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def time_loop(body: object, n: int) -> tuple[float, float]:
    """(wall us, caller-thread CPU us) per iteration."""
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    body(n)  # type: ignore[operator]
    return (time.perf_counter_ns() - w0) / n / 1e3, (time.thread_time_ns() - c0) / n / 1e3


def caller_cost(tmp: Path, n: int, rounds: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    client = Client(str(tmp / "caller.db"), retention="off")
    run = Run("bench", client=client)
    run.start()

    def fs(k: int) -> None:
        step = run.step
        for _ in range(k):
            with step("s"):
                pass

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    tracer = provider.get_tracer("bench")

    def otel(k: int) -> None:
        start = tracer.start_span
        for _ in range(k):
            start("s").end()

    fs_r, ot_r = [], []
    for _ in range(rounds):
        fs_r.append(time_loop(fs, n))
        client.flush(600)  # each round starts with the writer idle, as the first did
        ot_r.append(time_loop(otel, n))
        provider.force_flush()
    client.close()
    provider.shutdown()
    return fs_r, ot_r


def writer_rate(tmp: Path, n: int) -> float:
    client = Client(str(tmp / "writer.db"), retention="off")
    client.writer.store  # open and migrate before the clock starts
    t0 = time.time_ns()
    put = client.writer.put
    for i in range(n):
        kind = EventKind.STEP_STARTED if i % 2 == 0 else EventKind.STEP_COMPLETED
        put((t0 + i * 1000, kind, "bench", f"run-{i // 20_000}", f"step-{(i // 2) % 10}", None))
    start = time.perf_counter()
    client.start()
    client.flush(600)
    elapsed = time.perf_counter() - start
    store = open_store(str(tmp / "writer.db"))
    assert store.runs.count_events() == n, "the writer lost events"
    store.close()
    client.close()
    return n / elapsed


def bare_rate(tmp: Path, n: int) -> float:
    conn = sqlite3.connect(str(tmp / "bare.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for stmt in MIGRATIONS[0][2]["sqlite"]:
        conn.execute(stmt)
    t0 = time.time_ns()
    ids = new_ids([t0 + i * 1000 for i in range(n)])
    rows = [
        (
            ids[i],
            (t0 + i * 1000) / 1e9,
            "step_started" if i % 2 == 0 else "step_completed",
            "bench",
            f"run-{i // 20_000}",
            f"step-{(i // 2) % 10}",
            "{}",
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    for i in range(0, n, 1000):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (id, ts, kind, workflow, run_id, step, attrs) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows[i : i + 1000],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50_000, help="steps per round (caller cost)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=200_000, help="events for the writer rate")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fs_r, ot_r = caller_cost(tmp, args.steps, args.rounds)
        fs_wall = statistics.median(r[0] for r in fs_r)
        fs_cpu = statistics.median(r[1] for r in fs_r)
        ot_wall = statistics.median(r[0] for r in ot_r)
        ot_cpu = statistics.median(r[1] for r in ot_r)
        print(f"caller, per step (enter+exit): flowsight {fs_wall:.2f} us wall, {fs_cpu:.2f} us thread CPU")
        print(f"caller, per span (start+end):  opentelemetry {ot_wall:.2f} us wall, {ot_cpu:.2f} us thread CPU")
        bare = bare_rate(tmp, args.events)
        writer = writer_rate(tmp, args.events)
        print(f"writer: flowsight {writer:,.0f} events/s into SQLite (events + runs + transitions)")
        print(f"bare sqlite3 executemany of the same event rows: {bare:,.0f} rows/s")
        print(f"ratio flowsight writer/bare sqlite3 = {writer / bare:.2f}")
        print(f"ratio flowsight/opentelemetry (caller thread CPU) = {fs_cpu / ot_cpu:.3f}")
        print(f"ratio flowsight/opentelemetry (wall) = {fs_wall / ot_wall:.3f}")


if __name__ == "__main__":
    main()
