"""Step attempts of many runs in few queries (the dashboard's performance page).

:meth:`SqlStore.run_steps` reads one run; this reads the step events of up to
``CHUNK`` runs per query (through the ``events_run`` index) and replays them.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowsight.model.execution import StepRecord
from flowsight.store.codec import replay_steps
from flowsight.store.sql import SqlStore

CHUNK = 500


def steps_of_runs(store: SqlStore, run_ids: Sequence[str]) -> dict[str, list[StepRecord]]:
    """Run id -> its step attempts in start order (runs without steps left out)."""
    out: dict[str, list[StepRecord]] = {}
    ids = list(dict.fromkeys(run_ids))
    for i in range(0, len(ids), CHUNK):
        for rid, events in store._step_events(ids[i:i + CHUNK]).items():
            steps = replay_steps(events)
            steps.sort(key=lambda s: (s.started_at if s.started_at is not None else s.ended_at or 0.0, s.attempt))
            out[rid] = steps
    return out
