"""A realistic store of many runs, made fast: for dashboards and benchmarks.

``python -m flowsight.demo.generate --runs 100000 --events 10000000 --db URL``
fills a store (SQLite or PostgreSQL) with the history of ``--workflows``
workflows over ``--days`` days up to now: runs mostly completed, some failed
(a step failed, sometimes after a retry), cancelled, suspended, a few lost
(they went quiet mid-step, so they show as stalled), and those still running
at the end; each with its steps, progress or heartbeats, state transitions
and log lines. Faults that hurt runs, alerts and the resource samples of the
last hours come with them.

Everything goes through the store's own write paths
(:meth:`~flowsight.store.runs.Runs.write_events` in big batches,
``write_logs``, ``open_fault``, ``save_alerts``, ``save_samples``), so the
derived tables (runs, transitions, ...) are filled as in production. Events
are written in time order across runs, as they arrive from concurrent runs,
so a run's events are spread over the table as they are in a real store.

Deterministic: the same parameters (``seed`` and ``now`` included) give the
same rows and ids. Exactly ``events`` events and ``logs`` log lines are
written. The parameters are kept in the store (:data:`DATASET_STATE`) once
everything is written: :func:`dataset_of` tells a caller whether a store
already holds a given data set (a benchmark reuses it instead of writing it
again).
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from flowsight.model.alerts import Alert, AlertState, AlertStatus, Severity
from flowsight.model.runs.events import Event, EventKind
from flowsight.model.faults import Fault, FaultKind, fault_type
from flowsight.logs.analyzer import LogAnalyzer
from flowsight.logs.records import LogRecord
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.monitors.log import ANALYZER_STATE
from flowsight.store.interface import Store

#: the kept-state name under which a finished data set records its parameters
DATASET_STATE = "demo.dataset"
#: bumped whenever the same parameters would give different data
GENERATOR_VERSION = 1
#: the fewest events a run can have (started, step started, step ended, the end)
MIN_EVENTS_PER_RUN = 4

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, as flowsight.model.runs.ids
_DOMAINS = (
    "billing",
    "orders",
    "inventory",
    "customer",
    "marketing",
    "finance",
    "search",
    "catalog",
    "payments",
    "fraud",
    "shipping",
    "support",
    "analytics",
    "ml",
    "reporting",
    "partner",
    "ads",
    "warehouse",
    "identity",
    "audit",
    "pricing",
    "recommend",
    "email",
    "mobile",
    "web",
)
_JOBS = ("nightly-etl", "sync", "export", "training", "backfill", "rollup", "report", "ingest", "cleanup", "reindex")
_STEPS = (
    "extract",
    "fetch",
    "validate",
    "transform",
    "enrich",
    "dedupe",
    "aggregate",
    "train",
    "evaluate",
    "render",
    "load",
    "upload",
    "publish",
    "notify",
    "checkpoint",
    "compact",
    "index",
    "archive",
)
_ERRORS = (
    ("TimeoutError", "upstream did not answer within 30s"),
    ("ConnectionError", "connection refused by db-main:5432"),
    ("ValueError", "column 'amount' holds non-numeric value 'n/a'"),
    ("KeyError", "'customer_id'"),
    ("MemoryError", "cannot allocate 2147483648 bytes"),
    ("PermissionError", "[Errno 13] Permission denied: '/data/out/part-0007.parquet'"),
    ("RuntimeError", "checksum mismatch in part-0003"),
)
_HOSTS = tuple(f"worker-{i:02d}" for i in range(1, 13))
_TABLES = ("orders", "events_raw", "customers", "invoices", "sessions", "items", "payments")


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> 2 characters


def _b32(value: int, chars: int) -> str:
    """``value`` as ``chars`` (even) base32 characters."""
    t = _PAIRS
    return "".join([t[(value >> shift) & 1023] for shift in range(5 * chars - 10, -1, -10)])


class _Ids:
    """ULID-shaped ids (as the SDK makes them: 48 bits of milliseconds, a
    per-writer prefix, a counter), from a seed: the same calls give the same ids."""

    def __init__(self, rng: random.Random) -> None:
        self._prefix = _b32(rng.getrandbits(40), 8)
        self._n = rng.getrandbits(32)
        self._ms = -1
        self._head = ""

    def make(self, ts: float) -> str:
        ms = int(ts * 1000)
        if ms != self._ms:
            self._ms, self._head = ms, _b32(ms, 10) + self._prefix
        self._n = n = (self._n + 1) & (2**40 - 1)
        t = _PAIRS
        return self._head + t[n >> 30] + t[n >> 20 & 1023] + t[n >> 10 & 1023] + t[n & 1023]


@dataclass(frozen=True)
class Params:
    """What to generate. ``logs``: log lines in all (None: 20 per run);
    ``now``: the end of the history (None: the time of the call)."""

    runs: int = 100_000
    events: int = 10_000_000
    logs: int | None = None
    workflows: int = 50
    days: float = 30.0
    seed: int = 1
    now: float | None = None
    sample_hours: float = 6.0  # resource samples of the runs of the last hours (the raw retention)

    def check(self) -> None:
        """Raises ValueError for parameters no data set fits."""
        if self.runs < 1 or self.workflows < 1:
            raise ValueError("runs and workflows must be at least 1")
        if self.events < MIN_EVENTS_PER_RUN * self.runs:
            raise ValueError(
                f"events: {self.events} is fewer than {MIN_EVENTS_PER_RUN} per run "
                f"({MIN_EVENTS_PER_RUN * self.runs} for {self.runs} runs)"
            )
        if self.logs is not None and self.logs < 0:
            raise ValueError("logs must not be negative")
        if not self.days > 0:
            raise ValueError("days must be positive")

    @property
    def total_logs(self) -> int:
        return 20 * self.runs if self.logs is None else self.logs

    def key(self) -> dict[str, Any]:
        """What identifies the data set (``now`` apart: a reused set ages)."""
        d = asdict(self)
        d.pop("now")
        d["logs"] = self.total_logs
        d["version"] = GENERATOR_VERSION
        return d


@dataclass(slots=True)
class Summary:
    """What :func:`generate` wrote, and how long it took."""

    runs: int = 0
    events: int = 0
    logs: int = 0
    faults: int = 0
    alerts: int = 0
    samples: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class _Workflow:
    name: str
    steps: tuple[str, ...]
    weights: tuple[float, ...]  # share of the run's time per step
    progress: tuple[bool, ...]  # the step reports progress (else heartbeats)
    duration: float  # typical run, seconds
    size: float  # relative number of events per run
    fail_rate: float


@dataclass(slots=True)
class _Plan:
    index: int
    run_id: str
    wf: _Workflow
    start: float
    duration: float
    outcome: str  # completed | failed | cancelled | suspended | lost
    events: int  # exactly this many events
    logs: int  # exactly this many log lines
    retry: bool
    pause: bool
    rng_seed: int


def _workflows(rng: random.Random, n: int) -> list[_Workflow]:
    names: list[str] = []
    for job in _JOBS:
        for dom in _DOMAINS:
            names.append(f"{dom}-{job}")
    rng.shuffle(names)
    out = []
    for i in range(n):
        name = names[i] if i < len(names) else f"workflow-{i:03d}"
        k = rng.randint(3, 8)
        steps = tuple(rng.sample(_STEPS, k))
        weights = [rng.uniform(0.3, 3.0) for _ in steps]
        total = sum(weights)
        out.append(
            _Workflow(
                name=name,
                steps=steps,
                weights=tuple(w / total for w in weights),
                progress=tuple(rng.random() < 0.6 for _ in steps),
                duration=math.exp(rng.uniform(math.log(40), math.log(5400))),
                size=rng.uniform(0.4, 2.0),
                fail_rate=rng.uniform(0.01, 0.15),
            )
        )
    return out


def _spread(total: int, weights: Sequence[float], floor: int) -> list[int]:
    """``total`` split by ``weights``, each at least ``floor``, summing exactly to ``total``."""
    spare = total - floor * len(weights)
    w = sum(weights)
    shares = [int(spare * x / w) for x in weights]
    left = spare - sum(shares)
    for i in range(left):
        shares[i % len(shares)] += 1
    return [floor + s for s in shares]


def _plans(p: Params, now: float) -> list[_Plan]:
    rng = random.Random(p.seed)
    wfs = _workflows(rng, p.workflows)
    popularity = [1.0 / (i + 1) ** 0.8 for i in range(len(wfs))]  # a few workflows run most often
    span = p.days * 86400.0
    starts = sorted(now - span * rng.random() for _ in range(p.runs))
    chosen = rng.choices(wfs, weights=popularity, k=p.runs)
    ev_weights, log_weights = [], []
    plans: list[_Plan] = []
    for i, (start, wf) in enumerate(zip(starts, chosen)):
        duration = wf.duration * rng.lognormvariate(0.0, 0.35)
        r = rng.random()
        if r < wf.fail_rate:
            outcome = "failed"
        elif r < wf.fail_rate + 0.02:
            outcome = "cancelled"
        elif r < wf.fail_rate + 0.025:
            outcome = "suspended"
        elif r < wf.fail_rate + 0.027:
            outcome = "lost"
        else:
            outcome = "completed"
        ev_weights.append(wf.size * rng.lognormvariate(0.0, 0.4))
        log_weights.append(rng.lognormvariate(0.0, 0.6))
        run_id = _b32(int(start * 1000), 10) + _b32(rng.getrandbits(80), 16)
        plans.append(
            _Plan(
                i,
                run_id,
                wf,
                start,
                duration,
                outcome,
                0,
                0,
                rng.random() < 0.04,
                rng.random() < 0.02,
                rng.getrandbits(64),
            )
        )
    for plan, n in zip(plans, _spread(p.events, ev_weights, MIN_EVENTS_PER_RUN)):
        plan.events = n
    if p.total_logs:
        for plan, n in zip(plans, _spread(p.total_logs, log_weights, 0)):
            plan.logs = n
    return plans


# one item of a run's timeline: (ts, order, kind, step, attrs) for events, or a log line (kind None)
_Item = tuple[float, int, EventKind | None, str | None, dict[str, Any]]


def _timeline(plan: _Plan, now: float) -> list[_Item]:
    """The run's events and log lines, in time order, none after ``now``."""
    rng = random.Random(plan.rng_seed)
    wf = plan.wf
    for steps_used in range(len(wf.steps), 0, -1):
        structural, spans = _structure(plan, wf, steps_used, now, rng)
        if len(structural) <= plan.events:
            break
    else:  # cannot happen: MIN_EVENTS_PER_RUN fits one step
        raise AssertionError(f"run {plan.run_id}: {plan.events} events cannot hold its structure")
    items = structural
    filler = plan.events - len(structural)
    total_span = sum(max(e - s, 0.0) for _, s, e, _ in spans) or 1.0
    counts = _spread(filler, [max(e - s, 0.0) / total_span + 1e-9 for _, s, e, _ in spans], 0) if spans else []
    for (step, s, e, progress), n in zip(spans, counts):
        for k in range(n):
            ts = s + (e - s) * (k + 1) / (n + 1)
            if progress:
                items.append((ts, 1, EventKind.PROGRESS, step, {"done": k + 1, "total": n}))
            else:
                items.append((ts, 1, EventKind.HEARTBEAT, step, {}))
    if plan.logs:
        items.extend(_log_items(plan, spans, rng))
    items.sort(key=lambda it: (it[0], it[1]))
    return items


