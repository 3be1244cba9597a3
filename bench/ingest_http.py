"""HTTP ingest throughput against what the store takes directly, same run.

1. Events/s through ``POST /api/v1/events`` of a real ``flowsight serve``
   (SQLite), in batches of 500 from separate load processes, against the same
   rows written straight into the same kind of store by a plain script
   (``Store.write_events``, batches of 500). Goals: >= 0.5x that ceiling and
   >= 50,000 events/s.
2. Single-event POSTs/s against a bare Starlette endpoint (reads the body,
   answers ``{}``) under the same uvicorn settings, same load (2 processes x 8
   keep-alive connections: concurrent senders, as a fleet of scripts would be;
   concurrent events share commits). Goal: >= 0.7.

Run: ``.venv/bin/python bench/ingest_http.py`` (``--events``, ``--procs``, ``--seconds``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from flowsight.model.runs.ids import new_id
from flowsight.store import open_store

BATCH = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def events_json(proc: int, start: int, n: int) -> list[dict[str, object]]:
    out = []
    for i in range(start, start + n):
        run = f"p{proc}-run-{i // 50}"
        j = i % 50
        kind = "started" if j == 0 else "completed" if j == 49 else ("step_started" if j % 2 else "step_completed")
        ev: dict[str, object] = {
            "id": f"p{proc}-{i:09d}",
            "ts": 1.7e9 + i / 1000,
            "kind": kind,
            "workflow": f"wf-{proc}",
            "run_id": run,
        }
        if kind.startswith("step"):
            ev["step"] = f"step-{(j - 1) // 2}"
        out.append(ev)
    return out


def post_all(port: int, path: str, bodies: list[bytes], ctype: str, go: mp.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """POST each body on one keep-alive connection once ``go`` is set; put the time it ended on ``out``."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    go.wait()
    for body in bodies:
        conn.request("POST", path, body, {"Content-Type": ctype})
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, data[:300]
    out.put(time.perf_counter())


def batch_loader(port: int, proc: int, n: int, go: mp.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    bodies = [json.dumps(events_json(proc, i, BATCH)).encode() for i in range(0, n, BATCH)]
    post_all(port, "/api/v1/events", bodies, "application/json", go, out)


def single_loader(
    port: int,
    path: str,
    proc: int,
    seconds: float,
    conns: int,
    go: mp.Event,  # type: ignore[type-arg]
    out: mp.Queue,
) -> None:  # type: ignore[type-arg]
    """``conns`` keep-alive connections (one thread each), one event per POST."""
    counts = [0] * conns

    def worker(k: int) -> None:
        # each event gets its id when it is sent, as the SDK gives one when
        # the event happens (time-sortable: see flowsight.model.runs.ids)
        tails = [
            json.dumps({**e, "id": ""})[len('{"id": ""') :].encode()
            for e in events_json(proc * 100 + k + 1000, 0, 5_000)
        ]
        conn = http.client.HTTPConnection("127.0.0.1", port)
        go.wait()
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            body = b'{"id": "' + new_id().encode() + b'"' + tails[n % len(tails)]
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            n += 1
        counts[k] = n

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(sum(counts))


def start_server(argv: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server on port {port} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


def run_loaders(target: object, args_for: list[tuple[object, ...]]) -> tuple[list[object], float]:
    go, out = mp.Event(), mp.Queue()
    procs = [mp.Process(target=target, args=(*a, go, out)) for a in args_for]  # type: ignore[arg-type]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let them build their bodies
    start = time.perf_counter()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return results, start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=8, help="connections per load process for single-event POSTs")
    args = ap.parse_args()
    per = args.events // args.procs // BATCH * BATCH
    total = per * args.procs
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # ceiling: the same rows straight into the store
        store = open_store(str(tmp / "direct.db"))
        from flowsight.model.runs.events import parse_events

        batches = [parse_events(events_json(p, i, BATCH)) for p in range(args.procs) for i in range(0, per, BATCH)]
        t = time.perf_counter()
        for b in batches:
            store.runs.write_events([e for e in b if not isinstance(e, Exception)])
        direct = total / (time.perf_counter() - t)
        store.close()

        port = free_port()
        server = start_server(
            [sys.executable, "-m", "flowsight.cli.main", "--db", str(tmp / "http.db"), "serve", "--port", str(port)],
            port,
        )
        try:
            ends, start = run_loaders(batch_loader, [(port, p, per) for p in range(args.procs)])
            http_rate = total / (max(ends) - start)  # type: ignore[type-var, operator]
            with open_store(str(tmp / "http.db")) as check:
                assert check.runs.count_events() == total, "events went missing"
            counts, _ = run_loaders(
                single_loader, [(port, "/api/v1/events", p, args.seconds, args.conns) for p in range(args.procs)]
            )
            fs_single = sum(counts) / args.seconds  # type: ignore[arg-type]
        finally:
            stop(server)

        bport = free_port()
        bare = start_server(
            [sys.executable, os.path.join(os.path.dirname(__file__), "bare_starlette.py"), str(bport)], bport
        )
        try:
            counts, _ = run_loaders(
                single_loader, [(bport, "/ingest", p, args.seconds, args.conns) for p in range(args.procs)]
            )
            bare_single = sum(counts) / args.seconds  # type: ignore[arg-type]
        finally:
            stop(bare)

    print(f"direct into the store (write_events, batches of {BATCH}): {direct:,.0f} events/s")
    print(f"HTTP POST /api/v1/events, batches of {BATCH}, {args.procs} load processes: {http_rate:,.0f} events/s")
    print(
        f"single-event POSTs, {args.procs} processes x {args.conns} connections: "
        f"flowsight {fs_single:,.0f}/s, bare Starlette {bare_single:,.0f}/s"
    )
    print(f"ratio single-event flowsight/bare starlette = {fs_single / bare_single:.2f}")
    print(f"ratio http/direct = {http_rate / direct:.2f}")


if __name__ == "__main__":
    main()
