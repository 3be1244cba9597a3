"""What the overview and the ETAs read about many runs at once:
:class:`RunStats`, ``store.stats`` (``run_counts``, ``workflow_stats``,
``latest_ended``, ``history``, ``histories``).

They are read on every overview and every page of runs with a live run on
it, over stores of 100,000s of runs, so each is a bounded number of index
reads (migration 9's ``runs_workflow_state_end``: workflow, state, end_time,
start_time, run_id), and what is made from many rows is kept:

* runs by workflow and state are kept counted (``run_counts``, migration 10,
  changed by the same transactions that change the runs), with a count of
  the changes to each (workflow, state)'s runs (migration 11: a run entering
  or leaving the state, or an ended run written again). What is made from a
  workflow's runs is kept against the changes of the states it reads, so one
  read of ``run_counts`` tells, for every workflow at once, whether it is
  still right: a workflow's last run time (any state), the durations of its
  latest completed runs, its latest ended runs (the trend), its history;
* a workflow's history replays the step events of its last completed runs;
  it is also kept by those runs' ids and row versions (a run's version grows
  with every write to it), which ``history`` checks (one query) when asked
  for one workflow. ``store.runs.prune`` forgets what is kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from flowsight.model.runs.events import Event
from flowsight.model.runs.history import WorkflowHistory, quantile
from flowsight.store.codec import replay_steps, row_event
from flowsight.store.database import Database
from flowsight.store.dashboard import RunTimes, StepSpan, runs_created, step_spans

#: workflows whose history is kept (each a few dozen numbers)
HISTORY_CACHE = 2_000
_COMPLETED = (
    "SELECT run_id, start_time, end_time, version FROM runs WHERE workflow = ? AND state = 'completed' "
    "AND start_time IS NOT NULL AND end_time IS NOT NULL ORDER BY end_time DESC LIMIT ?"
)


class RunStats:
    """Overview figures and workflow histories, and what is kept of them."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._histories: OrderedDict[tuple[str, int], tuple[tuple[tuple[str, int], ...], WorkflowHistory]] = (
            OrderedDict()
        )
        self._histories_lock = threading.Lock()
        self._build_lock = threading.Lock()  # one history made at a time: never the same one twice at once
        #: (what, workflow, n) -> (the run_counts changes it was made at, the value)
        self._kept: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def step_spans(self, run_ids: Sequence[str]) -> list[StepSpan]:
        """Every step attempt of these runs, how it ended and how long it took (the dashboard's)."""
        return step_spans(self._db, run_ids)

    def runs_created(self, workflow: str, since: float, until: float, limit: int) -> list[RunTimes]:
        """Up to ``limit`` runs of ``workflow`` created in ``since`` .. ``until``, newest first."""
        return runs_created(self._db, workflow, since, until, limit)

    def forget(self) -> None:
        """Drop what is kept (the runs it was made of may be gone)."""
        with self._histories_lock:
            self._histories.clear()
            self._kept.clear()

    def run_counts(self) -> dict[str, dict[str, tuple[int, int]]]:
        """``run_counts``: workflow -> state -> (runs, changes), every row (runs 0 included)."""
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for wf, state, n, changes in self._db.read("SELECT workflow, state, runs, changes FROM run_counts"):
            out.setdefault(str(wf), {})[str(state)] = (int(n), int(changes))
        return out

    def _keep(
        self, what: str, n: int, marks: dict[str, Any], make: Callable[[list[str]], dict[str, Any]]
    ) -> dict[str, Any]:
        """``what`` of each workflow in ``marks`` (workflow -> its changes):
        kept where made at the same changes, else made (``make`` of the
        workflows missing, in one go) and kept. The marks are read before
        the data, so what is kept is never older than its mark."""
        out: dict[str, Any] = {}
        missing = []
        with self._histories_lock:
            for wf, mark in marks.items():
                hit = self._kept.get((what, wf, n))
                if hit is not None and hit[0] == mark:
                    out[wf] = hit[1]
                else:
                    missing.append(wf)
        if missing:
            made = make(missing)
            with self._histories_lock:
                if len(self._kept) > 4 * HISTORY_CACHE:
                    self._kept.clear()
                for wf in missing:
                    out[wf] = made[wf]
                    self._kept[(what, wf, n)] = (marks[wf], made[wf])
        return out

    def workflow_stats(self, *, recent: int = 500) -> list[dict[str, Any]]:
        """Per workflow: runs by state, success rate of ended runs, duration
        p50/p95 of the last ``recent`` completed runs, time of the last run."""
        counts = self.run_counts()
        stats: dict[str, dict[str, Any]] = {}
        for wf in sorted(counts):
            by = {state: n for state, (n, _) in sorted(counts[wf].items()) if n > 0}
            if by:
                stats[wf] = {"workflow": wf, "runs": sum(by.values()), "by_state": by, "last_run_at": None}
        last = self._keep("last", 0, {wf: tuple(sorted(counts[wf].items())) for wf in stats}, self._last_runs)
        durations = self._keep(
            "durations",
            recent,
            {wf: counts[wf].get("completed") for wf in stats},
            lambda wfs: self._durations(wfs, recent),
        )
        for wf, st in stats.items():
            st["last_run_at"] = last[wf]
            by = st["by_state"]
            ended = sum(by.get(x, 0) for x in ("completed", "failed", "cancelled"))
            st["success_rate"] = round(by.get("completed", 0) / ended, 4) if ended else None
            p50, p95 = durations[wf]
            st["duration_p50_seconds"] = p50
            st["duration_p95_seconds"] = p95
        return list(stats.values())

    def _last_runs(self, workflows: list[str]) -> dict[str, float | None]:
        """Each workflow's newest run (by first event): one index probe
        (runs_workflow) each, in one query, where MAX() over a GROUP BY would
        read every row."""
        out: dict[str, float | None] = {}
        for chunk in _chunks(workflows):
            sql = " UNION ALL ".join(
                "SELECT * FROM (SELECT workflow, created_at FROM runs WHERE workflow = ? "
                f"ORDER BY created_at DESC LIMIT 1) AS s{i}"
                for i in range(len(chunk))
            )
            for wf, created in self._db.read(sql, chunk):
                out[str(wf)] = float(created)
        return {wf: out.get(wf) for wf in workflows}

    def _durations(self, workflows: list[str], recent: int) -> dict[str, tuple[float | None, float | None]]:
        """p50 and p95 of the last ``recent`` completed runs' durations of each workflow."""
        got: dict[str, list[float]] = {wf: [] for wf in workflows}
        for chunk in _chunks(workflows):
            sql = " UNION ALL ".join(
                "SELECT * FROM (SELECT workflow, end_time - start_time FROM runs WHERE workflow = ? "
                "AND state = 'completed' AND start_time IS NOT NULL AND end_time IS NOT NULL "
                f"ORDER BY end_time DESC LIMIT ?) AS s{i}"
                for i in range(len(chunk))
            )
            for wf, d in self._db.read(sql, [x for wf in chunk for x in (wf, recent)]):
                got[str(wf)].append(d)
        return {
            wf: (round(quantile(ds, 0.5), 3), round(quantile(ds, 0.95), 3)) if ds else (None, None)
            for wf, ds in got.items()
        }

    def latest_ended(self, workflows: Sequence[str], limit: int) -> dict[str, list[tuple[str, str, Any, Any]]]:
        """Each workflow's ``limit`` newest (by first event) ended runs,
        newest first: completed, failed or cancelled, as (run id, state,
        start time, end time); kept against those states' changes."""
        counts = self.run_counts()
        marks = {wf: tuple(counts.get(wf, {}).get(s) for s in ("completed", "failed", "cancelled")) for wf in workflows}
        return self._keep("ended", limit, marks, lambda wfs: self._latest_ended(wfs, limit))

    def _latest_ended(self, workflows: list[str], limit: int) -> dict[str, list[tuple[str, str, Any, Any]]]:
        got: dict[str, list[tuple[str, str, Any, Any]]] = {wf: [] for wf in workflows}
        for chunk in _chunks(workflows):
            parts = " UNION ALL ".join(
                f"SELECT * FROM (SELECT {i} AS part, workflow, run_id, state, start_time, end_time, created_at "
                "FROM runs WHERE workflow = ? AND state IN ('completed', 'failed', 'cancelled') "
                f"ORDER BY created_at DESC, run_id DESC LIMIT ?) AS s{i}"
                for i in range(len(chunk))
            )
            sql = f"SELECT * FROM ({parts}) AS u ORDER BY part, created_at DESC, run_id DESC"
            for _, wf, rid, state, start, end, _ in self._db.read(sql, [x for wf in chunk for x in (wf, limit)]):
                got[str(wf)].append((str(rid), str(state), start, end))
        return got

    def histories(self, workflows: Sequence[str], runs: int = 20) -> dict[str, WorkflowHistory]:
        """:meth:`history` of each workflow, checked for all of them in one
        read of ``run_counts`` (the history of a workflow whose completed
        runs have not changed is the one kept)."""
        counts = self.run_counts()
        marks = {wf: counts.get(wf, {}).get("completed") for wf in dict.fromkeys(workflows)}
        return self._keep("history", runs, marks, lambda wfs: {wf: self.history(wf, runs) for wf in wfs})

    def history(self, workflow: str, runs: int = 20) -> WorkflowHistory:
        """Durations from the last ``runs`` completed runs of ``workflow``."""
        done = self._db.read(_COMPLETED, (workflow, runs))
        if not done:
            return WorkflowHistory(workflow)
        key = tuple((str(r[0]), int(r[3])) for r in done)
        hit = self._kept_history(workflow, runs, key)
        if hit is not None:
            return hit
        with self._build_lock:
            hit = self._kept_history(workflow, runs, key)  # made by another thread meanwhile
            if hit is not None:
                return hit
            made = self._make_history(workflow, done)
            with self._histories_lock:
                self._histories[(workflow, runs)] = (key, made)
                self._histories.move_to_end((workflow, runs))
                while len(self._histories) > HISTORY_CACHE:
                    self._histories.popitem(last=False)
        return made

    def _kept_history(self, workflow: str, runs: int, key: tuple[tuple[str, int], ...]) -> WorkflowHistory | None:
        with self._histories_lock:
            hit = self._histories.get((workflow, runs))
            if hit is not None and hit[0] == key:
                self._histories.move_to_end((workflow, runs))
                return hit[1]
        return None

    def _make_history(self, workflow: str, done: list[Any]) -> WorkflowHistory:
        starts = {r[0]: r[1] for r in done}
        durations: dict[str, list[float]] = {}
        offsets: dict[str, list[float]] = {}
        for rid, events in step_events(self._db, list(starts)).items():
            for s in replay_steps(events):
                if s.status == "completed" and s.duration is not None and s.started_at is not None:
                    durations.setdefault(s.step, []).append(s.duration)
                    offsets.setdefault(s.step, []).append(s.started_at - starts[rid])
        order = sorted(offsets, key=lambda s: sorted(offsets[s])[len(offsets[s]) // 2])
        return WorkflowHistory(
            workflow=workflow,
            runs=len(done),
            run_durations=tuple(r[2] - r[1] for r in done),
            step_order=tuple(order),
            step_durations={k: tuple(v) for k, v in durations.items()},
        )


def _chunks(items: list[str], size: int = 100) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def step_events(db: Database, run_ids: Sequence[str]) -> dict[str, list[Event]]:
    """The step events (and ``started``) of these runs, by run, in store order."""
    marks = ", ".join("?" * len(run_ids))
    rows = db.read(
        f"SELECT id, ts, kind, workflow, run_id, step, attrs FROM events WHERE run_id IN ({marks}) "
        "AND kind IN ('started', 'step_started', 'step_completed', 'step_failed') ORDER BY seq",
        list(run_ids),
    )
    out: dict[str, list[Event]] = {}
    for r in rows:
        out.setdefault(r[4], []).append(row_event(r))
    return out
