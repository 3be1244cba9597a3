"""MetricsCollector against real child processes (``python -c`` scripts), each
its own "run": a busy loop, 200 MB held, 50 MB written, a grandchild, an
exit; every reading must land on the right run. Waits poll a condition with a
generous deadline; nothing asserts on how long anything took."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from flowsight.collect.resources import MetricsCollector
from flowsight.model.performance import ResourceUsage

MB = 1_000_000
DEADLINE = 30.0


class Child:
    """A ``python -c`` child in a session of its own (so that killing the
    group takes its children too), talked to by lines on stdin and stdout."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._buf = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def expect(self) -> str:
        """The next line the child prints (within the deadline)."""
        assert self.proc.stdout is not None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + DEADLINE
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0, f"child {self.pid} printed no line within {DEADLINE} s"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 4096)
                assert chunk, f"child {self.pid} exited (status {self.proc.wait()})"
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    started: list[Child] = []

    def start(code: str, *args: str) -> Child:
        started.append(Child(code, *args))
        return started[-1]

    try:
        yield start
    finally:
        for child in started:
            child.kill()


IDLE = """
    import sys
    print("ready")
    sys.stdin.readline()
"""
BUSY = """
    print("ready")
    while True:
        pass
"""


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE} s: {what}"
        time.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


#: what a busy-looping run must read, in percent of a core: over half on a quiet machine; on a
#: loaded one (the suite's two workers and two CPU burners on two cores) it gets about 40%
BUSY_READS = 25.0


def until_busy(
    collector: MetricsCollector,
    runs: dict[str, int],
    run: str,
    busy_pid: int,
) -> dict[str, ResourceUsage]:
    """Samples until ``run`` reads above half a core: after a first sample,
    each next one once the busy process has used another 0.5 s of CPU (two
    samples on a quiet machine; a few more when other work takes the cores)."""
    collector.sample(runs)
    deadline = time.monotonic() + DEADLINE
    samples = 0
    while True:
        used = cpu_seconds(busy_pid)
        wait_until(lambda: cpu_seconds(busy_pid) >= used + 0.5, "the busy process uses 0.5 s of CPU")
        _, trees = collector.sample(runs)
        samples += 1
        reads = trees[run].cpu_percent
        if reads > 50 or (samples >= 3 and reads > BUSY_READS) or time.monotonic() > deadline:
            return trees


def test_a_busy_run_reads_above_half_a_core_and_an_idle_one_stays_low(spawn: Callable[..., Child]) -> None:
    busy, idle = spawn(BUSY), spawn(IDLE)
    busy.expect(), idle.expect()
    collector = MetricsCollector()
    trees = until_busy(collector, {"run-busy": busy.pid, "run-idle": idle.pid}, "run-busy", busy.pid)
    assert trees["run-busy"].cpu_percent > BUSY_READS
    assert trees["run-idle"].cpu_percent < 10
    assert trees["run-busy"].processes == trees["run-idle"].processes == 1
    assert trees["run-busy"].net_sent_bytes_per_s is None  # per process, the kernel does not say


def test_a_run_holding_200_mb_reads_it_as_its_rss_and_the_others_do_not(spawn: Callable[..., Child]) -> None:
    big = spawn("""
        import sys
        b = bytearray(200 * 1024 * 1024)
        for i in range(0, len(b), 4096):  # touch every page: untouched ones are not resident
            b[i] = 1
        print("ready")
        sys.stdin.readline()
    """)
    idle = spawn(IDLE)
    big.expect(), idle.expect()
    collector = MetricsCollector()
    runs = {"run-big": big.pid, "run-idle": idle.pid}
    for _ in range(2):
        _, trees = collector.sample(runs)
    assert trees["run-big"].memory_bytes > 190 * 1024 * 1024
    assert trees["run-idle"].memory_bytes < 100 * 1024 * 1024
    assert trees["run-big"].memory_percent is not None and trees["run-big"].memory_percent > 0
    assert trees["run-big"].threads is not None and trees["run-big"].threads >= 1
    assert trees["run-big"].open_files is not None and trees["run-big"].open_files >= 3  # stdin, stdout, stderr


def block_writes_counted(directory: Path) -> bool:
    """Whether the kernel counts this process's writes to ``directory`` as
    storage writes (not on tmpfs, nor where /proc/self/io is not readable)."""
    me = psutil.Process()
    try:
        before = me.io_counters().write_bytes
    except (AttributeError, psutil.AccessDenied):
        return False
    probe = directory / "probe"
    with open(probe, "wb") as f:
        f.write(b"x" * (1 << 20))
        f.flush()
        os.fsync(f.fileno())
    probe.unlink()
    return bool(me.io_counters().write_bytes - before >= 1 << 20)


def test_a_run_writing_50_mb_reads_it_as_its_disk_writes(spawn: Callable[..., Child], tmp_path: Path) -> None:
    if not block_writes_counted(tmp_path):
        pytest.skip(f"writes to {tmp_path} are not counted as storage writes here (tmpfs or /proc/PID/io denied)")
    writer = spawn(
        """
        import os, sys
        print("ready")
        sys.stdin.readline()
        with open(sys.argv[1], "wb") as f:
            for _ in range(50):
                f.write(b"x" * 1_000_000)
            f.flush()
            os.fsync(f.fileno())
        print("done")
        sys.stdin.readline()  # alive until killed: an exited process's counters are gone
    """,
        str(tmp_path / "out.bin"),
    )
    idle = spawn(IDLE)
    writer.expect(), idle.expect()
    collector = MetricsCollector()
    runs = {"run-writer": writer.pid, "run-idle": idle.pid}
    _, first = collector.sample(runs)
    writer.send("go")
    assert writer.expect() == "done"
    _, second = collector.sample(runs)

    def written(run: str) -> float:
        return second[run].disk_write_bytes_per_s * (second[run].ts - first[run].ts)

    assert written("run-writer") >= 50 * MB
    assert written("run-idle") < 1 * MB


