"""What the overview and the ETAs read about many runs at once:
:class:`RunStatsMixin` (``workflow_stats``, ``history``).

Both are read on every overview and every page of runs with a live run on
it, over stores of 100,000s of runs, so each is a bounded number of index
reads (migration 9's ``runs_workflow_state_end``: workflow, state, end_time,
start_time, run_id):

* runs by workflow and state are kept counted (``run_counts``, migration 10,
  changed by the same transactions that change the runs);
* a workflow's latest completed runs are its newest entries there;
* a workflow's history replays the step events of its last completed runs;
  the result is kept, keyed by those runs' ids and row versions (a run's
  version grows with every write to it), so it is replayed again only when a
  run completes or one of them is written to. ``prune`` forgets it.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from flowsight.model.events import Event
from flowsight.model.history import WorkflowHistory, quantile
from flowsight.store.codec import replay_steps

#: workflows whose history is kept (each a few dozen numbers)
HISTORY_CACHE = 2_000
_COMPLETED = ("SELECT run_id, start_time, end_time, version FROM runs WHERE workflow = ? AND state = 'completed' "
              "AND start_time IS NOT NULL AND end_time IS NOT NULL ORDER BY end_time DESC LIMIT ?")


class RunStatsMixin(ABC):
    """Overview figures and workflow histories of :class:`flowsight.store.sql.SqlStore`."""

    _histories: OrderedDict[tuple[str, int], tuple[tuple[tuple[str, int], ...], WorkflowHistory]]
    _histories_lock: threading.Lock

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def _step_events(self, run_ids: Sequence[str]) -> dict[str, list[Event]]: ...

    def _init_run_stats(self) -> None:
        self._histories = OrderedDict()
        self._histories_lock = threading.Lock()

    def _forget_histories(self) -> None:
        with self._histories_lock:
            self._histories.clear()

    def workflow_stats(self, *, recent: int = 500) -> list[dict[str, Any]]:
        """Per workflow: runs by state, success rate of ended runs, duration
        p50/p95 of the last ``recent`` completed runs, time of the last run."""
        counts = self._read("SELECT workflow, state, runs FROM run_counts WHERE runs > 0 ORDER BY workflow, state")
        stats: dict[str, dict[str, Any]] = {}
        for wf, state, n in counts:
            st = stats.setdefault(wf, {"workflow": wf, "runs": 0, "by_state": {}, "last_run_at": None})
            st["runs"] += int(n)
            st["by_state"][state] = int(n)
        for wf, st in stats.items():
            # one index probe (runs_workflow) per workflow, where MAX() in the
            # count above would read every row
            last = self._read("SELECT MAX(created_at) FROM runs WHERE workflow = ?", (wf,))[0][0]
            st["last_run_at"] = None if last is None else float(last)
            by = st["by_state"]
            ended = sum(by.get(x, 0) for x in ("completed", "failed", "cancelled"))
            st["success_rate"] = round(by.get("completed", 0) / ended, 4) if ended else None
            durations = [r[0] for r in self._read(
                "SELECT end_time - start_time FROM runs WHERE workflow = ? AND state = 'completed' "
                "AND start_time IS NOT NULL AND end_time IS NOT NULL ORDER BY end_time DESC LIMIT ?",
                (wf, recent))]
            st["duration_p50_seconds"] = round(quantile(durations, 0.5), 3) if durations else None
            st["duration_p95_seconds"] = round(quantile(durations, 0.95), 3) if durations else None
        return [stats[k] for k in sorted(stats)]

    def history(self, workflow: str, runs: int = 20) -> WorkflowHistory:
        """Durations from the last ``runs`` completed runs of ``workflow``."""
        done = self._read(_COMPLETED, (workflow, runs))
        if not done:
            return WorkflowHistory(workflow)
        key = tuple((str(r[0]), int(r[3])) for r in done)
        with self._histories_lock:
            hit = self._histories.get((workflow, runs))
            if hit is not None and hit[0] == key:
                self._histories.move_to_end((workflow, runs))
                return hit[1]
        starts = {r[0]: r[1] for r in done}
        durations: dict[str, list[float]] = {}
        offsets: dict[str, list[float]] = {}
        for rid, events in self._step_events(list(starts)).items():
            for s in replay_steps(events):
                if s.status == "completed" and s.duration is not None and s.started_at is not None:
                    durations.setdefault(s.step, []).append(s.duration)
                    offsets.setdefault(s.step, []).append(s.started_at - starts[rid])
        order = sorted(offsets, key=lambda s: sorted(offsets[s])[len(offsets[s]) // 2])
        made = WorkflowHistory(
            workflow=workflow,
            runs=len(done),
            run_durations=tuple(r[2] - r[1] for r in done),
            step_order=tuple(order),
            step_durations={k: tuple(v) for k, v in durations.items()},
        )
        with self._histories_lock:
            self._histories[(workflow, runs)] = (key, made)
            self._histories.move_to_end((workflow, runs))
            while len(self._histories) > HISTORY_CACHE:
                self._histories.popitem(last=False)
        return made
