"""Resource samples of the host and of each run's process tree, with psutil.

`MetricsCollector.sample` takes the host and, for each run (run id -> the pid
of its root process), the root and all its descendants summed into one
`~flowsight.model.performance.ResourceUsage`. Rates (CPU, disk, network) are
per second since the previous sample of the same host or tree, by the
injected clock; the first sample of a tree has them at 0.

What counts for a tree:

- CPU: the user + system seconds each process used since the previous
  sample, summed, over the time between the samples (100 = one core). A
  process is known by its pid *and* its create time, so a pid reused by
  another process starts from zero rather than making a nonsense delta.
- Processes that appeared in the tree since the previous sample (a step
  started) count all they did since they started: none of it was counted yet.
- Processes that exited since the previous sample, or lived and ended
  between two samples: their CPU counts once their parent in the tree has
  waited for them (the kernel adds it to the parent's count of its ended
  children); their I/O between the last sample and their exit is not
  counted (its counters went with them). A process whose parent in
  the tree exited is adopted by init (or a subreaper) and leaves the tree.
- Disk I/O is the storage layer's count (``read_bytes``/``write_bytes`` of
  ``/proc/PID/io``): a write counts when it dirties the page cache, before
  it reaches the disk; reads served from the page cache and files on tmpfs do
  not count. The ``rchar``/``wchar`` counts are not used: they include pipes,
  sockets and terminals. Where a process's counters are not permitted (another
  user's process) or do not exist (macOS), its I/O counts as 0.
- Open files: the process's file descriptors (``num_fds``, every POSIX
  system; sockets and pipes count, as they do against ``ulimit -n``), or
  ``len(open_files())`` where psutil has no ``num_fds`` (Windows).
- Zombies (exited, not yet reaped) count as gone; a root that is a zombie
  gives None.

Host network rates leave out the loopback interface (traffic between local
processes would count twice, as sent and received, and is not the network).

Cost: `sample` reads the table of parents once and serves every tree from
it (``Process.children(recursive=True)`` reads it for each call), then each
process of the trees once, its files read once inside ``oneshot()`` (its
cost: ``bench/sampler.py``, docs/benchmarks.md); `sample_tree` alone reads
the table for its one tree.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import psutil

from flowsight.model.performance import ResourceUsage, Scope

__all__ = ["MetricsCollector"]

#: (pid, create time): one process, told apart from a later one given the same pid
Ident = tuple[int, float]
#: (read, write) bytes, or None where not known
IOPair = tuple[int, int] | None
_LOOPBACK = ("lo", "lo0")


@dataclass(frozen=True, slots=True)
class _Reading:
    """One process, read once in a sample."""

    ident: Ident
    cpu_seconds: float
    rss: int
    io: IOPair
    fds: int | None
    threads: int
    #: CPU seconds of its children that ended and were waited for (they are gone from the tree)
    cpu_reaped: float = 0.0


@dataclass(slots=True)
class _Tree:
    """A tree's counters at its previous sample. ``root`` stays what it was
    when first sampled: another process on that pid reads as the root gone."""

    root: Ident
    ts: float
    io: dict[Ident, IOPair]  # each process's (read, write) bytes
    gone: bool = False
    #: CPU seconds of the tree as a whole: its processes' own and what their ended children used
    cpu_total: float = 0.0
    #: a fall of cpu_total not yet made up (a child gone from the tree and not yet waited for)
    cpu_short: float = 0.0


def _rates(now: IOPair, before: IOPair, elapsed: float) -> tuple[float, float]:
    """Per-second increase of two counters; 0 where either is unknown, time
    did not pass, or a counter went back (a NIC or disk went away)."""
    if now is None or before is None or elapsed <= 0:
        return 0.0, 0.0
    return max(0, now[0] - before[0]) / elapsed, max(0, now[1] - before[1]) / elapsed


class MetricsCollector:
    """Samples the host and runs' process trees with psutil.

    ``clock``: the wall clock of the samples' ``ts`` and of their rates.
    ``psutil_module``: the psutil API to use (a stand-in can be passed).
    ``hostname``: the host's name in `host` (default: this machine's).
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, psutil_module: ModuleType = psutil, hostname: str | None = None
    ) -> None:
        self._clock = clock
        self._ps = psutil_module
        self.host = Scope.host(hostname or socket.gethostname())
        self._mem_total = int(psutil_module.virtual_memory().total)
        self._has_io = hasattr(psutil_module.Process, "io_counters")
        self._has_num_fds = hasattr(psutil_module.Process, "num_fds")
        self._host_before: tuple[float, IOPair, IOPair] | None = None
        self._trees: dict[int, _Tree] = {}

    # ---- the API -------------------------------------------------------------------------
    def sample(self, runs: Mapping[str, int]) -> tuple[ResourceUsage, dict[str, ResourceUsage]]:
        """The host, and each run's tree (run id -> root pid) at one ``ts``.
        A run whose root process is gone is left out of the dict. What was
        kept for pids not in ``runs`` is dropped: asked for again later, a
        tree starts over (rates 0)."""
        now = self._clock()
        host = self._sample_host(now)
        roots = set(runs.values())
        for pid in [p for p in self._trees if p not in roots]:
            del self._trees[pid]
        if not roots:
            return host, {}
        kids = self._children()
        memo: dict[int, _Reading | None] = {}
        trees = {pid: self._sample_tree(pid, kids, memo, now) for pid in roots}
        return host, {run: usage for run, pid in runs.items() if (usage := trees[pid]) is not None}

    def sample_host(self) -> ResourceUsage:
        """CPU of all cores (0..100), memory in use (total - available),
        disk and network bytes per second since the previous host sample
        (0 the first time)."""
        return self._sample_host(self._clock())

    def sample_tree(self, pid: int) -> ResourceUsage | None:
        """The process ``pid`` and all its descendants, summed; None when the
        process is gone (exited, a zombie, or its pid now another process's).
        Reads the whole process table: for many trees, use `sample`."""
        return self._sample_tree(pid, self._children(), {}, self._clock())

    # ---- the host ------------------------------------------------------------------------
    def _sample_host(self, now: float) -> ResourceUsage:
        ps = self._ps
        vm = ps.virtual_memory()
        disk, net = self._disk_totals(), self._net_totals()
        before, self._host_before = self._host_before, (now, disk, net)
        (dr, dw), (ns, nr) = (0.0, 0.0), (0.0, 0.0)
        if before is not None:
            dr, dw = _rates(disk, before[1], now - before[0])
            ns, nr = _rates(net, before[2], now - before[0])
        return ResourceUsage(
            ts=now,
            cpu_percent=float(ps.cpu_percent(interval=None)),
            memory_bytes=int(vm.total - vm.available),
            memory_percent=float(vm.percent),
            disk_read_bytes_per_s=dr,
            disk_write_bytes_per_s=dw,
            net_sent_bytes_per_s=ns,
            net_recv_bytes_per_s=nr,
            processes=len(ps.pids()),
        )

    def _disk_totals(self) -> IOPair:
        c = self._ps.disk_io_counters()  # None on a machine without disks psutil can see
        return None if c is None else (int(c.read_bytes), int(c.write_bytes))

    def _net_totals(self) -> IOPair:
        nics: dict[str, Any] = self._ps.net_io_counters(pernic=True)
        real = [c for name, c in nics.items() if name not in _LOOPBACK and not name.startswith("Loopback")]
        return sum(int(c.bytes_sent) for c in real), sum(int(c.bytes_recv) for c in real)

    # ---- process trees -------------------------------------------------------------------
    def _children(self) -> dict[int, list[int]]:
        """pid -> its children's pids, for every process, read once."""
        ps = self._ps
        pairs: Iterable[tuple[int, int | None]]
        try:
            # psutil's one-pass {pid: ppid} table, the one children() reads for each call
            pairs = ps._ppid_map().items()
        except (AttributeError, ps.AccessDenied):  # not this psutil, or a /proc hidden in part
            pairs = [(p.pid, p.info["ppid"]) for p in ps.process_iter(["ppid"])]
        kids: dict[int, list[int]] = {}
        for pid, ppid in pairs:
            if ppid is not None and ppid != pid:
                kids.setdefault(ppid, []).append(pid)
        return kids

    def _sample_tree(
        self, pid: int, kids: Mapping[int, list[int]], memo: dict[int, _Reading | None], now: float
    ) -> ResourceUsage | None:
        root = self._read(pid, memo)
        tree = self._trees.get(pid)
        if tree is not None and (tree.gone or root is None or tree.root != root.ident):
            tree.gone = True  # and stays so while this pid is asked for
            return None
        if root is None:
            return None
        procs = self._descendants(root, kids, memo)
        # A child that lived and ended between two samples was never seen, but its parent, once it waited
        # for it, counts its CPU seconds among its children's: the tree's CPU is its processes' own and that.
        # A child seen before and gone now leaves the sum; its parent's count rises by all it ever used.
        total = sum(r.cpu_seconds + r.cpu_reaped for r in procs)
        new = self._trees[pid] = _Tree(root.ident, now, {r.ident: r.io for r in procs}, cpu_total=total)
        cpu, io = 0.0, (0.0, 0.0)
        if tree is not None:
            io = self._io_since(tree, procs, now)
            elapsed = now - tree.ts
            used = total - tree.cpu_total + tree.cpu_short
            # gone and not yet waited for (a zombie for a moment): made up at the next sample, not later
            new.cpu_short = min(0.0, used) if tree.cpu_short == 0.0 else 0.0
            cpu = 100.0 * max(0.0, used) / elapsed if elapsed > 0 else 0.0
        rss = sum(r.rss for r in procs)
        fds = [r.fds for r in procs if r.fds is not None]
        return ResourceUsage(
            ts=now,
            cpu_percent=cpu,
            memory_bytes=rss,
            memory_percent=100.0 * rss / self._mem_total if self._mem_total else None,
            disk_read_bytes_per_s=io[0],
            disk_write_bytes_per_s=io[1],
            open_files=sum(fds) if fds else None,
            threads=sum(r.threads for r in procs),
            processes=len(procs),
        )

    def _descendants(
        self, root: _Reading, kids: Mapping[int, list[int]], memo: dict[int, _Reading | None]
    ) -> list[_Reading]:
        """The root and every process below it in ``kids``; those gone since
        the table was read are skipped (their children are still walked)."""
        out, seen = [root], {root.ident[0]}
        stack = [root.ident]
        while stack:
            parent, born = stack.pop()
            for pid in kids.get(parent, ()):
                if pid in seen:  # pids reused while the table was read can make a cycle
                    continue
                seen.add(pid)
                r = self._read(pid, memo)
                if r is None:
                    stack.append((pid, born))
                elif r.ident[1] >= born:  # older than its parent: the pid was reused since the table was read
                    out.append(r)
                    stack.append(r.ident)
        return out

    @staticmethod
    def _io_since(tree: _Tree, procs: list[_Reading], now: float) -> tuple[float, float]:
        """(read, write) bytes/s of ``procs`` since ``tree``'s sample."""
        elapsed = now - tree.ts
        if elapsed <= 0:
            return 0.0, 0.0
        read, write = 0, 0
        for r in procs:
            io_before = tree.io.get(r.ident, (0, 0))  # new: all it did is since
            if r.io is not None and io_before is not None:
                read += max(0, r.io[0] - io_before[0])
                write += max(0, r.io[1] - io_before[1])
        return read / elapsed, write / elapsed

    def _read(self, pid: int, memo: dict[int, _Reading | None]) -> _Reading | None:
        """The process ``pid`` now, read once per sample however many trees
        hold it; None when it is gone, a zombie, or not readable at all."""
        if pid not in memo:
            memo[pid] = self._read_process(pid)
        return memo[pid]

    def _read_process(self, pid: int) -> _Reading | None:
        ps = self._ps
        try:
            # a fresh Process: its create time is read now, so a reused pid is told apart
            proc = ps.Process(pid)
            with proc.oneshot():
                if proc.status() == ps.STATUS_ZOMBIE:
                    return None
                t = proc.cpu_times()
                reaped = float(getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0))
                return _Reading(
                    ident=(pid, float(proc.create_time())),
                    cpu_seconds=float(t.user + t.system),
                    rss=int(proc.memory_info().rss),
                    io=self._io(proc),
                    fds=self._fds(proc),
                    threads=int(proc.num_threads()),
                    cpu_reaped=reaped,
                )
        except ps.Error:  # NoSuchProcess (ZombieProcess included), AccessDenied
            return None

    def _io(self, proc: Any) -> IOPair:
        if not self._has_io:
            return None
        try:
            c = proc.io_counters()
        except self._ps.AccessDenied:
            return None
        return int(c.read_bytes), int(c.write_bytes)

    def _fds(self, proc: Any) -> int | None:
        try:
            return int(proc.num_fds() if self._has_num_fds else len(proc.open_files()))
        except self._ps.AccessDenied:
            return None
