"""Reads for the dashboard's pages, over the store's own tables and indexes:
the step attempts of many runs in few queries, and a workflow's runs created
in a time range (their ids, states and times, without decoding whole run rows).

Functions of the :class:`~flowsight.store.database.Database` (``store.db``),
beside the repositories. Every query is bounded and uses an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from flowsight.store.database import Database

CHUNK = 500


class StepSpan(NamedTuple):
    step: str
    #: completed | failed | running
    status: str
    duration: float | None


def step_spans(db: Database, run_ids: Sequence[str]) -> list[StepSpan]:
    """Every step attempt of these runs with how it ended and how long it took,
    from the step events' kinds and times only (no attributes decoded), ``CHUNK``
    runs per query (index ``events_run``). An attempt is a ``step_started``
    closed by the next ``step_completed`` or ``step_failed`` of its step."""
    out: list[StepSpan] = []
    ids = list(dict.fromkeys(run_ids))
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        rows = db.read(
            f"SELECT run_id, step, kind, ts FROM events WHERE run_id IN ({', '.join('?' * len(chunk))}) "
            "AND kind IN ('step_started', 'step_completed', 'step_failed') ORDER BY seq",
            chunk,
        )
        open_at: dict[tuple[str, str], float] = {}
        for run_id, step, kind, ts in rows:
            if step is None:
                continue
            key = (run_id, step)
            if kind == "step_started":
                if key in open_at:  # started again without an end: the earlier attempt never ended
                    out.append(StepSpan(step, "running", None))
                open_at[key] = float(ts)
                continue
            began = open_at.pop(key, None)
            status = "completed" if kind == "step_completed" else "failed"
            out.append(StepSpan(step, status, None if began is None else max(0.0, float(ts) - began)))
        out.extend(StepSpan(step, "running", None) for (_, step) in open_at)
    return out


class RunTimes(NamedTuple):
    run_id: str
    state: str
    start_time: float | None
    end_time: float | None


def runs_created(db: Database, workflow: str, since: float, until: float, limit: int) -> list[RunTimes]:
    """Up to ``limit`` runs of ``workflow`` created in ``since`` .. ``until``
    (its first event), newest first (index ``runs_workflow``)."""
    rows = db.read(
        "SELECT run_id, state, start_time, end_time FROM runs WHERE workflow = ? AND created_at >= ? "
        "AND created_at < ? ORDER BY created_at DESC, run_id DESC LIMIT ?",
        (workflow, since, until, limit),
    )
    return [RunTimes(str(r[0]), str(r[1]), r[2], r[3]) for r in rows]
