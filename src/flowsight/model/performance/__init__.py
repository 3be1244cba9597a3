"""Performance: what the performance monitor measures, as plain values.

:class:`ResourceUsage` is one sample of a host or of a run's process tree
(CPU, memory, disk and network I/O, open files, threads). :class:`Scope`
says what a sample or a query is about: the host, one run, or one workflow.
:class:`PerformanceMetrics` is the specification's summary of a scope:
throughput, latency, CPU, memory, disk I/O and network I/O.
:class:`SamplePoint` is one point of a stored metric's time series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from flowsight.model.durations import format_duration


class ScopeKind(str, Enum):
    HOST = "host"
    RUN = "run"
    WORKFLOW = "workflow"

    __hash__ = str.__hash__


@dataclass(frozen=True, slots=True)
class Scope:
    """What a sample or a query is about: ``Scope.host("web-1")``,
    ``Scope.run("run-42")``, ``Scope.workflow("nightly-etl")``."""

    kind: ScopeKind
    id: str

    @classmethod
    def host(cls, name: str) -> Scope:
        return cls(ScopeKind.HOST, name)

    @classmethod
    def run(cls, run_id: str) -> Scope:
        return cls(ScopeKind.RUN, run_id)

    @classmethod
    def workflow(cls, name: str) -> Scope:
        return cls(ScopeKind.WORKFLOW, name)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """One sample. ``cpu_percent``: for a process tree, the sum over its
    processes (100 = one core busy; it can pass 100); for the host, of all
    cores (0..100). ``memory_bytes``: the tree's resident set (RSS), or the
    host's memory in use. Rates are per second since the previous sample of
    the same scope (0 for the first). ``net_*``: the host only (a process's
    network bytes are not known to the kernel per process); None for a tree.
    """

    ts: float
    cpu_percent: float
    memory_bytes: int
    memory_percent: float | None = None
    disk_read_bytes_per_s: float = 0.0
    disk_write_bytes_per_s: float = 0.0
    net_sent_bytes_per_s: float | None = None
    net_recv_bytes_per_s: float | None = None
    open_files: int | None = None
    threads: int | None = None
    processes: int = 1

    def as_metrics(self) -> dict[str, float]:
        """The sample as metric name -> value (names as stored and queried)."""
        out = {
            "cpu_percent": self.cpu_percent,
            "memory_bytes": float(self.memory_bytes),
            "disk_read_bytes_per_s": self.disk_read_bytes_per_s,
            "disk_write_bytes_per_s": self.disk_write_bytes_per_s,
        }
        for name, value in (
            ("memory_percent", self.memory_percent),
            ("net_sent_bytes_per_s", self.net_sent_bytes_per_s),
            ("net_recv_bytes_per_s", self.net_recv_bytes_per_s),
            ("open_files", self.open_files),
            ("threads", self.threads),
        ):
            if value is not None:
                out[name] = float(value)
        return out


#: every resource metric a sample can carry
RESOURCE_METRICS = (
    "cpu_percent",
    "memory_bytes",
    "memory_percent",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "net_sent_bytes_per_s",
    "net_recv_bytes_per_s",
    "open_files",
    "threads",
)


@dataclass(frozen=True, slots=True)
class Quantiles:
    """Durations in seconds (None without any)."""

    count: int = 0
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class PerformanceMetrics:
    """The specification's ``PerformanceMetrics`` of a scope at ``ts``.

    ``throughput``: completed steps and runs per second over the last 1 m,
    5 m and 1 h (``steps_per_s_1m``, ...). ``latency``: step and run
    duration quantiles. ``cpu_usage`` (percent), ``memory_usage`` (bytes),
    ``disk_io`` and ``network_io`` (bytes/s, read/write and sent/received):
    the last sample, or None when the scope has none.
    """

    scope: Scope
    ts: float
    throughput: dict[str, float] = field(default_factory=dict)
    latency: dict[str, Quantiles] = field(default_factory=dict)
    cpu_usage: float | None = None
    memory_usage: int | None = None
    disk_io: tuple[float, float] | None = None
    network_io: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class SamplePoint:
    """One point of a metric's stored time series: a raw sample at ``ts``
    (``avg`` = ``min`` = ``max`` = its value, ``count`` 1), or a bucket of
    samples starting at ``ts`` (``avg``: their mean; ``count``: how many)."""

    ts: float
    avg: float
    min: float
    max: float
    count: int


def format_metric(metric: str, value: float) -> str:
    """``value`` of ``metric`` for people: bytes in B/KiB/MiB/GiB/TiB (``/s``
    for a rate), percentages, durations, else the plain number."""
    if metric.endswith("_bytes") or metric.endswith("bytes_per_s"):
        unit = "/s" if metric.endswith("_per_s") else ""
        size = value
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(size) < 1024 or suffix == "TiB":
                return f"{size:.0f} {suffix}{unit}" if suffix == "B" else f"{size:.1f} {suffix}{unit}"
            size /= 1024
    if metric.endswith("_percent"):
        return f"{value:.1f}%"
    if metric.endswith("duration_s"):
        return format_duration(value)
    return f"{value:g}"


def parse_scope(text: str) -> Scope:
    """``host:NAME``, ``run:RUN_ID`` or ``workflow:NAME`` as a :class:`Scope`.

    Raises:
        ValueError: it is none of these.
    """
    kind, sep, ident = text.partition(":")
    if not sep or kind not in {k.value for k in ScopeKind} or not ident:
        raise ValueError(f"{text!r} is not a scope; write host:NAME, run:RUN_ID or workflow:NAME")
    return Scope(ScopeKind(kind), ident)
