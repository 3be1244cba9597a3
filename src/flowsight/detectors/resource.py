"""The ``resource`` detector: is a disk, memory, swap, the file descriptors
of a process or the CPU (nearly) used up?

``ResourceDetector(name, resource, path=None, pid=None, min_free_bytes=None,
min_free_percent=None, max_load_per_core=None, max_used_percent=None,
proc="/proc", timeout=10.0)`` looks at one ``resource``; each takes its own
thresholds (at least one; the others are refused) and reports a
:class:`~flowsight.model.faults.ResourceExhaustion` of the target named:

========  ==================================  ===========================  ==================
resource  what is measured                    thresholds                   target
========  ==================================  ===========================  ==================
disk      free space of the filesystem that   min_free_bytes,              ``disk:<mount>``
          holds ``path`` (``f_bavail``: what  min_free_percent
          an ordinary user may still write,
          as ``df`` shows it)
inodes    free inodes of that filesystem      min_free_percent             ``inodes:<mount>``
memory    ``MemAvailable`` of ``MemTotal``    min_free_bytes,              ``memory``
                                              min_free_percent
swap      ``SwapFree`` of ``SwapTotal``       min_free_bytes,              ``swap``
          (no swap configured: all well)      min_free_percent
fds       open descriptors of process         max_used_percent             ``fds:<pid>``
          ``pid`` (an int or ``"self"``, the
          default) against its soft limit
cpu       1-minute load average per core      max_load_per_core            ``cpu``
========  ==================================  ===========================  ==================

``<mount>`` is the mount point holding ``path`` (so two detectors on the same
filesystem name the same target). The free percentage of a disk is that of
``df``: available / (used + available), the blocks reserved for root left
out. A threshold is breached strictly below a minimum or above a maximum.

Everything is read under ``proc`` (``/proc``; a test hands in a tree of its
own): ``meminfo``, ``loadavg``, ``stat`` (the number of cores: its ``cpuN``
lines, else :func:`os.cpu_count`), ``PID/fd`` and ``PID/limits``. The look
runs in a thread (``statvfs`` on a hung NFS mount never returns); one that
takes over ``timeout`` seconds makes :meth:`~ResourceDetector.detect` raise
:class:`TimeoutError` (the detector is broken, not the resource exhausted),
and so does every check while that look is still stuck, so that a hung mount
holds one thread, not one more per interval.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from flowsight.options.fields import Invalid, Options, Opt, choice, found, integer, nonempty_string, number
from flowsight.detectors.tcp import check_name, check_seconds
from flowsight.model.faults import Fault, ResourceExhaustion

__all__ = ["RESOURCES", "Capacity", "Load", "ResourceDetector", "Usage", "format_bytes", "judge", "size"]

#: each resource and the thresholds it takes
RESOURCES: dict[str, tuple[str, ...]] = {
    "disk": ("min_free_bytes", "min_free_percent"),
    "inodes": ("min_free_percent",),
    "memory": ("min_free_bytes", "min_free_percent"),
    "swap": ("min_free_bytes", "min_free_percent"),
    "fds": ("max_used_percent",),
    "cpu": ("max_load_per_core",),
}
_PERCENTS = ("min_free_percent", "max_used_percent")


# ---- the fields' converters ------------------------------------------------------------
def _pid(value: Any) -> int | str:
    if value == "self":
        return "self"
    try:
        return integer(1)(value)
    except Invalid:
        raise Invalid(f'expected a process id or "self", got {found(value)}') from None


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def size(value: Any) -> int:
    """Bytes: an integer, or text such as ``"5 GiB"``, ``"500MB"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(digits) :]
        try:
            amount = float(digits)
        except ValueError:
            amount = -1.0
        if amount >= 0 and unit in _UNITS:
            return int(amount * _UNITS[unit])
    raise Invalid(f'expected a size in bytes such as 5000000000 or "5 GiB", got {found(value)}')


def _percent(value: Any) -> float:
    p = number()(value)
    if not 0 <= p <= 100:
        raise Invalid(f"expected a percentage from 0 to 100, got {found(value)}")
    return p