def _structure(
    plan: _Plan, wf: _Workflow, steps_used: int, now: float, rng: random.Random
) -> tuple[list[_Item], list[tuple[str, float, float, bool]]]:
    """The run's state and step events with ``steps_used`` steps, and each
    step attempt's span (step, start, end, reports progress)."""
    t = plan.start
    steps = wf.steps[:steps_used]
    weights = wf.weights[:steps_used]
    scale = plan.duration / sum(weights)
    items: list[_Item] = [
        (
            t,
            0,
            EventKind.STARTED,
            None,
            {
                "total_steps": len(wf.steps),
                "host": _HOSTS[plan.index % len(_HOSTS)],
                "pid": 1000 + plan.index % 60000,
                "source": "sdk",
            },
        )
    ]
    spans: list[tuple[str, float, float, bool]] = []
    fail_at = rng.randrange(steps_used) if plan.outcome in ("failed", "cancelled") else -1
    stop_at = rng.randrange(steps_used) if plan.outcome in ("suspended", "lost") else -1
    retry_at = rng.randrange(steps_used) if plan.retry else -1
    pause_at = rng.randrange(steps_used) if plan.pause else -1
    for i, (step, w, prog) in enumerate(zip(steps, weights, wf.progress)):
        if t > now:
            return items, spans
        if i == pause_at:
            items.append((t, 0, EventKind.SUSPENDED, None, {"reason": "waiting for an approval"}))
            t += min(plan.duration * 0.3, 3600.0)
            if t > now:
                return items, spans
            items.append((t, 0, EventKind.RESUMED, None, {"reason": "approved"}))
        length = w * scale
        if i == retry_at and i != fail_at:
            # the first attempt fails after a while; the step is run again
            end = t + length * 0.4
            items.append((t, 0, EventKind.STEP_STARTED, step, {}))
            if end > now:
                spans.append((step, t, now, prog))
                return items, spans
            kind, msg = _ERRORS[rng.randrange(len(_ERRORS))]
            items.append((end, 2, EventKind.STEP_FAILED, step, {"error": msg, "error_type": kind}))
            spans.append((step, t, end, prog))
            t = end
        items.append((t, 0, EventKind.STEP_STARTED, step, {}))
        end = t + length
        if i == fail_at or i == stop_at:
            end = t + length * rng.uniform(0.1, 0.9)
        if end > now:  # still running now
            spans.append((step, t, now, prog))
            return items, spans
        spans.append((step, t, end, prog))
        if i == stop_at:  # the run goes quiet in this step (lost), or waits (suspended)
            if plan.outcome == "suspended":
                items.append((end, 2, EventKind.SUSPENDED, None, {"reason": "waiting for finance approval"}))
            return items, spans
        if i == fail_at:
            kind, msg = _ERRORS[rng.randrange(len(_ERRORS))]
            if plan.outcome == "failed":
                attrs = {
                    "error": msg,
                    "error_type": kind,
                    "traceback": f'Traceback (most recent call last):\n  File "jobs/{step}.py", line '
                    f"{rng.randint(10, 400)}, in run\n{kind}: {msg}",
                }
                items.append((end, 2, EventKind.STEP_FAILED, step, attrs))
                items.append((end, 3, EventKind.FAILED, None, {"error": msg, "error_type": kind}))
            else:
                items.append(
                    (end, 2, EventKind.STEP_FAILED, step, {"error": "cancelled", "error_type": "KeyboardInterrupt"})
                )
                items.append((end, 3, EventKind.CANCELLED, None, {"reason": "cancelled by an operator"}))
            return items, spans
        items.append((end, 2, EventKind.STEP_COMPLETED, step, {}))
        t = end
    if t <= now:
        items.append((t, 3, EventKind.COMPLETED, None, {}))
    return items, spans


