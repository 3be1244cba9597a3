"""Runs and their events (``store.runs``): :class:`Runs`.

A batch write is one transaction: events are inserted with their ids as the
idempotency key (an id seen before is a duplicate and changes nothing), then
every new event is applied to its run with :func:`flowsight.model.runs.execution.apply_event`
and the resulting runs, steps and transitions are written beside it. A run's
row carries a version, so a cached copy is used only while nobody else has
written that run.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flowsight.errors import StoreError
from flowsight.model.runs.events import Event, EventKind, encode_attrs
from flowsight.model.runs.execution import ExecutionMetrics, StepRecord, apply_event, new_metrics
from flowsight.model.runs.state import StateTransition, WorkflowState
from flowsight.store.base import WriteResult
from flowsight.store.codec import RUN_COLUMNS, metrics_to_row, replay_steps, row_event, row_to_metrics
from flowsight.store.database import Database
from flowsight.store.dialect import like_escape
from flowsight.store.faults import save_outputs
from flowsight.store.runstats import RunStats, step_events

_log = logging.getLogger("flowsight.store")

_RUN_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS.replace(" ", "").split(",")[2:] if c != "created_at")
# every column but run_id, workflow and created_at, which never change
_RUN_SET = (
    "UPDATE runs SET "
    + ", ".join(
        f"{c} = ?" for c in RUN_COLUMNS.replace(" ", "").split(",") if c not in ("run_id", "workflow", "created_at")
    )
    + " WHERE run_id = ?"
)
_CACHE_SIZE = 10_000
_KIND_TEXT = {k: k.value for k in EventKind}
_STEP_COMPLETED = EventKind.STEP_COMPLETED
_OUTPUT = EventKind.OUTPUT


@dataclass(frozen=True, slots=True)
class Page:
    """One page of runs, newest first; ``cursor`` fetches the next (None at the end)."""

    runs: list[ExecutionMetrics]
    cursor: str | None


#: a page's cursor: the position after which the next page starts, as
#: ``SECONDS-HEX`` (the run's creation time, to the bit, and its id's UTF-8
#: bytes in hex); any text of this form is a position, made here or not
CURSOR_PATTERN = r"^[0-9]{1,17}(\.[0-9]{1,17})?-(?:[0-9a-f]{2}){1,256}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def _encode_cursor(created_at: float, run_id: str) -> str:
    exact = repr(float(created_at))  # read back to the same float: no row skipped or shown twice
    if not re.fullmatch(r"[0-9]{1,17}(\.[0-9]{1,17})?", exact):
        exact = f"{created_at:.6f}"  # not an epoch time of this era; still a position
    return f"{exact}-{run_id.encode().hex()}"


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position a cursor names: (creation time, run id). A run id's
    bytes that are not UTF-8, or a NUL, read as U+FFFD (no run has them:
    the position is then between runs).

    Raises:
        StoreError: the text is not of the cursor's form.
    """
    if not _CURSOR.match(cursor):
        raise StoreError(
            f"cursor {cursor!r} is not a cursor (SECONDS-HEX, as a page's 'cursor' gives); start from the first page"
        )
    created, _, hexed = cursor.partition("-")
    run_id = bytes.fromhex(hexed).decode("utf-8", "replace").replace("\x00", "\ufffd")
    return float(created), run_id