# ---- readings and the pure decision ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class Capacity:
    """What is left of a resource that fills up. ``unit``: ``bytes`` or
    ``inodes``; ``free_percent`` is computed by the reader (a disk's is
    ``df``'s, not ``free / total``)."""

    target: str
    label: str  # "disk /var/lib": how the message starts
    free: int
    total: int
    free_percent: float
    unit: str = "bytes"


@dataclass(frozen=True, slots=True)
class Usage:
    """Descriptors open out of a limit (None: unlimited)."""

    target: str
    label: str
    used: int
    limit: int | None


@dataclass(frozen=True, slots=True)
class Load:
    """The load averages (1, 5, 15 minutes) and the number of cores."""

    load1: float
    load5: float
    load15: float
    cores: int


Reading = Capacity | Usage | Load


def judge(reading: Reading, thresholds: dict[str, float]) -> tuple[str, str, dict[str, Any]] | None:
    """Whether ``reading`` breaches one of ``thresholds`` (option name ->
    value): None, or the fault's (target, message, evidence). The first
    breached threshold, in the order of :data:`RESOURCES`, is the one named."""
    if isinstance(reading, Capacity):
        return _judge_capacity(reading, thresholds)
    if isinstance(reading, Usage):
        if reading.limit is None or reading.limit <= 0 or "max_used_percent" not in thresholds:
            return None
        limit = thresholds["max_used_percent"]
        percent = 100.0 * reading.used / reading.limit
        if percent <= limit:
            return None
        return (
            reading.target,
            f"{reading.label}: {reading.used:,} of {reading.limit:,} open ({percent:.1f}%), above {limit:g}%",
            {
                "used": reading.used,
                "limit": reading.limit,
                "used_percent": round(percent, 2),
                "threshold": limit,
                "threshold_option": "max_used_percent",
            },
        )
    limit = thresholds.get("max_load_per_core", math.inf)
    per_core = reading.load1 / reading.cores
    if per_core <= limit:
        return None
    return (
        "cpu",
        f"cpu: load {reading.load1:.2f} on {reading.cores} cores ({per_core:.2f} per core), above {limit:g}",
        {
            "load1": reading.load1,
            "load5": reading.load5,
            "load15": reading.load15,
            "cores": reading.cores,
            "load_per_core": round(per_core, 3),
            "threshold": limit,
            "threshold_option": "max_load_per_core",
        },
    )


def _judge_capacity(c: Capacity, thresholds: dict[str, float]) -> tuple[str, str, dict[str, Any]] | None:
    if c.total <= 0:
        return None  # nothing configured (no swap) or not counted (btrfs inodes): nothing to run out of
    in_bytes = c.unit == "bytes"
    free_text = format_bytes(c.free) if in_bytes else f"{c.free:,} inodes"
    verb = "available" if c.target == "memory" else "free"
    evidence: dict[str, Any] = (
        {"free_bytes": c.free, "total_bytes": c.total} if in_bytes else {"free_inodes": c.free, "total_inodes": c.total}
    )
    evidence["free_percent"] = round(c.free_percent, 2)
    for option in ("min_free_bytes", "min_free_percent"):
        if option not in thresholds:
            continue
        limit = thresholds[option]
        if option == "min_free_bytes" and c.free < limit:
            shown = format_bytes(int(limit))
        elif option == "min_free_percent" and c.free_percent < limit:
            shown = f"{limit:g}%"
        else:
            continue
        message = f"{c.label}: {free_text} {verb} ({c.free_percent:.1f}%), below {shown}"
        return c.target, message, {**evidence, "threshold": limit, "threshold_option": option}
    return None


