"""Fault detectors at scale: 200 HTTP and TCP checks every second, same run.

flowsight: one :class:`~flowsight.monitors.fault.FaultMonitor` with 100 HTTP
and 100 TCP detectors (``interval`` 1 s) against local servers (a uvicorn
app answering ``/health`` in its own process, and TCP listeners there too)
for ``--seconds``. The peer: the same 200 checks made as plain sequential
httpx calls (a keep-alive client) and socket connects, once a second, for
the same time. Printed: the CPU each used (share of one core, this process
only: the servers are elsewhere), the worst lateness of any scheduled check
(its start past its due time), and last the ratio of flowsight's worst
lateness to the interval. Goals: ratio <= 0.1, flowsight under 15% of one core.

Run: ``.venv/bin/python bench/detectors.py`` (``--seconds 60``, ``--http 100 --tcp 100``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time

import httpx

from flowsight.detectors.base import Schedule
from flowsight.detectors.http import HttpDetector
from flowsight.detectors.tcp import TcpDetector
from flowsight.monitors.fault import FaultMonitor

SERVER = textwrap.dedent("""
    import asyncio, sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def health(request):
        return PlainTextResponse("ok")

    async def main():
        ports = [int(p) for p in sys.argv[2:]]
        async def accept(reader, writer):
            writer.close()
        servers = [await asyncio.start_server(accept, "127.0.0.1", p, backlog=1024) for p in ports]
        app = Starlette(routes=[Route("/health", health)])
        config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                                access_log=False, backlog=2048)
        await uvicorn.Server(config).serve()

    asyncio.run(main())
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_servers(http_port: int, tcp_ports: list[int]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(http_port), *map(str, tcp_ports)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=0.5)
            for p in tcp_ports:
                socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
            return proc
        except (httpx.HTTPError, OSError):
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the local servers did not start")


def run_flowsight(url: str, tcp_ports: list[int], n_http: int, n_tcp: int, seconds: float) -> tuple[float, float, int]:
    """(CPU seconds used, worst lateness in seconds, checks made)."""
    detectors: list[HttpDetector | TcpDetector] = [
        HttpDetector(f"http-{i}", url=url, timeout=2.0) for i in range(n_http)
    ]
    detectors += [
        TcpDetector(f"tcp-{i}", host="127.0.0.1", port=tcp_ports[i % len(tcp_ports)], timeout=2.0) for i in range(n_tcp)
    ]
    monitor = FaultMonitor(
        detectors, schedules={d.name: Schedule(interval=1.0, timeout=2.0, retries=1) for d in detectors}
    )

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.monitor_faults(stop))
        await asyncio.sleep(2.0)  # warm up: clients made, first checks done
        for s in monitor.states.values():
            s.max_lateness = 0.0
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        used = time.process_time() - cpu
        stop.set()
        await task
        return used

    used = asyncio.run(main())
    states = monitor.states.values()
    bad = [s.name for s in states if s.status not in ("ok", "pending")]
    assert not bad, f"detectors not ok: {bad[:5]}"
    return used, max(s.max_lateness for s in states), sum(s.checks for s in states)


def run_sequential(url: str, tcp_ports: list[int], n_http: int, n_tcp: int, seconds: float) -> tuple[float, float, int]:
    """The peer: each second, the 200 checks one after another."""
    client = httpx.Client(timeout=2.0)
    checks = 0
    worst = 0.0
    cpu = time.process_time()
    start = time.monotonic()
    second = 0
    while second < seconds:
        due = start + second
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        for i in range(n_http + n_tcp):
            worst = max(worst, time.monotonic() - due)  # every check of this round was due at `due`
            if i < n_http:
                r = client.get(url)
                assert r.status_code == 200
            else:
                socket.create_connection(("127.0.0.1", tcp_ports[i % len(tcp_ports)]), timeout=2.0).close()
            checks += 1
        second += 1
    used = time.process_time() - cpu
    client.close()
    return used, worst, checks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--http", type=int, default=100)
    ap.add_argument("--tcp", type=int, default=100)
    args = ap.parse_args()
    http_port = free_port()
    tcp_ports = [free_port() for _ in range(10)]
    servers = start_servers(http_port, tcp_ports)
    url = f"http://127.0.0.1:{http_port}/health"
    try:
        fs_cpu, fs_late, fs_checks = run_flowsight(url, tcp_ports, args.http, args.tcp, args.seconds)
        seq_cpu, seq_late, seq_checks = run_sequential(url, tcp_ports, args.http, args.tcp, args.seconds)
    finally:
        servers.terminate()
        servers.wait(30)
    n = args.http + args.tcp
    print(f"{n} detectors ({args.http} HTTP, {args.tcp} TCP), interval 1 s, {args.seconds:g} s, {os.cpu_count()} cores")
    print(
        f"flowsight FaultMonitor: {fs_checks:,} checks, CPU {100 * fs_cpu / args.seconds:.1f}% of one core, "
        f"worst lateness {fs_late * 1000:.1f} ms"
    )
    print(
        f"sequential httpx + sockets: {seq_checks:,} checks, CPU {100 * seq_cpu / args.seconds:.1f}% of one core, "
        f"worst lateness {seq_late * 1000:.1f} ms"
    )
    print(f"ratio CPU flowsight/sequential = {fs_cpu / seq_cpu:.2f}")
    print(f"ratio worst lateness/interval = {fs_late / 1.0:.3f}")


if __name__ == "__main__":
    main()