def _log_items(plan: _Plan, spans: list[tuple[str, float, float, bool]], rng: random.Random) -> list[_Item]:
    if not spans:
        return []
    out: list[_Item] = []
    start, end = spans[0][1], spans[-1][2]
    width = max(end - start, 1e-3)
    failed_step = None
    if plan.outcome == "failed":
        failed_step = spans[-1][0]
    for k in range(plan.logs):
        ts = start + width * (k + 0.5) / plan.logs
        step = spans[-1][0]
        for s, a, b, _ in spans:
            if a <= ts <= b:
                step = s
                break
        r = rng.random()
        table = _TABLES[rng.randrange(len(_TABLES))]
        if failed_step is not None and k == plan.logs - 1:
            kind, msg = _ERRORS[rng.randrange(len(_ERRORS))]
            level, message = LogLevel.ERROR, f"step {step} failed: {kind}: {msg}"
        elif r < 0.35:
            level, message = (
                LogLevel.INFO,
                f"processed batch {k + 1} of {table}: {rng.randint(100, 50000)} rows in {rng.randint(5, 4000)} ms",
            )
        elif r < 0.55:
            level, message = (
                LogLevel.DEBUG,
                f"fetched page {rng.randint(1, 500)} from "
                f"https://api.internal/v2/{table}?cursor={rng.getrandbits(48):x}",
            )
        elif r < 0.70:
            level, message = LogLevel.INFO, f"wrote {rng.randint(1, 900000)} rows to warehouse.{table}"
        elif r < 0.80:
            level, message = (
                LogLevel.INFO,
                f"connected to db-{rng.randint(1, 6)}.internal:5432 as etl_{rng.randint(1, 9)}",
            )
        elif r < 0.88:
            level, message = (
                LogLevel.INFO,
                f"cache hit ratio {rng.uniform(40, 99.9):.1f}% ({rng.randint(1000, 90000)} lookups)",
            )
        elif r < 0.95:
            level, message = (
                LogLevel.WARN,
                f"retrying request to https://api.internal/v2/{table} after "
                f"{rng.choice((429, 502, 503, 504))} (attempt {rng.randint(1, 5)})",
            )
        else:
            level, message = LogLevel.WARN, f"slow query on {table}: {rng.uniform(1, 30):.2f}s"
        out.append((ts, 4, None, step, {"level": level, "message": message}))
    return out