def format_bytes(n: int) -> str:
    """``512 B``, ``1.2 GiB``: binary units, one decimal."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit}"


# ---- the detector ----------------------------------------------------------------------
class ResourceDetector:
    """See the module docstring. ``statvfs`` is :func:`os.statvfs` (a test
    may hand in one that hangs).

    Raises:
        ValueError: an option is not what it must be (the message names it).
    """

    KIND: ClassVar[str] = "resource"
    OPTIONS: ClassVar[Options] = {
        "resource": Opt(choice(RESOURCES), required=True),
        "path": Opt(nonempty_string, path=True),
        "pid": Opt(_pid),
        "min_free_bytes": Opt(size),
        "min_free_percent": Opt(_percent),
        "max_load_per_core": Opt(number(above=0)),
        "max_used_percent": Opt(_percent),
    }

    def __init__(
        self,
        name: str,
        *,
        resource: str,
        path: str | os.PathLike[str] | None = None,
        pid: int | str | None = None,
        min_free_bytes: int | None = None,
        min_free_percent: float | None = None,
        max_load_per_core: float | None = None,
        max_used_percent: float | None = None,
        proc: str | os.PathLike[str] = "/proc",
        timeout: float = 10.0,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.name = check_name(name)
        if resource not in RESOURCES:
            raise ValueError(f"detector {name!r}: resource must be one of {', '.join(RESOURCES)}; got {resource!r}")
        self.resource = resource
        given = {
            "min_free_bytes": min_free_bytes,
            "min_free_percent": min_free_percent,
            "max_load_per_core": max_load_per_core,
            "max_used_percent": max_used_percent,
        }
        self.thresholds = self._check_thresholds(given)
        if resource in ("disk", "inodes"):
            if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
                raise ValueError(
                    f"detector {name!r}: resource {resource!r} needs path, a file or folder on the "
                    f'filesystem to watch (path = "/var/lib"), got {path!r}'
                )
        elif path is not None:
            raise ValueError(f"detector {name!r}: path is only for resource 'disk' or 'inodes', not {resource!r}")
        self.path = os.fspath(path) if path is not None else None
        if resource == "fds":
            pid = "self" if pid is None else pid
            if pid != "self" and (isinstance(pid, bool) or not isinstance(pid, int) or pid < 1):
                raise ValueError(
                    f'detector {name!r}: pid must be a process id (a whole number from 1) or "self", got {pid!r}'
                )
        elif pid is not None:
            raise ValueError(f"detector {name!r}: pid is only for resource 'fds', not {resource!r}")
        self.pid = pid
        self.proc = os.fspath(proc)
        self.timeout = check_seconds(name, "timeout", timeout)
        self._statvfs = statvfs
        self._look_task: asyncio.Task[Reading] | None = None

    def _check_thresholds(self, given: dict[str, Any]) -> dict[str, float]:
        name, takes = self.name, RESOURCES[self.resource]
        wrong = [k for k, v in given.items() if v is not None and k not in takes]
        if wrong:
            raise ValueError(
                f"detector {name!r}: resource {self.resource!r} takes {' or '.join(takes)}, not {', '.join(wrong)}"
            )
        out: dict[str, float] = {}
        for option in takes:
            value = given[option]
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"detector {name!r}: {option} must be a number, got {value!r}")
            if option in _PERCENTS and not 0 <= value <= 100:
                raise ValueError(f"detector {name!r}: {option} must be a percentage from 0 to 100, got {value!r}")
            if option == "min_free_bytes" and (not isinstance(value, int) or value < 0):
                raise ValueError(
                    f"detector {name!r}: min_free_bytes must be a whole number of bytes, 0 or more, got {value!r}"
                )
            if option == "max_load_per_core" and not value > 0:
                raise ValueError(f"detector {name!r}: max_load_per_core must be above 0, got {value!r}")
            out[option] = value
        if not out:
            raise ValueError(f"detector {name!r}: resource {self.resource!r} needs a threshold: {' or '.join(takes)}")
        return out

    async def detect(self) -> Fault | None:
        """Look once: None while every threshold holds, else the fault.

        Raises:
            TimeoutError: the look took over ``timeout`` s, or the previous
                one has still not returned.
            OSError: the resource cannot be read (no such path or process).
        """
        task = self._look_task
        if task is not None and not task.done():
            raise TimeoutError(
                f"{self._what()}: the look begun by an earlier check has still not returned (a hung filesystem?)"
            )
        task = self._look_task = asyncio.create_task(asyncio.to_thread(self._look))
        task.add_done_callback(_consume)
        try:
            # shielded: a timeout leaves the task to end with its thread, and it
            # tells the next check whether that has happened
            reading = await asyncio.wait_for(asyncio.shield(task), self.timeout)
        except TimeoutError:
            raise TimeoutError(f"{self._what()}: no answer within {self.timeout:g} s") from None
        found = judge(reading, self.thresholds)
        if found is None:
            return None
        target, message, evidence = found
        return Fault(ResourceExhaustion(target), message, detector=self.name, evidence=evidence)

    def _what(self) -> str:
        if self.resource in ("disk", "inodes"):
            return f"statvfs({self.path!r})"
        return f"{self.resource} under {self.proc}"

    # ---- looking (in a thread) ---------------------------------------------------------
    def _look(self) -> Reading:
        if self.resource in ("disk", "inodes"):
            return self._look_filesystem()
        if self.resource in ("memory", "swap"):
            return self._look_memory()
        if self.resource == "fds":
            return self._look_fds()
        return self._look_cpu()

    def _look_filesystem(self) -> Capacity:
        assert self.path is not None
        st = self._statvfs(self.path)
        where = mountpoint(self.path)
        if self.resource == "inodes":
            total = st.f_files
            percent = 100.0 * st.f_favail / total if total else 100.0
            return Capacity(f"inodes:{where}", f"inodes {where}", st.f_favail, total, percent, unit="inodes")
        free = st.f_bavail * st.f_frsize
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        percent = 100.0 * free / (used + free) if used + free else 100.0
        return Capacity(f"disk:{where}", f"disk {where}", free, st.f_blocks * st.f_frsize, percent)

    def _look_memory(self) -> Capacity:
        info = read_meminfo(os.path.join(self.proc, "meminfo"))
        if self.resource == "swap":
            total, free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
        else:
            total = info["MemTotal"]
            # kernels before 3.14 have no MemAvailable: MemFree is the cautious stand-in
            free = info.get("MemAvailable", info.get("MemFree", 0))
        percent = 100.0 * free / total if total else 100.0
        return Capacity(self.resource, self.resource, free, total, percent)

    def _look_fds(self) -> Usage:
        base = os.path.join(self.proc, str(self.pid))
        try:
            used = len(os.listdir(os.path.join(base, "fd")))
        except FileNotFoundError:
            raise LookupError(
                f'process {self.pid} does not exist (no {base}): give the pid of a running process, or "self"'
            ) from None
        except PermissionError:
            raise PermissionError(
                f"process {self.pid}: not allowed to list {base}/fd (run flowsight as its user, or as root)"
            ) from None
        with open(os.path.join(base, "limits"), encoding="ascii", errors="replace") as f:
            limit = parse_open_files_limit(f.read())
        return Usage(f"fds:{self.pid}", f"fds of process {self.pid}", used, limit)

    def _look_cpu(self) -> Load:
        with open(os.path.join(self.proc, "loadavg"), encoding="ascii") as f:
            load1, load5, load15 = (float(x) for x in f.read().split()[:3])
        try:
            with open(os.path.join(self.proc, "stat"), encoding="ascii", errors="replace") as f:
                cores = len(_CPU_LINE.findall(f.read()))
        except OSError:
            cores = 0
        return Load(load1, load5, load15, cores or os.cpu_count() or 1)


_CPU_LINE = re.compile(r"^cpu\d+\s", re.MULTILINE)
_OPEN_FILES = re.compile(r"^Max open files\s+(\S+)", re.MULTILINE)


def _consume(task: asyncio.Task[Reading]) -> None:
    # a look that ends after its check gave up: its error has no one to go to
    if not task.cancelled():
        task.exception()


def mountpoint(path: str) -> str:
    """The mount point of the filesystem that holds ``path`` (blocking)."""
    here = os.path.realpath(path)
    while not os.path.ismount(here):
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    return here


def read_meminfo(path: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes by field (``MemTotal``, ``SwapFree``, ...)."""
    out: dict[str, int] = {}
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return out


def parse_open_files_limit(limits: str) -> int | None:
    """The soft ``Max open files`` of a ``/proc/PID/limits`` text (None: unlimited or absent)."""
    m = _OPEN_FILES.search(limits)
    return int(m.group(1)) if m and m.group(1).isdigit() else None
