"""The alert manager's speed and its restraint, in-process.

1. 10,000 alerts/s through ``AlertManager`` with 1,000 silences and 100
   routes: wall-clock rate sustained and the p99 of one decision (take the
   alert, route it, check silences) — goal p99 < 1 ms.
2. A flapping signal (an alert firing and resolving every 30 s for 2 hours):
   notifications sent by flowsight against a plain notify-on-every-change
   policy on the same signal — goal ratio <= 0.1.
3. A flood, against a real ``flowsight serve`` (a fresh SQLite store, or
   ``--db URL``) delivering to a webhook on 127.0.0.1: 100,000 alerts
   posted (batches of 1,000) and told, SIGTERM, a restart on that store,
   then all 100,000 resolved and told. Meanwhile another client reads
   ``/api/v1/runs`` without pause — goal p99 < 100 ms; the restart answers
   ``/healthz`` — goal < 5 s — and lists every alert. Printed last: the
   flood's alerts/s over the steady rate (the first 5,000 alerts, to a
   server holding none) — about 1 when no operation grows with the alerts
   held.

Run: ``.venv/bin/python bench/alerts.py`` (``--flood N``, ``--db URL``, ``--flood-only``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
import random
import statistics

import httpx

from flowsight.alerting.manager import AlertManager
from flowsight.model.alerts import Alert, Matcher, Silence
from flowsight.model.alerts.flapping import FlapPolicy
from flowsight.model.alerts.routing import Route


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def throughput(n_alerts: int = 150_000, rate: float = 10_000.0) -> tuple[float, float, float, int]:
    rng = random.Random(7)
    clock = Clock()
    routes = tuple(
        Route(
            f"team-{i}",
            matchers=(Matcher("workflow", "=", f"wf-{i}"),),
            group_by=("workflow",),
            group_wait=10,
            group_interval=60,
        )
        for i in range(100)
    )
    am = AlertManager(Route("default", routes=routes), clock=clock)
    t0 = clock.now
    for i in range(1000):
        m = [Matcher("workflow", "=", f"wf-{i % 150}")]
        if i % 3 == 0:
            m.append(Matcher("run", "=~", f"run-{i}.*"))
        active = i % 2 == 0
        am.add_silence(Silence(f"s{i}", tuple(m), t0 - 10 if active else t0 + 1e6, t0 + 1e7, "bench", ""))
    alerts = [
        Alert(
            {
                "alertname": rng.choice(["RunFailed", "RunStalled", "StepFailed"]),
                "workflow": f"wf-{rng.randrange(200)}",
                "run": f"run-{rng.randrange(5000)}",
            }
        )
        for _ in range(n_alerts)
    ]
    decisions = []
    notes = 0
    start = time.perf_counter()
    for i, a in enumerate(alerts):
        clock.now = t0 + i / rate
        d0 = time.perf_counter_ns()
        am.send_alert(a)
        am.muted(a, clock.now)
        decisions.append(time.perf_counter_ns() - d0)
        if i % int(rate) == 0:
            notes += len(am.tick())
    wall = time.perf_counter() - start
    decisions.sort()
    p99 = decisions[int(len(decisions) * 0.99)] / 1e6
    return n_alerts / wall, p99, statistics.median(decisions) / 1e6, notes


def flapping(hours: float = 2.0, every: float = 30.0) -> tuple[int, int]:
    clock = Clock()
    am = AlertManager(
        Route("team", group_by=("alertname",), group_wait=0, group_interval=60),
        flap_policy=FlapPolicy(max_changes=4, window=600, settle=600),
        clock=clock,
    )
    alert = Alert({"alertname": "DiskAlmostFull", "host": "db-1"})
    sent = changes = 0
    t, end, firing = clock.now, clock.now + hours * 3600, False
    next_flip = t
    while t < end:
        if t >= next_flip:
            firing = not firing
            changes += 1
            am.send_alert(alert) if firing else am.resolve(alert)
            next_flip += every
        sent += len(am.tick(t))
        t += 1.0
        clock.now = t
    # the signal stops flapping; let it settle
    for _ in range(3600):
        t += 1.0
        clock.now = t
        sent += len(am.tick(t))
    return sent, changes


# ---- the flood, against a real server -------------------------------------------------
BATCH = 1_000
STEADY = 5_000


class Receiver(ThreadingHTTPServer):
    """A webhook on 127.0.0.1 that counts the alerts it is told, by status."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.told: dict[str, set[str]] = {"firing": set(), "resolved": set()}
        self.lock = threading.Lock()


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            for a in body["alerts"]:
                self.server.told[a["status"]].add(a["labels"]["i"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def probe(url: str, stop: Any, out: Any) -> None:
    """Read ``/api/v1/runs`` without pause until ``stop`` is set; put the
    latencies in ``out``. A process of its own: the bench's own work (the
    receiver parsing what it is told, the alerts' JSON) must not delay it."""
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            t = time.perf_counter()
            client.get("/api/v1/runs").raise_for_status()
            latencies.append(time.perf_counter() - t)
    out.put(latencies)


class Prober:
    """:func:`probe` in another process, for as long as a ``with`` block."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []

    def __enter__(self) -> Prober:
        self._stop, self._out = mp.Event(), mp.Queue()
        self._proc = mp.Process(target=probe, args=(self.url, self._stop, self._out), daemon=True)
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.latencies = self._out.get(timeout=120)
        self._proc.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(db: str, config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """A ``flowsight serve``; its URL and the seconds until ``/healthz`` answered."""
    port = free_port()
    t0 = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowsight.cli.main",
                "--db",
                db,
                "serve",
                "--port",
                str(port),
                "--config",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.02)


def post(url: str, name: str, n: int, *, resolved: bool = False) -> float:
    """Post ``n`` alerts named ``name`` (resolved: with an end that has passed); the seconds it took."""
    end = time.time() + (-1 if resolved else 3600)
    items = [{"labels": {"alertname": name, "i": f"{name}-{i}"}, "ends_at": end} for i in range(n)]
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as c:
        for i in range(0, n, BATCH):
            c.post("/api/v1/alerts", json=items[i : i + BATCH]).raise_for_status()
    return time.perf_counter() - t0


def wait(what: str, check: object, timeout: float = 900.0) -> float:
    t0 = time.perf_counter()
    while not check():  # type: ignore[operator]
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)
    return time.perf_counter() - t0


def flood(n: int, db: str | None) -> float:
    """Prints the flood's figures; returns the ratio flood/steady alerts/s."""
    tmp = Path(tempfile.mkdtemp(prefix="flowsight-bench-alerts-"))
    db = db or str(tmp / "flowsight.db")
    hook = Receiver()
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    config = tmp / "flowsight.toml"
    config.write_text(f"""
[alerting.route]
receiver = "hook"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "1s"

[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{hook.server_address[1]}/"
timeout = "60s"
""")
    log = tmp / "serve.log"
    proc, url, _ = serve(db, config, log)
    steady = post(url, "Steady", STEADY)
    with Prober(url) as first:
        posted = post(url, "Flood", n)
        told = wait("every alert told firing", lambda: len(hook.told["firing"]) >= STEADY + n)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(600)
    stopped = time.perf_counter() - t0
    proc, url, up = serve(db, config, log)
    with httpx.Client(base_url=url, timeout=600) as c:
        listed = len(c.get("/api/v1/alerts").json()["alerts"])
    restored = time.perf_counter() - t0 - stopped
    with Prober(url) as second:
        resolved = post(url, "Flood", n, resolved=True)
        told_resolved = wait("every alert told resolved", lambda: len(hook.told["resolved"]) >= n)
    with httpx.Client(base_url=url, timeout=600) as c:
        left = len(c.get("/api/v1/alerts").json()["alerts"])
    proc.send_signal(signal.SIGTERM)
    proc.wait(600)
    hook.shutdown()

    lat = sorted(first.latencies + second.latencies)
    p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
    flood_rate, steady_rate = 2 * n / (posted + resolved), STEADY / steady
    print(
        f"flood on {'PostgreSQL' if db.startswith('postgresql') else 'SQLite'}: {n:,} alerts posted in "
        f"{posted:.1f} s, all told firing {told:.1f} s later; resolved in {resolved:.1f} s, all told "
        f"{told_resolved:.1f} s later; {left} alerts left (the {STEADY:,} steady ones)"
    )
    print(
        f"/api/v1/runs during the flood: {len(lat)} reads, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {lat[-1] * 1000:.0f} ms (goal p99 < 100 ms)"
    )
    print(
        f"SIGTERM with {n + STEADY:,} alerts held: exit {rc} after {stopped:.1f} s; restart on that store: "
        f"/healthz in {up:.1f} s (goal < 5 s), {listed:,} alerts listed {restored:.1f} s after the start"
    )
    print(f"alerts/s over HTTP: flood {flood_rate:,.0f}, steady {steady_rate:,.0f} (the first {STEADY:,})")
    return flood_rate / steady_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood", type=int, default=100_000, help="alerts in the flood (default 100,000)")
    ap.add_argument("--db", help="the store of the flood's server (default: a fresh SQLite file)")
    ap.add_argument("--flood-only", action="store_true", help="only the flood")
    args = ap.parse_args()
    if not args.flood_only:
        rate, p99, p50, notes = throughput()
        print(f"alerts through the manager: {rate:,.0f}/s sustained (target 10,000/s), 1,000 silences, 100 routes")
        print(
            f"decision latency: p50 {p50 * 1000:.1f} us, p99 {p99 * 1000:.1f} us (goal p99 < 1000 us); "
            f"{notes} notifications"
        )
        sent, changes = flapping()
        print(
            f"flapping signal, 2 h, a change every 30 s: flowsight sent {sent} notifications; "
            f"notify-on-every-change sends {changes}"
        )
        print(f"ratio flowsight/notify-on-every-change = {sent / changes:.3f}")
    ratio = flood(args.flood, args.db)
    print(f"ratio flood/steady alerts/s = {ratio:.2f}")


if __name__ == "__main__":
    main()
