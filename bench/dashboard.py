"""Server time of the dashboard's pages over a big store: 100,000 runs and
10,000,000 events, on SQLite and on PostgreSQL. Goal (issue 9): the overview
and a run page answer in p95 < 100 ms of server time.

The data comes from :mod:`flowsight.demo.generate` (50 workflows over 30 days,
mostly completed runs with failed, cancelled, suspended, stalled and running
ones, ~100 events and 20 log lines a run, faults, alerts, the last 6 hours'
resource samples), written through the store's own write paths. It is made
once and reused: SQLite in ``--cache-dir``, PostgreSQL in the database
``flowsight_bench`` (dropped at the end unless ``--keep-pg``; PostgreSQL is
then ``VACUUM ANALYZE``d once, as autovacuum would have).

The real app (:func:`flowsight.server.app.create_app`, with its background
work: the alerting loop and the resource sampler) runs in this process with
its lifespan; requests go through ``httpx.ASGITransport``. Server time is
what :class:`flowsight.server.timing.ServerTiming` (part of the app) measures
(arrival to the answer's start: the handler, the store, the JSON), read from
each answer's ``Server-Timing`` header.

* the overview page: exactly what its script (``dashboard/js/overview.js``)
  fetches when it loads: ``GET /api/v1/overview`` and the first page of
  ``GET /api/v1/runs?limit=50`` with the filters the address bar holds, in
  turn none, a workflow, a state (failed; running) and a search (a
  workflow's name, a run id's start, an error's text, a text nobody has);
* a run page, of a random run (a fifth of them live: running or suspended):
  what its scripts (``run.js``, ``run_logs.js``, ``run_resources.js``)
  fetch when it loads: ``GET /api/v1/runs/{id}`` (the faults that hurt it
  included), its newest 500 log entries (``/logs?order=desc&limit=500``),
  ``/api/v1/alerts``, and ``/api/v1/metrics/series`` of the run for its four
  resource metrics, each page visited twice: first visit (nothing of the run
  read before), and again.

A page's time is the SUM of its requests' server times (as if it fetched them
one after another; a browser fetching in parallel waits less). The first
overview page, loaded at once after the app started (nothing read yet; the
server's start-up reads still going on), is reported on its own line and left
out of the overview's figures, which are those of the pages after it. The
ratio printed last is the slowest page's p95 on either store over the 100 ms
goal.

Run: ``.venv/bin/python bench/dashboard.py`` (``--quick``: 10,000 runs and
1,000,000 events, 50 visits; ``--no-pg``; ``--pg DSN`` the server to make the
bench database on; ``--iterations N``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import psycopg

from flowsight.config import Config
from flowsight.demo.generate import GENERATOR_VERSION, Params, dataset_of, generate, holds
from flowsight.server.app import create_app
from flowsight.server.timing import app_duration
from flowsight.store import SqlStore, open_store

GOAL_MS = 100.0
PG_DATABASE = "flowsight_bench"
METRICS = ("cpu_percent", "memory_bytes", "disk_read_bytes_per_s", "disk_write_bytes_per_s")


def progress(done: int, total: int, _last: list[float] = [0.0]) -> None:
    if time.monotonic() - _last[0] > 10 or done == total:
        _last[0] = time.monotonic()
        print(f"    {done:,}/{total:,} events written", file=sys.stderr, flush=True)


def sqlite_store(params: Params, cache: Path, regenerate: bool) -> SqlStore:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / (
        f"dashboard-r{params.runs}-e{params.events}-l{params.total_logs}-s{params.seed}-v{GENERATOR_VERSION}.db"
    )
    if path.exists() and not regenerate:
        store = open_store(str(path))
        if holds(store, params):
            print(f"  reusing {path}", flush=True)
            return store
        store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    print(f"  generating {path} ...", flush=True)
    with open_store(str(path), synchronous="OFF") as store:
        s = generate(store, params, progress=progress)
    print(f"  generated in {s.seconds:.0f} s ({s.events / s.seconds:,.0f} events/s)", flush=True)
    return open_store(str(path))


def pg_url(base: str, database: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def pg_store(params: Params, base: str, regenerate: bool) -> SqlStore:
    url = pg_url(base, PG_DATABASE)
    with psycopg.connect(base, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone()
        if exists and not regenerate:
            store = open_store(url)
            if holds(store, params):
                print(f"  reusing database {PG_DATABASE}", flush=True)
                return store
            store.close()
        if exists:
            admin.execute(f"DROP DATABASE {PG_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {PG_DATABASE}")
    print(f"  generating database {PG_DATABASE} ...", flush=True)
    with open_store(url) as store:
        s = generate(store, params, progress=progress)
    print(f"  generated in {s.seconds:.0f} s ({s.events / s.seconds:,.0f} events/s)", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        print(f"  VACUUM ANALYZE in {time.perf_counter() - t:.0f} s", flush=True)
    return open_store(url)


def drop_pg(base: str) -> None:
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


class Timer:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.times: dict[str, list[float]] = defaultdict(list)

    async def get(self, label: str, path: str) -> tuple[float, Any]:
        r = await self.client.get(path)
        if r.status_code != 200:
            raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
        ms = app_duration(r.headers.get("server-timing"))
        assert ms is not None, path
        self.times[label].append(ms)
        return ms, r.json()


def pick_runs(store: SqlStore, n: int, rng: random.Random) -> list[str]:
    ids = [r[0] for r in store.db.read("SELECT run_id FROM runs ORDER BY run_id")]
    live = [m.run_id for m in store.runs.list_runs(states=["running", "suspended"], limit=1000).runs]
    k_live = min(len(live), n // 5)
    return rng.sample(live, k_live) + rng.sample(ids, min(len(ids), n - k_live))


async def bench_store(store: SqlStore, iterations: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    app = create_app(store, config=Config.default(), log_retention=None)
    workflows = store.runs.workflows()
    some = rng.sample(store.runs.list_runs(limit=1000).runs, 10)
    searches = [workflows[0].split("-")[0], some[0].run_id[:8], "MemoryError", "no-such-text"]
    run_ids = pick_runs(store, iterations, rng)
    pages: dict[str, list[float]] = defaultdict(list)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            t = Timer(client)

            async def overview_page(i: int, cold: bool = False) -> float:
                tag = " (first, cold)" if cold else ""
                total, _ = await t.get(f"GET /api/v1/overview{tag}", "/api/v1/overview")
                variant = i % 5
                if variant == 0:
                    ms, _ = await t.get(f"GET /api/v1/runs{tag}", "/api/v1/runs?limit=50")
                elif variant == 1:
                    wf = rng.choice(workflows)
                    ms, _ = await t.get("GET /api/v1/runs?workflow=", f"/api/v1/runs?limit=50&workflow={quote(wf)}")
                elif variant == 2:
                    ms, _ = await t.get("GET /api/v1/runs?state=failed", "/api/v1/runs?limit=50&state=failed")
                elif variant == 3:
                    ms, _ = await t.get("GET /api/v1/runs?state=running", "/api/v1/runs?limit=50&state=running")
                else:
                    q = searches[(i // 5) % len(searches)]
                    ms, _ = await t.get(f"GET /api/v1/runs?q= ({q})", f"/api/v1/runs?limit=50&q={quote(q)}")
                return total + ms

            pages["overview, first after the start"].append(await overview_page(0, cold=True))
            for i in range(iterations):
                pages["overview"].append(await overview_page(i))
            for rid in run_ids:
                for visit in ("first visit", "again"):
                    total = 0.0
                    base = f"/api/v1/runs/{quote(rid, safe='')}"
                    ms, run = await t.get(f"GET /api/v1/runs/{{id}} ({visit})", base)
                    total += ms
                    # as run.js and run_logs.js: the run (its faults inside), its newest 500 log entries,
                    # the alerts, and below the four resource series
                    total += (
                        await t.get(f"GET /api/v1/runs/{{id}}/logs ({visit})", base + "/logs?order=desc&limit=500")
                    )[0]
                    total += (await t.get(f"GET /api/v1/alerts ({visit})", "/api/v1/alerts"))[0]
                    since = run["start_time"] or time.time() - 3600
                    until = run["end_time"] or time.time()
                    for metric in METRICS:
                        total += (
                            await t.get(
                                f"GET /api/v1/metrics/series ({visit})",
                                f"/api/v1/metrics/series?scope=run:{quote(rid)}&metric={metric}"
                                f"&since={since}&until={until + 1}",
                            )
                        )[0]
                    pages[f"run page, {visit}"].append(total)
    return {**t.times, **{f"PAGE {k}": v for k, v in pages.items()}}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def report(name: str, times: dict[str, list[float]]) -> float:
    print(f"  {'requests (server time, ms)':<46} {'n':>5} {'p50':>8} {'p95':>8} {'max':>8}")
    worst = 0.0
    for label, values in times.items():
        if label.startswith("PAGE "):
            continue
        print(
            f"  {label:<46} {len(values):>5} {statistics.median(values):>8.1f} {pct(values, 0.95):>8.1f} "
            f"{max(values):>8.1f}"
        )
    for label, values in times.items():
        if not label.startswith("PAGE "):
            continue
        p95 = pct(values, 0.95)
        if len(values) > 1:  # the first page after the start is one page: shown, not a p95
            worst = max(worst, p95)
        print(
            f"  {label[5].upper() + label[6:] + ' (sum)':<46} {len(values):>5} {statistics.median(values):>8.1f} "
            f"{p95:>8.1f} {max(values):>8.1f}"
        )
    print(f"  {name}: slowest page p95 {worst:.1f} ms (goal < {GOAL_MS:.0f} ms)", flush=True)
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="10,000 runs, 1,000,000 events, 50 visits")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/flowsight-bench"))
    ap.add_argument("--regenerate", action="store_true", help="make the data again even if it is there")
    ap.add_argument(
        "--pg",
        default=os.environ.get("FLOWSIGHT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server (any database on it) to make the bench database on",
    )
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--keep-pg", action="store_true", help=f"keep the database {PG_DATABASE} for the next run")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.events, args.iterations = 10_000, 1_000_000, 50
    params = Params(runs=args.runs, events=args.events, seed=args.seed)
    print(
        f"dashboard bench: {params.runs:,} runs, {params.events:,} events, {params.total_logs:,} log lines, "
        f"{args.iterations} overview loads and {args.iterations} run pages (each visited twice)",
        flush=True,
    )
    worst: list[tuple[float, str]] = []
    if not args.no_sqlite:
        print("sqlite:", flush=True)
        store = sqlite_store(params, args.cache_dir, args.regenerate)
        try:
            kept = dataset_of(store) or {}
            print(f"  data made {(time.time() - kept.get('now', time.time())) / 3600:.1f} h ago", flush=True)
            worst.append((report("sqlite", asyncio.run(bench_store(store, args.iterations, args.seed))), "sqlite"))
        finally:
            store.close()
    if not args.no_pg:
        print("postgresql:", flush=True)
        store = pg_store(params, args.pg, args.regenerate)
        try:
            worst.append(
                (report("postgresql", asyncio.run(bench_store(store, args.iterations, args.seed))), "postgresql")
            )
        finally:
            store.close()
            if not args.keep_pg:
                drop_pg(args.pg)
    p95, where = max(worst)
    print(f"ratio p95/goal = {p95 / GOAL_MS:.2f} (slowest page p95 {p95:.1f} ms on {where}; goal {GOAL_MS:.0f} ms)")


if __name__ == "__main__":
    main()