def _in_time_order(plans: list[_Plan], now: float) -> Iterator[tuple[_Plan, _Item]]:
    """Every run's items, merged in time order (as they arrive from concurrent runs)."""
    heap: list[tuple[float, int, int, int, list[_Item], _Plan]] = []
    it = iter(plans)  # by start time
    nxt = next(it, None)
    while heap or nxt is not None:
        while nxt is not None and (not heap or nxt.start <= heap[0][0]):
            items = _timeline(nxt, now)
            if items:
                heapq.heappush(heap, (items[0][0], items[0][1], nxt.index, 0, items, nxt))
            nxt = next(it, None)
        _, _, idx, pos, items, plan = heap[0]
        yield plan, items[pos]
        pos += 1
        if pos < len(items):
            heapq.heapreplace(heap, (items[pos][0], items[pos][1], idx, pos, items, plan))
        else:
            heapq.heappop(heap)


def generate(
    store: Store, params: Params, *, batch: int = 20_000, progress: Callable[[int, int], None] | None = None
) -> Summary:
    """Write the data set ``params`` describes into ``store`` (which should be
    empty) and record it under :data:`DATASET_STATE`; ``progress`` is called
    with (events written, events in all) after each batch.

    Raises:
        ValueError: parameters no data set fits (see :meth:`Params.check`).
        StoreError: the store failed.
    """
    params.check()
    t0 = time.perf_counter()
    now = time.time() if params.now is None else params.now
    plans = _plans(params, now)
    rng = random.Random(params.seed + 1)
    event_ids, log_ids = _Ids(rng), _Ids(rng)
    analyzer = LogAnalyzer()
    summary = Summary(runs=len(plans), now=now)
    events: list[Event] = []
    logs: list[LogRecord] = []
    analyze = analyzer.analyze

    def flush_events() -> None:
        store.runs.write_events(events)
        summary.events += len(events)
        events.clear()
        if progress is not None:
            progress(summary.events, params.events)

    def flush_logs() -> None:
        store.logs.write_logs(logs)
        summary.logs += len(logs)
        logs.clear()

    for plan, (ts, _, kind, step, attrs) in _in_time_order(plans, now):
        if kind is not None:
            wf = plan.wf.name
            events.append(
                Event(id=event_ids.make(ts), ts=ts, kind=kind, workflow=wf, run_id=plan.run_id, step=step, attrs=attrs)
            )
            if len(events) >= batch:
                flush_events()
            continue
        entry = LogEntry(
            ts, attrs["level"], attrs["message"], f"/var/log/{plan.wf.name}.log", plan.wf.name, plan.run_id, step
        )
        logs.append(LogRecord(log_ids.make(ts), entry, analyze(entry, now).template_id))
        if len(logs) >= batch // 2:
            flush_logs()
    if events:
        flush_events()
    if logs:
        flush_logs()
    store.kept.save(ANALYZER_STATE, analyzer.state())
    summary.faults = _faults(store, plans, now, rng)
    summary.alerts = _alerts(store, plans, now, rng)
    summary.samples = _samples(store, plans, now, params.sample_hours, rng)
    for stats in store.stats.workflow_stats():
        for state, n in stats["by_state"].items():
            summary.by_state[state] = summary.by_state.get(state, 0) + n
    summary.seconds = time.perf_counter() - t0
    store.kept.save(
        DATASET_STATE, {**params.key(), "now": now, "events_written": summary.events, "logs_written": summary.logs}
    )
    return summary


