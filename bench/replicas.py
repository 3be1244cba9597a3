"""Replicas on one PostgreSQL: events/s ingested through ``POST /api/v1/events``
by 1 and by 3 ``flowsight serve`` replicas on the same database (batches of
500, a load process per replica), against PostgreSQL's own ceiling for the
same rows: ``COPY`` of the same events into the same ``events`` table, in the
same run.

Each replica commits what it is sent (the events, the runs' states and their
transitions) before it answers; with three, they take turns at the commit
(writers of events take turns so seqs commit in their order) and share the
machine's CPUs with PostgreSQL and the load. Goals: 3 replicas >= 0.9x one
replica's rate (coordination costs nothing) and >= 0.5x the COPY ceiling.
The ratio of 3 replicas to the COPY ceiling is printed last.

Run: ``.venv/bin/python bench/replicas.py`` (``--events``, ``--dsn``). Needs
PostgreSQL (default: ``$FLOWSIGHT_TEST_PG_DSN`` or the test database).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import uuid

import psycopg

sys.path.insert(0, os.path.dirname(__file__))

from ingest_http import BATCH, events_json, free_port, post_all, run_loaders, start_server, stop  # noqa: E402

from flowsight.store import open_store  # noqa: E402

DSN = os.environ.get("FLOWSIGHT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def loader(port: int, proc: int, n: int, go: object, out: object) -> None:
    bodies = [json.dumps(events_json(proc, i, BATCH)).encode() for i in range(0, n, BATCH)]
    post_all(port, "/api/v1/events", bodies, "application/json", go, out)  # type: ignore[arg-type]


class Schema:
    """A fresh schema of the database, migrated by flowsight; dropped after."""

    def __init__(self, dsn: str) -> None:
        self.name = f"fs_bench_{uuid.uuid4().hex[:10]}"
        self.base = dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.name}")
        sep = "&" if "?" in dsn else "?"
        self.url = f"{dsn}{sep}options=-csearch_path%3D{self.name}"
        open_store(self.url).close()  # migrated

    def drop(self) -> None:
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {self.name} CASCADE")


def through_replicas(dsn: str, replicas: int, per_replica: int) -> float:
    """Events/s through ``replicas`` servers, a load process each, all posting at once."""
    schema = Schema(dsn)
    servers = []
    try:
        ports = [free_port() for _ in range(replicas)]
        for i, port in enumerate(ports):
            argv = [sys.executable, "-m", "flowsight.cli.main", "--db", schema.url, "serve", "--port", str(port),
                    "--replica-id", f"r{i}"]  # fmt: skip
            servers.append(start_server(argv, port))
        # the loads differ per replica: a load process's runs are its own (as senders' are)
        ends, start = run_loaders(loader, [(port, p, per_replica) for p, port in enumerate(ports)])
        rate = replicas * per_replica / (max(ends) - start)  # type: ignore[type-var, operator]
        with psycopg.connect(schema.url) as conn:
            stored = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        assert stored == (replicas * per_replica,), f"{stored} events stored of {replicas * per_replica}"
        return rate
    finally:
        for s in servers:
            stop(s)
        schema.drop()


def copy_ceiling(dsn: str, n: int) -> float:
    """Rows/s of COPY of the same events (their columns as the store keeps them) into ``events``."""
    schema = Schema(dsn)
    try:
        rows = []
        for p in range(3):
            for ev in events_json(p, 0, n // 3):
                attrs = "{}"
                rows.append((ev["id"], ev["ts"], ev["kind"], ev["workflow"], ev["run_id"], ev.get("step"), attrs))
        buf = io.StringIO()
        for r in rows:
            buf.write("\t".join("\\N" if v is None else str(v) for v in r) + "\n")
        text = buf.getvalue()
        with psycopg.connect(schema.url) as conn:
            t = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy("COPY events (id, ts, kind, workflow, run_id, step, attrs) FROM STDIN") as cp,
            ):
                cp.write(text)
            conn.commit()
            return len(rows) / (time.perf_counter() - t)
    finally:
        schema.drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=150_000, help="events in all, each round (multiple of 1,500)")
    ap.add_argument("--dsn", default=DSN)
    args = ap.parse_args()
    total = args.events // (3 * BATCH) * 3 * BATCH
    one = through_replicas(args.dsn, 1, total)
    three = through_replicas(args.dsn, 3, total // 3)
    ceiling = copy_ceiling(args.dsn, total)
    print(f"{total:,} events a round, batches of {BATCH}, PostgreSQL ({args.dsn.split('@')[-1]})")
    print(f"COPY of the same rows into events: {ceiling:,.0f} rows/s")
    print(f"1 replica:  {one:,.0f} events/s")
    print(f"3 replicas: {three:,.0f} events/s ({three / one:.2f}x one replica)")
    print(f"ratio 3 replicas / COPY ceiling = {three / ceiling:.2f}")


if __name__ == "__main__":
    main()
