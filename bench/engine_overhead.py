"""What the Celery integration adds to a task: no-op tasks through a real
worker (solo pool) on this machine's Redis, with and without
``import flowsight.integrations.celery`` in the app, in the same run.

Each round sends ``--tasks`` no-op tasks at once and times from the first
send until the worker has run them all (each task increments a Redis
counter, the same for both). The worker with the integration reports every
task as a run (started, step started, step completed, completed) into a
SQLite store through the SDK's background writer. Rounds alternate between
the two workers, each started once; the medians are compared.

    .venv/bin/python bench/engine_overhead.py [--tasks 2000] [--rounds 5] [--broker redis://127.0.0.1:6379/13]

The ratio printed last is with/without (goal ≤ 1.1): the median of the
rounds' ratios, each round of one worker set beside the same round of the
other (the machine's other work falls in both; on a shared machine one
round's ratio swings by ±0.1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

APP = """
import redis
from celery import Celery
{setup}

app = Celery("noop", broker="{broker}")
app.conf.task_default_queue = "{queue}"
app.conf.broker_connection_retry_on_startup = True
counter = redis.Redis.from_url("{broker}")


@app.task
def noop(key):
    counter.incr(key)
"""


class Worker:
    def __init__(self, root: Path, broker: str, integrated: bool, server: str | None = None) -> None:
        self.dir = root / ("with" if integrated else "without")
        self.dir.mkdir()
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        setup = "import flowsight.integrations.celery" if integrated else ""
        (self.dir / "noop.py").write_text(APP.format(broker=broker, queue=self.queue, setup=setup))
        self.db = self.dir / "flowsight.db"
        env = {**os.environ, "FLOWSIGHT_DATABASE_URL": str(self.db), "PYTHONPATH": str(self.dir)}
        if server is not None:
            env["FLOWSIGHT_URL"] = server
            env["FLOWSIGHT_SPOOL_DIR"] = str(self.dir / "spool")
        self.log = self.dir / "worker.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "noop", "worker", "-P", "solo", "-l", "warning",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=self.dir, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        sys.path.insert(0, str(self.dir))
        import importlib

        self.module = importlib.import_module("noop")
        sys.modules.pop("noop")
        sys.path.remove(str(self.dir))
        self.module.app.control  # noqa: B018 - connect
        time.sleep(3.0)
        assert self.proc.poll() is None, self.log.read_text()

    def cpu(self) -> float:
        """The worker process's CPU seconds so far (its SDK threads included)."""
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def round(self, n: int) -> tuple[float, float]:
        """Wall seconds until the worker has run ``n`` tasks, and its CPU seconds for them."""
        key = f"bench:{uuid.uuid4().hex}"
        counter = self.module.counter
        cpu = self.cpu()
        t = time.perf_counter()
        for _ in range(n):
            self.module.noop.apply_async((key,), queue=self.queue)
        while int(counter.get(key) or 0) < n:
            time.sleep(0.005)
        took = time.perf_counter() - t
        time.sleep(0.5)  # the SDK's writer sends what the last tasks queued (its CPU is the task's too)
        used = self.cpu() - cpu
        counter.delete(key)
        return took, used

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def serve(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A flowsight serve on a free port, over a SQLite store in ``root``."""
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowsight", "--db", str(root / "server.db"), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("flowsight serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    ap.add_argument(
        "--to",
        choices=("server", "store"),
        default="server",
        help="where the worker reports: a flowsight serve on this machine (default, the set-up docs/engines.md "
        "gives), or a SQLite store it writes itself",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        server = serve(Path(d)) if args.to == "server" else None
        url = f"http://127.0.0.1:{server[1]}" if server is not None else None
        without = Worker(Path(d), args.broker, integrated=False)
        with_ = Worker(Path(d), args.broker, integrated=True, server=url)
        try:
            without.round(200)  # warm both
            with_.round(200)
            a: list[tuple[float, float]] = []
            b: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                a.append(without.round(args.tasks))
                b.append(with_.round(args.tasks))
        finally:
            without.stop()
            with_.stop()
        from flowsight.store import open_store

        if server is not None:
            time.sleep(2.0)  # what the worker sent, committed
            server[0].terminate()
            server[0].wait(30)
        with open_store(str(Path(d) / "server.db" if server is not None else with_.db)) as store:
            stored = store.runs.count_events()
    wa, wb = statistics.median(x[0] for x in a), statistics.median(x[0] for x in b)
    ca, cb = statistics.median(x[1] for x in a), statistics.median(x[1] for x in b)
    # each round of one worker beside the other's same round: what the machine did meanwhile is in both
    paired = sorted(y[1] / x[1] for x, y in zip(a, b, strict=True))
    n = args.tasks
    print(
        f"{n:,} no-op tasks a round, {args.rounds} rounds, solo worker, broker {args.broker}, reporting to a {args.to}"
    )
    print(f"without the integration: {wa:.2f} s a round, worker CPU {ca / n * 1e6:.0f} µs a task")
    print(
        f"with it:                 {wb:.2f} s a round, worker CPU {cb / n * 1e6:.0f} µs a task; {stored:,} events stored"
    )
    print(
        f"wall time with/without = {wb / wa:.2f} (the {args.to}, the broker, the sender and the worker share the cores)"
    )
    print(f"each round's with/without, sorted: {' '.join(f'{r:.2f}' for r in paired)}")
    print(f"ratio worker CPU a task with/without (the median round) = {statistics.median(paired):.2f}")


if __name__ == "__main__":
    main()