def _faults(store: Store, plans: list[_Plan], now: float, rng: random.Random) -> int:
    """About four faults a day, each hurting the runs that were running then; the last few still open."""
    first = plans[0].start
    n = max(1, int((now - first) / 86400 * 4))
    kinds = list(FaultKind)
    targets = {
        FaultKind.SERVICE_UNAVAILABLE: "postgres-main",
        FaultKind.NETWORK_TIMEOUT: "https://api.internal",
        FaultKind.RESOURCE_EXHAUSTION: "disk:/data",
        FaultKind.DATA_CORRUPTION: "/data/out/part-0003.parquet",
        FaultKind.CONFIGURATION_ERROR: "app.toml:database.url",
    }
    starts = [p.start for p in plans]
    for i in range(n):
        at = first + (now - first) * (i + rng.random()) / n
        kind = kinds[rng.randrange(len(kinds))]
        lo = bisect.bisect_left(starts, at - 3600)
        hi = bisect.bisect_right(starts, at)
        hurt = [p for p in plans[lo:hi] if p.start + p.duration >= at][:20]
        fault = Fault(
            fault_type(kind, targets[kind]),
            f"{kind.alertname} of {targets[kind]}",
            detector=f"{kind.value}-check",
            evidence={"checks_failed": rng.randint(1, 9)},
            workflows=tuple(sorted({p.wf.name for p in hurt})),
            runs=tuple(p.run_id for p in hurt),
        )
        severity = (Severity.WARNING, Severity.ERROR, Severity.CRITICAL)[rng.randrange(3)]
        record, _ = store.faults.open_fault(fault, severity, at)
        if i < n - 3:
            store.faults.resolve_fault(record, min(now, at + rng.uniform(60, 7200)))
    return n


