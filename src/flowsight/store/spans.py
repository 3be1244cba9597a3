"""Which run and step each OpenTelemetry span was mapped to, so that OTLP
log records (which carry only their trace and span ids) land on them
(``store.spans``).

A span is exported when it ends, after the log records written inside it
(a run's span, after everything), so either may come first:

* ``/v1/traces`` links each span it maps (:meth:`SpanLinks.link_spans`),
  then settles the log records parked on those traces;
* ``/v1/logs`` looks up the spans of its records (:meth:`SpanLinks.resolve`)
  before it stores them, parks (:meth:`SpanLinks.park`) each record whose
  own span is not linked yet, then settles those traces itself.

Spans are linked once OTLP log records have come at all (:meth:`SpanLinks.logs_seen`):
a server that takes traces only writes nothing for them; when the first
records come, the spans among the newest events are linked then.

Both settle after their own writes committed, so whichever commits second
finds the other's rows: no record is left parked while its span is linked.
A parked record whose span is not linked but whose trace has a run gets the
run (no step) until its span comes; it leaves the parking when its span
does, when its run's own span has come and the record is
:data:`GIVE_UP_SPAN` old (the run's span ends last: a span not come by then
is one its rule passed over, an HTTP call inside a step), or after
:data:`PARKED_FOR` (a trace nobody maps). A trace of more than one run (a
CI/CD pipeline triggered from another's) gives no run to a record whose own
span is not linked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from flowsight.model.runs.events import EventKind, decode_attrs
from flowsight.store.database import Database

#: how many ids one ``IN (...)`` holds (SQLite's variables are limited)
_CHUNK = 500
#: how long a record waits for its span at most (the retention purge forgets it then)
PARKED_FOR = 86_400.0
#: the kept document that says OTLP log records came, and how often a server looks for it
SEEN, LOOK_EVERY = "otlp.logs_seen", 10.0
#: the events read back for spans when the first log records come
BACKFILL = 200_000
#: a record whose span has not come this long after it was written, its run's span come, is left on the run
GIVE_UP_SPAN = 300.0


class Link(NamedTuple):
    """A span and the run (and step: None for the run's own span) it was mapped to."""

    trace_id: str
    span_id: str
    workflow: str
    run_id: str
    step: str | None
    ts: float


class Place(NamedTuple):
    """Where a log record belongs: its run, and its step where its span is one."""

    workflow: str
    run_id: str
    step: str | None
    exact: bool = True  # False: the span is not linked, the place its trace's run


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class SpanLinks:
    """The spans' runs and steps, and the log records waiting for theirs."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen = False
        self._look_at = 0.0  # (monotonic) when to ask the store again whether log records came
        self._turning = threading.Lock()  # one back-fill a process

    @property
    def linking(self) -> bool:
        """Whether spans are linked (log records came, as far as this process knows)."""
        return self._seen

    @property
    def known(self) -> bool:
        """Whether :meth:`logs_seen` answers without asking the store (it said
        yes, or it need not look again yet)."""
        return self._seen or time.monotonic() < self._look_at

    def logs_seen(self) -> bool:
        """Whether OTLP log records ever came (to this server or another over
        the store): until then spans are not linked, a server that takes
        traces only writes nothing for them. Asks the store at most every
        :data:`LOOK_EVERY` seconds while the answer is no; the server that
        finds it turned (another one took the first records) links the
        spans among the newest events first, its own of the while it did not
        know included."""
        if not self._seen and time.monotonic() >= self._look_at:
            self._look_at = time.monotonic() + LOOK_EVERY
            if self._db.read("SELECT 1 FROM kept_state WHERE name = ?", (SEEN,)):
                self._turn()
        return self._seen

    def saw_logs(self) -> None:
        """Say that OTLP log records came (kept in the store: every server
        links spans from now on), and link the spans of the last
        :data:`BACKFILL` events (the traces whose spans came before their
        first records)."""
        if self._seen:
            return
        with self._db.txn("save of otlp.logs_seen") as cur:
            cur.execute(
                self._db.sql(
                    "INSERT INTO kept_state (name, value, updated_at) VALUES (?, 'true', ?) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                (SEEN, time.time()),
            )
        self._turn()

    def _turn(self) -> None:
        """Link the stored spans, then say seen (a back-fill that fails is done again next time)."""
        with self._turning:
            if not self._seen:
                self.link_spans(self._spans_stored())
                self._seen = True

    def _spans_stored(self) -> list[Link]:
        """The links of the spans among the last :data:`BACKFILL` events (each span's first event)."""
        last = int(self._db.read("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0])
        has_span = (
            "jsonb_exists(attrs, 'otel.span_id')"  # PostgreSQL keeps attrs as JSONB
            if self._db.dialect.name == "postgresql"
            else "json_extract(attrs, '$.\"otel.span_id\"') IS NOT NULL"
        )
        rows = self._db.read(
            f"SELECT ts, workflow, run_id, step, attrs FROM events WHERE seq > ? AND kind IN (?, ?) AND {has_span}",
            (last - BACKFILL, EventKind.STARTED.value, EventKind.STEP_STARTED.value),
        )
        out: list[Link] = []
        for ts, workflow, run_id, step, text in rows:
            attrs = decode_attrs(text)
            trace, span = attrs.get("otel.trace_id"), attrs.get("otel.span_id")
            if isinstance(trace, str) and isinstance(span, str):
                out.append(Link(trace, span, workflow, run_id, step, float(ts)))
        return out

    def link_spans(self, links: Sequence[Link]) -> int:
        """Keep ``links`` (a span linked before keeps its first link), then
        settle the records parked on their traces; returns how many records
        were given a place."""
        if not links:
            return 0
        sql = self._db.sql(
            "INSERT INTO otel_spans (trace_id, span_id, workflow, run_id, step, ts) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (trace_id, span_id) DO NOTHING"
        )
        with self._db.txn("write of span links") as cur:
            cur.executemany(sql, links)
        return self.settle(sorted({link.trace_id for link in links}))

    def resolve(self, spans: Sequence[tuple[str, str | None]]) -> list[Place | None]:
        """Per (trace id, span id or None): the place of that span, else of
        its trace's run (no step), else None."""
        if not spans:
            return []
        by_trace = self._links(sorted({t for t, _ in spans}))
        return [_place(by_trace.get(t, {}), s) for t, s in spans]

    def park(self, records: Sequence[tuple[str, str, str | None, float]]) -> None:
        """Keep (log id, trace id, span id, ts) of records whose span is not linked yet."""
        if not records:
            return
        sql = self._db.sql(
            "INSERT INTO otel_pending (log_id, trace_id, span_id, ts) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (log_id) DO NOTHING"
        )
        with self._db.txn("write of parked log records") as cur:
            cur.executemany(sql, records)

    def settle(self, traces: Sequence[str]) -> int:
        """Give the records parked on ``traces`` their place where it is
        known now; returns how many were given one."""
        parked: list[Any] = []
        for chunk in _chunks(traces):
            parked += self._db.read(
                f"SELECT log_id, trace_id, span_id, ts FROM otel_pending WHERE trace_id IN ({_marks(len(chunk))})",
                chunk,
            )
        waited = time.time() - GIVE_UP_SPAN
        if not parked:
            return 0
        by_trace = self._links(sorted({row[1] for row in parked}))
        exact: list[tuple[str, str, str | None, str]] = []
        run_only: list[tuple[str, str, str]] = []
        for log_id, trace, span, ts in parked:
            links = by_trace.get(trace)
            if not links:
                continue
            place = _place(links, span)
            if place is None:
                continue
            if place.exact:
                exact.append((place.workflow, place.run_id, place.step, log_id))
                continue
            # a record in no span: its trace's run is all there is to know; in a span not linked
            # while the run's own span is, and it waited GIVE_UP_SPAN: one its rule passed over
            ran = any(p.step is None for p in links.values())
            if not span or (ran and float(ts) < waited):
                exact.append((place.workflow, place.run_id, None, log_id))
            else:
                run_only.append((place.workflow, place.run_id, log_id))
        if not exact and not run_only:
            return 0
        with self._db.txn("write of log records' runs") as cur:
            if exact:
                cur.executemany(self._db.sql("UPDATE logs SET workflow = ?, run_id = ?, step = ? WHERE id = ?"), exact)
                cur.executemany(self._db.sql("DELETE FROM otel_pending WHERE log_id = ?"), [(e[3],) for e in exact])
            if run_only:
                cur.executemany(
                    self._db.sql("UPDATE logs SET workflow = ?, run_id = ? WHERE id = ? AND run_id IS NULL"), run_only
                )
        return len(exact) + len(run_only)

    def _links(self, traces: Sequence[str]) -> dict[str, dict[str, Place]]:
        out: dict[str, dict[str, Place]] = {}
        for chunk in _chunks(traces):
            rows = self._db.read(
                "SELECT trace_id, span_id, workflow, run_id, step FROM otel_spans "
                f"WHERE trace_id IN ({_marks(len(chunk))})",
                chunk,
            )
            for trace, span, workflow, run_id, step in rows:
                out.setdefault(trace, {})[span] = Place(workflow, run_id, step)
        return out

    def purge(self, before_ts: float, parked_before: float | None = None) -> int:
        """Forget links older than ``before_ts`` (retention) and parked
        records older than ``parked_before`` (default the same: a record
        whose span has not come in a day, say, is one from a trace nobody
        maps); how many."""
        with self._db.txn("purge of span links") as cur:
            cur.execute(self._db.sql("DELETE FROM otel_spans WHERE ts < ?"), (before_ts,))
            n = int(cur.rowcount or 0)
            cur.execute(
                self._db.sql("DELETE FROM otel_pending WHERE ts < ?"),
                (before_ts if parked_before is None else parked_before,),
            )
            return n + int(cur.rowcount or 0)

    def count_parked(self) -> int:
        return int(self._db.read("SELECT COUNT(*) FROM otel_pending")[0][0])


def _place(links: dict[str, Place], span: str | None) -> Place | None:
    """The span's place among its trace's ``links``; else the trace's run,
    with no step, where the trace has one run."""
    if span is not None:
        place = links.get(span)
        if place is not None:
            return place
    if not links or len({p.run_id for p in links.values()}) > 1:
        return None  # no run, or several (a pipeline triggered by another's): only the span can say
    top = next(iter(links.values()))
    return Place(top.workflow, top.run_id, None, exact=False)