class Runs:
    """Runs, their events, steps and transitions (``store.runs``)."""

    def __init__(self, db: Database, stats: RunStats) -> None:
        self._db = db
        self._stats = stats
        # run_id -> (version, metrics, created_at): valid while the row's version matches
        self._cache: OrderedDict[str, tuple[int, ExecutionMetrics, float]] = OrderedDict()

    # ---- writes --------------------------------------------------------
    def write_events(self, events: Sequence[Event]) -> WriteResult:
        """Store a batch in one transaction; ids seen before are duplicates.

        Returns which ids were accepted and which were duplicates, and every
        state transition the new events caused (refused ones included).

        Raises:
            StoreError: nothing of the batch was stored.
        """
        result = WriteResult()
        if not events:
            return result
        unique: dict[str, Event] = {}
        for ev in events:
            if ev.id in unique:
                result.duplicates.append(ev.id)
            else:
                unique[ev.id] = ev
        rows = [
            (e.id, e.ts, _KIND_TEXT[e.kind], e.workflow, e.run_id, e.step, encode_attrs(e.attrs) if e.attrs else "{}")
            for e in unique.values()
        ]
        with self._db.lock, self._db.guard("write of events"):
            try:
                with self._db.write_txn() as cur:
                    inserted = self._db.dialect.insert_events(cur, rows)
                    if len(inserted) == len(unique):
                        new = list(unique.values())
                    else:
                        new = [e for e in unique.values() if e.id in inserted]
                        result.duplicates.extend(e.id for e in unique.values() if e.id not in inserted)
                    result.accepted = [e.id for e in new]
                    result.seqs = inserted
                    if inserted:
                        self._db.notify_commit(cur, max(inserted.values()))
                    self._project(cur, new, result)
                    outputs = [e for e in new if e.kind is _OUTPUT]
                    if outputs:
                        save_outputs(self._db, cur, outputs)
            except BaseException:
                self._cache.clear()  # the cache may hold what was rolled back
                raise
        return result

    def _project(self, cur: Any, events: list[Event], result: WriteResult) -> None:
        metrics = self._load_runs(cur, {e.run_id for e in events})
        versions = {rid: v for rid, (v, _, _) in metrics.items()}
        transitions: list[StateTransition] = []
        touched: dict[str, tuple[ExecutionMetrics, float]] = {}
        before: dict[str, WorkflowState | None] = {}  # each run's state before this batch (None: a new run)
        step_durations = result.step_durations
        run_durations = result.run_durations
        last_rid = ""
        m = ExecutionMetrics("", "")
        for ev in events:
            rid = ev.run_id
            if rid != last_rid:  # batches come in runs of one run's events
                entry = metrics.get(rid)
                if entry is None:
                    entry = metrics[rid] = (0, new_metrics(ev), ev.ts)
                    before.setdefault(rid, None)
                else:
                    before.setdefault(rid, entry[1].state)
                m = entry[1]
                touched[rid] = (m, entry[2])
                last_rid = rid
            opened = m.open_steps.get(ev.step) if ev.kind is _STEP_COMPLETED and ev.step is not None else None
            tr = apply_event(m, ev, False).transition
            if opened is not None:
                step_durations.append((m.workflow, str(ev.step), ev.ts - opened[1]))
            if tr is not None:
                transitions.append(tr)
                if tr.applied and tr.new_state.terminal and m.start_time is not None:
                    run_durations.append((m.workflow, tr.new_state.value, ev.ts - m.start_time))
        if transitions:
            self._insert_transitions(cur, transitions)
        self._save_runs(cur, touched, versions, before)
        result.transitions = transitions

    def _insert_transitions(self, cur: Any, transitions: list[StateTransition]) -> None:
        cur.executemany(
            self._db.sql(
                "INSERT INTO transitions (run_id, ts, old_state, new_state, reason, source, applied, event_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            [
                (
                    t.workflow_id,
                    t.timestamp,
                    t.old_state.value,
                    t.new_state.value,
                    t.reason,
                    t.source,
                    t.applied,
                    t.event_id,
                )
                for t in transitions
            ],
        )

    def _load_runs(self, cur: Any, run_ids: set[str]) -> dict[str, tuple[int, ExecutionMetrics, float]]:
        """Current metrics of these runs: from the cache where its version is current."""
        out: dict[str, tuple[int, ExecutionMetrics, float]] = {}
        ids = sorted(run_ids)
        self._db.dialect.lock_runs(cur, ids)
        others = self._db.others_wrote(cur)
        if others and self._db.dialect.tells_other_writers:
            self._cache.clear()  # the signal is used up now: no cached run may be trusted on a later write either
        if not others:  # nobody else wrote: every cached run is current
            uncached = []
            for rid in ids:
                hit = self._cache.get(rid)
                if hit is None:
                    uncached.append(rid)
                else:
                    out[rid] = hit
            ids = uncached
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            cur.execute(self._db.sql(f"SELECT run_id, version FROM runs WHERE run_id IN ({marks})"), chunk)
            stale = []
            for rid, version in cur.fetchall():
                cached = self._cache.get(rid)
                if cached is not None and cached[0] == version:
                    out[rid] = cached
                else:
                    stale.append(rid)
            if stale:
                marks = ", ".join("?" * len(stale))
                cur.execute(self._db.sql(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id IN ({marks})"), stale)
                for row in cur.fetchall():
                    out[row[0]] = (int(row[17]), row_to_metrics(row), float(row[3]))
        return out

    def _save_runs(
        self,
        cur: Any,
        touched: dict[str, tuple[ExecutionMetrics, float]],
        versions: dict[str, int],
        before: dict[str, WorkflowState | None],
    ) -> None:
        """Write the touched runs; ``before``: each one's state before (None: a new run)."""
        new, known = [], []
        moved: dict[tuple[str, str], int] = {}
        for rid, (m, created) in touched.items():
            was = before.get(rid)
            if was is not m.state:
                if was is not None:
                    moved[(m.workflow, was.value)] = moved.get((m.workflow, was.value), 0) - 1
                moved[(m.workflow, m.state.value)] = moved.get((m.workflow, m.state.value), 0) + 1
            elif m.state.terminal:  # an ended run written again (a late event): counted as a change
                moved.setdefault((m.workflow, was.value), 0)
            old = versions.get(rid, 0)
            row = metrics_to_row(m, created, old + 1)
            if old:  # stored before: a plain UPDATE, cheaper than an upsert's failed insert
                known.append(row[2:3] + row[4:] + (rid,))
            else:
                new.append(row)
            self._cache[rid] = (old + 1, m, created)
            self._cache.move_to_end(rid)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        if known:
            cur.executemany(self._db.sql(_RUN_SET), known)
        if new:
            marks = ", ".join("?" * 18)
            cur.executemany(
                self._db.sql(
                    f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({marks}) "
                    f"ON CONFLICT (run_id) DO UPDATE SET {_RUN_UPDATE}"
                ),
                new,
            )
        self._count_runs(cur, moved)

    def _count_runs(self, cur: Any, moved: dict[tuple[str, str], int]) -> None:
        """Keep ``run_counts`` (runs per workflow and state, migration 10) in
        step with the runs, in the same transaction, and count a change of
        every (workflow, state) named (migration 11), a net move of 0
        included: its runs changed. In key order, so two writers of the same
        counts lock them in the same order."""
        rows = [(wf, state, n) for (wf, state), n in sorted(moved.items())]
        if rows:
            cur.executemany(
                self._db.sql(
                    "INSERT INTO run_counts (workflow, state, runs, changes) VALUES (?, ?, ?, 1) "
                    "ON CONFLICT (workflow, state) DO UPDATE SET runs = run_counts.runs + excluded.runs, "
                    "changes = run_counts.changes + 1"
                ),
                rows,
            )

    def recount_runs(self) -> int:
        """Set ``run_counts`` to the runs as they are, counting a change of each
        (workflow, state) that was off; returns how many were. Heals what no
        writer of this code counted (an older version writing to the store, a
        lost race); the server runs it at start and hourly. Writers of counts
        wait for it (PostgreSQL: the table is locked first, so a writer's move
        lands on the recounted figure, never under it)."""
        with self._db.txn("recount of runs") as cur:
            self._db.dialect.lock_table(cur, "run_counts")
            cur.execute("SELECT workflow, state, COUNT(*) FROM runs GROUP BY workflow, state")
            actual = {(wf, state): int(n) for wf, state, n in cur.fetchall()}
            cur.execute("SELECT workflow, state, runs FROM run_counts")
            kept = {(wf, state): int(n) for wf, state, n in cur.fetchall()}
            off = {
                key: actual.get(key, 0) - kept.get(key, 0)
                for key in {*actual, *kept}
                if actual.get(key, 0) != kept.get(key, 0)
            }
            self._count_runs(cur, off)
        if off:
            _log.warning("run counts were off for %d (workflow, state) pairs; recounted", len(off))
        return len(off)

    def record_transition(self, transition: StateTransition, *, workflow: str | None = None) -> StateTransition:
        """Keep a transition made outside an event (``StateMonitor.monitor_state_change``).

        An applied one moves the run's state, but only if the run is still in
        ``old_state`` (the database settles races: ``UPDATE ... WHERE state = ?``
        must change one row); otherwise it is kept as refused, with the state
        the run really was in. A run the store has never seen gets a row
        (``workflow`` names it; default: the run id). Returns what was kept.
        """
        tr = transition
        rid = tr.workflow_id
        with self._db.lock, self._db.guard("write of a transition"):
            try:
                with self._db.write_txn() as cur:
                    self._db.dialect.seq_turn(cur)  # before the run's lock, as write_events takes them
                    self._db.dialect.lock_runs(cur, [rid])
                    cur.execute(self._db.sql("SELECT state, workflow FROM runs WHERE run_id = ?"), (rid,))
                    row = cur.fetchone()
                    actual = WorkflowState(row[0]) if row else WorkflowState.PENDING
                    if actual is not tr.old_state:
                        tr = replace(tr, old_state=actual, applied=False)
                    if tr.applied and row is None:
                        m = ExecutionMetrics(workflow_id=rid, workflow=workflow or rid, last_activity=tr.timestamp)
                        m.state = tr.new_state
                        if tr.new_state is WorkflowState.RUNNING:
                            m.start_time = tr.timestamp
                        self._save_runs(cur, {rid: (m, tr.timestamp)}, {}, {rid: None})
                    elif tr.applied:
                        cur.execute(
                            self._db.sql(
                                "UPDATE runs SET state = ?, version = version + 1, "
                                "last_activity = CASE WHEN last_activity > ? THEN last_activity ELSE ? END, "
                                "end_time = CASE WHEN ? THEN ? ELSE end_time END, "
                                "current_step = CASE WHEN ? THEN NULL ELSE current_step END "
                                "WHERE run_id = ? AND state = ?"
                            ),
                            (
                                tr.new_state.value,
                                tr.timestamp,
                                tr.timestamp,
                                tr.new_state.terminal,
                                tr.timestamp,
                                tr.new_state.terminal,
                                rid,
                                tr.old_state.value,
                            ),
                        )
                        if cur.rowcount != 1:  # cannot happen under the run lock; kept as a guard
                            tr = replace(tr, applied=False)
                        elif tr.new_state is not tr.old_state:
                            self._count_runs(cur, {(row[1], tr.old_state.value): -1, (row[1], tr.new_state.value): 1})
                        else:  # the same state again: its times changed
                            self._count_runs(cur, {(row[1], tr.new_state.value): 0})
                    self._insert_transitions(cur, [tr])
            finally:
                self._cache.pop(rid, None)
        return tr

    # ---- reads ---------------------------------------------------------
    def get_run(self, run_id: str) -> ExecutionMetrics | None:
        rows = self._db.read(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return row_to_metrics(rows[0]) if rows else None

    def find_runs(self, prefix: str, limit: int = 10, *, suffix: str = "") -> list[ExecutionMetrics]:
        """Runs whose id starts with ``prefix`` (and ends with ``suffix``): for short ids typed at the CLI."""

        like = like_escape(prefix) + "%" + like_escape(suffix)
        rows = self._db.read(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT ?",
            (like, limit),
        )
        return [row_to_metrics(r) for r in rows]

    def each_run(
        self,
        *,
        workflow: str | None = None,
        states: Sequence[WorkflowState | str] | None = None,
        since: float | None = None,
        limit: int | None = None,
        page: int = 500,
    ) -> Iterator[ExecutionMetrics]:
        """:meth:`list_runs`' runs, newest first, read ``page`` at a time, up to ``limit`` (None: all)."""
        left = limit
        cursor: str | None = None
        while left is None or left > 0:
            got = self.list_runs(
                workflow=workflow, states=states, since=since, limit=min(page, left or page), cursor=cursor
            )
            yield from got.runs
            if left is not None:
                left -= len(got.runs)
            cursor = got.cursor
            if cursor is None:
                break

    def list_runs(
        self,
        *,
        workflow: str | None = None,
        states: Sequence[WorkflowState | str] | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Runs newest first (by first event), filtered; pass ``cursor`` for the next page.
        ``text`` matches (case-insensitively) the run id, workflow, current step or error, in
        every run: from 3 characters through the dialect's trigram index where it has one
        (migration 12), else by reading the runs newest first until the page is full."""
        where: list[str] = []
        params: list[Any] = []
        if workflow is not None:
            where.append("workflow = ?")
            params.append(workflow)
        if since is not None:
            where.append("created_at >= ?")
            params.append(since)
        if until is not None:
            where.append("created_at < ?")
            params.append(until)
        if text:
            cond, text_params = self._db.dialect.text_condition(text.lower(), self._db.read)
            where.append(cond)
            params.extend(text_params)
        if cursor:
            created, rid = decode_cursor(cursor)
            where.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params.extend([created, created, rid])
        wanted = list(dict.fromkeys(WorkflowState(s).value for s in states)) if states else []
        order = "ORDER BY created_at DESC, run_id DESC LIMIT ?"
        if len(wanted) <= 1:
            if wanted:
                where.insert(0, "state = ?")
                params.insert(0, wanted[0])
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            if text:
                # the search reads every run it does not match: the ids are
                # found in an index that holds the searched columns (SQLite:
                # runs_search), and only the page's rows are read whole
                rows = self._db.read(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id IN (SELECT run_id FROM runs "
                    f"{clause} {order}) ORDER BY created_at DESC, run_id DESC",
                    [*params, limit + 1],
                )
            else:
                rows = self._db.read(f"SELECT {RUN_COLUMNS} FROM runs {clause} {order}", [*params, limit + 1])
        else:
            # One newest-first walk of the (state, created_at) index per state,
            # each stopping at the page's size, then merged: with state IN (...)
            # the database would read and sort every run of those states.
            clause = "".join(f" AND {w}" for w in where)
            parts = [
                f"SELECT * FROM (SELECT {RUN_COLUMNS} FROM runs WHERE state = ?{clause} {order}) AS s{i}"
                for i in range(len(wanted))
            ]
            args: list[Any] = []
            for state in wanted:
                args.extend([state, *params, limit + 1])
            rows = self._db.read(f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS u {order}", [*args, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = _encode_cursor(float(rows[-1][3]), rows[-1][0]) if more and rows else None
        return Page([row_to_metrics(r) for r in rows], nxt)

    def run_events(self, run_id: str, *, after_seq: int = 0, limit: int = 10_000) -> list[Event]:
        rows = self._db.read(
            "SELECT id, ts, kind, workflow, run_id, step, attrs FROM events "
            "WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after_seq, limit),
        )
        return [row_event(r) for r in rows]

    def run_transitions(self, run_id: str) -> list[StateTransition]:
        """The run's state history, refused transitions included, oldest first."""
        rows = self._db.read(
            "SELECT run_id, ts, old_state, new_state, reason, source, applied, event_id FROM transitions "
            "WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        return [
            StateTransition(r[0], r[1], WorkflowState(r[2]), WorkflowState(r[3]), r[4], r[5], bool(r[6]), r[7])
            for r in rows
        ]

    def events_after(
        self, seq: int, *, workflow: str | None = None, run_id: str | None = None, limit: int = 1000
    ) -> list[tuple[int, Event]]:
        """Events stored after ``seq`` in store order, with their seq (the stream's backlog)."""
        where, params = ["seq > ?"], [seq]  # type: list[str], list[Any]
        if workflow is not None:
            where.append("workflow = ?")
            params.append(workflow)
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        rows = self._db.read(
            f"SELECT id, ts, kind, workflow, run_id, step, attrs, seq FROM events WHERE {' AND '.join(where)} "
            "ORDER BY seq LIMIT ?",
            [*params, limit],
        )
        return [(int(r[7]), row_event(r)) for r in rows]

    def rule_events(
        self,
        after: int,
        upto: int,
        kinds: Sequence[str],
        *,
        step_completed_of: Sequence[str] = (),
        steps_of: Sequence[str] = (),
        limit: int = 10_000,
    ) -> list[tuple[int, Event]]:
        """Events with ``after < seq <= upto`` of ``kinds``, plus the
        ``step_completed`` ones of the workflows of ``step_completed_of`` and
        every step event of those of ``steps_of`` (what the alert rules and the
        schedules read; the filter runs in the database, so the rest costs little)."""
        marks = ", ".join("?" * len(kinds))
        cond = f"kind IN ({marks})"
        params: list[Any] = [after, upto, *kinds]
        if step_completed_of:
            cond = f"{cond} OR (kind = 'step_completed' AND workflow IN ({', '.join('?' * len(step_completed_of))}))"
            params.extend(step_completed_of)
        if steps_of:
            cond = (
                f"{cond} OR (kind IN ('step_started', 'step_completed', 'step_failed') "
                f"AND workflow IN ({', '.join('?' * len(steps_of))}))"
            )
            params.extend(steps_of)
        cond = f"({cond})"
        rows = self._db.read(
            f"SELECT id, ts, kind, workflow, run_id, step, attrs, seq FROM events WHERE seq > ? AND seq <= ? "
            f"AND {cond} ORDER BY seq LIMIT ?",
            [*params, limit],
        )
        return [(int(r[7]), row_event(r)) for r in rows]

    def last_seq(self) -> int:
        return int(self._db.read("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0])

    def run_steps(self, run_id: str) -> list[StepRecord]:
        """Every step attempt of a run, ended ones and those still running, in start order.

        Steps are not a table of their own: they are replayed from the run's
        step events (the events are the truth; this keeps a write to one row per event).
        """
        steps = replay_steps(step_events(self._db, [run_id]).get(run_id, []))
        steps.sort(key=lambda s: (s.started_at if s.started_at is not None else s.ended_at or 0.0, s.attempt))
        return steps

    def workflows(self) -> list[str]:
        return [r[0] for r in self._db.read("SELECT DISTINCT workflow FROM runs ORDER BY workflow")]

    def count_events(self) -> int:
        return int(self._db.read("SELECT COUNT(*) FROM events")[0][0])

    # ---- retention -----------------------------------------------------
    def prune(self, older_than: float, *, chunk: int = 50_000) -> int:
        """Delete events with ``ts`` before ``older_than``, and runs that ended
        before it (with their transitions). Returns the events deleted.

        Events are found by arrival order, not by an index on ``ts`` (which
        would cost every insert): a binary search over ``seq`` finds the first
        event at or after the cutoff, everything before it goes, in chunks so
        writers are never held up long. An event that arrived late with an old
        timestamp goes in a later prune, once the events around it are old.
        """
        deleted = 0
        with self._db.guard("prune"):
            boundary = self._first_seq_at_or_after(older_than)
            start = int(self._db.read("SELECT COALESCE(MIN(seq), 0) FROM events")[0][0])
            while start < boundary:
                end = min(boundary, start + chunk)
                with self._db.lock, self._db.write_txn() as cur:
                    cur.execute(
                        self._db.sql("DELETE FROM events WHERE seq >= ? AND seq < ? AND ts < ?"),
                        (start, end, older_than),
                    )
                    deleted += int(cur.rowcount or 0)
                start = end
            with self._db.lock, self._db.write_txn() as cur:
                old = "SELECT run_id FROM runs WHERE end_time IS NOT NULL AND end_time < ?"
                cur.execute(self._db.sql(f"DELETE FROM transitions WHERE run_id IN ({old})"), (older_than,))
                # the runs counted off are exactly those deleted (one statement: a run committed meanwhile
                # with an old end is either both or neither), and its rows locked before the counts, as writers do
                cur.execute(
                    self._db.sql(
                        "DELETE FROM runs WHERE end_time IS NOT NULL AND end_time < ? RETURNING workflow, state"
                    ),
                    (older_than,),
                )
                gone: dict[tuple[str, str], int] = {}
                for wf, state in cur.fetchall():
                    gone[(wf, state)] = gone.get((wf, state), 0) - 1
                self._count_runs(cur, gone)
            self._cache.clear()
            self._stats.forget()  # their runs' step events may be gone
        return deleted

    def _first_seq_at_or_after(self, ts: float) -> int:
        """Binary search over seq for the first event with ``ts`` >= ``ts``
        (events arrive roughly in time order); past the end when none is."""
        lo_hi = self._db.read("SELECT MIN(seq), MAX(seq) FROM events")[0]
        if lo_hi[0] is None:
            return 0
        lo, hi = int(lo_hi[0]), int(lo_hi[1]) + 1
        while lo < hi:
            mid = (lo + hi) // 2
            row = self._db.read("SELECT seq, ts FROM events WHERE seq >= ? ORDER BY seq LIMIT 1", (mid,))
            if not row or row[0][1] >= ts:
                hi = mid
            else:
                lo = int(row[0][0]) + 1
        return lo