def _alerts(store: Store, plans: list[_Plan], now: float, rng: random.Random) -> int:
    """RunFailed alerts of the last day's failed runs (firing or resolved) and a few stalls."""
    states = []
    for p in plans:
        if p.start < now - 86400:
            continue
        if p.outcome == "failed" or (p.outcome == "lost" and rng.random() < 0.5):
            name = "RunFailed" if p.outcome == "failed" else "RunStalled"
            end = p.start + p.duration
            resolved = rng.random() < 0.6
            alert = Alert(
                {"alertname": name, "workflow": p.wf.name, "run_id": p.run_id, "severity": "error"},
                {"summary": f"run {p.run_id} of {p.wf.name}: {name}"},
                Severity.ERROR,
                "execution",
                min(end, now),
                (min(end, now) + 600) if resolved else None,
                AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
            )
            states.append(AlertState(alert, ("log",) if resolved else ()))
    store.alerts.save_alerts(states, now)
    return len(states)


def _samples(store: Store, plans: list[_Plan], now: float, hours: float, rng: random.Random) -> int:
    """A sample every 15 s of each run of the last ``hours`` (CPU, memory, disk I/O), as the server takes them."""
    since = now - hours * 3600
    rows: list[tuple[float, str, str, str, float]] = []
    total = 0
    for p in plans:
        end = min(now, p.start + p.duration)
        if end < since or p.outcome == "lost":
            continue
        base_mem = rng.uniform(50e6, 2e9)
        t = max(p.start, since)
        while t <= end:
            rows.append((t, "run", p.run_id, "cpu_percent", rng.uniform(5, 190)))
            rows.append((t, "run", p.run_id, "memory_bytes", base_mem * rng.uniform(0.9, 1.1)))
            rows.append((t, "run", p.run_id, "disk_read_bytes_per_s", rng.uniform(0, 5e7)))
            rows.append((t, "run", p.run_id, "disk_write_bytes_per_s", rng.uniform(0, 5e7)))
            t += 15.0
        if len(rows) >= 20_000:
            store.perf.save_samples(rows)
            total += len(rows)
            rows = []
    if rows:
        store.perf.save_samples(rows)
        total += len(rows)
    return total