GRANDCHILD = """
b = bytearray(100 * 1024 * 1024)
for i in range(0, len(b), 4096):
    b[i] = 1
print("ready", flush=True)
while True:
    pass
"""


def test_a_grandchild_counts_for_the_root_of_its_run(spawn: Callable[..., Child]) -> None:
    parent = spawn(
        """
        import subprocess, sys
        g = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
        g.stdout.readline()
        print(g.pid)
        sys.stdin.readline()
    """,
        GRANDCHILD,
    )
    idle = spawn(IDLE)
    grandchild = int(parent.expect())
    idle.expect()
    collector = MetricsCollector()
    runs = {"run-family": parent.pid, "run-idle": idle.pid}
    trees = until_busy(collector, runs, "run-family", grandchild)
    family = trees["run-family"]
    assert family.processes == 2 and trees["run-idle"].processes == 1
    assert family.cpu_percent > BUSY_READS and trees["run-idle"].cpu_percent < 10
    assert family.memory_bytes > 100 * 1024 * 1024 > trees["run-idle"].memory_bytes


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_a_run_whose_process_exited_reads_as_gone(spawn: Callable[..., Child], reaped: bool) -> None:
    ending, idle = spawn(IDLE), spawn(IDLE)
    ending.expect(), idle.expect()
    collector = MetricsCollector()
    runs = {"run-ending": ending.pid, "run-idle": idle.pid}
    _, trees = collector.sample(runs)
    assert set(trees) == {"run-ending", "run-idle"}
    ending.send("bye")
    if reaped:
        ending.proc.wait(DEADLINE)
    else:
        wait_until(lambda: psutil.Process(ending.pid).status() == psutil.STATUS_ZOMBIE, "the child is a zombie")
    _, trees = collector.sample(runs)
    assert set(trees) == {"run-idle"}
    assert collector.sample_tree(ending.pid) is None
    assert collector.sample_tree(idle.pid) is not None


def test_a_run_no_longer_asked_for_starts_over(spawn: Callable[..., Child]) -> None:
    busy = spawn(BUSY)
    busy.expect()
    collector = MetricsCollector()
    trees = until_busy(collector, {"run-busy": busy.pid}, "run-busy", busy.pid)
    assert trees["run-busy"].cpu_percent > BUSY_READS
    collector.sample({})
    _, trees = collector.sample({"run-busy": busy.pid})
    assert trees["run-busy"].cpu_percent == 0.0  # a first sample again: nothing to compare with


def test_the_host_sample_is_plausible() -> None:
    collector = MetricsCollector(hostname="web-1")
    assert str(collector.host) == "host:web-1"
    first = collector.sample_host()
    assert first.disk_read_bytes_per_s == first.disk_write_bytes_per_s == 0.0
    assert first.net_sent_bytes_per_s == first.net_recv_bytes_per_s == 0.0
    now = time.time()
    wait_until(lambda: time.time() > now + 0.2, "time passes")
    host = collector.sample_host()
    total = psutil.virtual_memory().total
    assert 0.0 <= host.cpu_percent <= 100.0
    assert 0 < host.memory_bytes < total
    assert host.memory_percent is not None and 0.0 < host.memory_percent < 100.0
    for rate in (
        host.disk_read_bytes_per_s,
        host.disk_write_bytes_per_s,
        host.net_sent_bytes_per_s,
        host.net_recv_bytes_per_s,
    ):
        assert rate is not None and rate >= 0.0
    assert host.processes > 1 and host.ts > first.ts


def test_the_rates_are_per_second_of_the_injected_clock(spawn: Callable[..., Child]) -> None:
    busy = spawn(BUSY)
    busy.expect()
    now = [1_000.0]
    collector = MetricsCollector(clock=lambda: now[0])
    collector.sample({"run": busy.pid})
    used = cpu_seconds(busy.pid)
    wait_until(lambda: cpu_seconds(busy.pid) >= used + 0.3, "the busy process uses 0.3 s of CPU")
    now[0] += 100.0  # by this clock, 0.3 s of CPU in 100 s
    host, trees = collector.sample({"run": busy.pid})
    assert host.ts == trees["run"].ts == 1_100.0
    assert 0.2 < trees["run"].cpu_percent < 5.0


def test_children_that_live_and_end_between_two_samples_are_the_trees_cpu(spawn: Callable[..., Child]) -> None:
    """``make``, a shell loop: each child ends before the next sample and is
    never seen alive; its parent, having waited for it, counts its CPU."""
    parent = spawn(f"""
        import subprocess, sys
        print('ready', flush=True)
        for line in sys.stdin:
            # a child busy for about 0.3 s of CPU, waited for
            subprocess.run([{sys.executable!r}, '-c', 'import time\\nend = time.process_time() + 0.3\\n'
                            'while time.process_time() < end: pass'], check=True)
            print('done', flush=True)
    """)
    parent.expect()
    collector = MetricsCollector()
    _, first = collector.sample({"run": parent.pid})
    for _ in range(3):  # 0.9 s of CPU in all, by children the sampler never sees
        parent.send("go")
        assert parent.expect() == "done"
    _, later = collector.sample({"run": parent.pid})
    elapsed = later["run"].ts - first["run"].ts
    seen = later["run"].cpu_percent * elapsed / 100  # CPU seconds the sample says the tree used
    assert seen >= 0.8, f"{later['run'].cpu_percent:.0f}% over {elapsed:.2f} s: {seen:.2f} CPU s, not ~0.9"
    assert later["run"].processes == 1  # none of the children was there to be seen