def dataset_of(store: Store) -> dict[str, Any] | None:
    """The parameters of the data set the store holds (None: none finished)."""
    kept = store.kept.load(DATASET_STATE)
    return kept if isinstance(kept, dict) else None


def holds(store: Store, params: Params) -> bool:
    """Whether ``store`` holds the finished data set of ``params`` (``now`` aside)."""
    kept = dataset_of(store)
    return kept is not None and all(kept.get(k) == v for k, v in params.key().items())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m flowsight.demo.generate", description="Fill a store with a realistic history of many runs."
    )
    ap.add_argument("--db", required=True, help="the store: a SQLite path or postgresql://... (should be empty)")
    ap.add_argument("--runs", type=int, default=Params.runs)
    ap.add_argument("--events", type=int, default=Params.events)
    ap.add_argument("--logs", type=int, default=None, help="log lines in all (default: 20 per run)")
    ap.add_argument("--workflows", type=int, default=Params.workflows)
    ap.add_argument("--days", type=float, default=Params.days)
    ap.add_argument("--seed", type=int, default=Params.seed)
    ap.add_argument("--now", type=float, default=None, help="the end of the history, epoch seconds (default: now)")
    ap.add_argument("--batch", type=int, default=20_000, help="events per write_events call")
    args = ap.parse_args(argv)
    params = Params(
        runs=args.runs,
        events=args.events,
        logs=args.logs,
        workflows=args.workflows,
        days=args.days,
        seed=args.seed,
        now=args.now,
    )
    try:
        params.check()
    except ValueError as exc:
        ap.error(str(exc))
    from flowsight.store import open_store

    options: dict[str, object] = {} if args.db.startswith(("postgres://", "postgresql://")) else {"synchronous": "OFF"}
    t0 = time.perf_counter()
    last = [0.0]

    def report(done: int, total: int) -> None:
        if time.perf_counter() - last[0] >= 5 or done == total:
            last[0] = time.perf_counter()
            rate = done / max(last[0] - t0, 1e-9)
            print(f"  {done:,}/{total:,} events ({rate:,.0f}/s)", file=sys.stderr, flush=True)

    with open_store(args.db, **options) as store:
        if dataset_of(store) is not None or store.runs.count_events():
            ap.error(f"{args.db} is not empty; give a new database")
        s = generate(store, params, batch=args.batch, progress=report)
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(s.by_state.items()))
    print(
        f"{s.runs:,} runs ({states}), {s.events:,} events, {s.logs:,} log lines, {s.faults} faults, "
        f"{s.alerts} alerts, {s.samples:,} samples in {s.seconds:.1f} s ({s.events / s.seconds:,.0f} events/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
