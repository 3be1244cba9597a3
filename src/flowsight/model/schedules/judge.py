"""Judging expected slots: a pure function of (expectations, runs, now) and
of when flowsight was watching. No I/O.

Each slot (an instant a run was expected at) is judged:

``pending``
    no start yet, and the grace has not run out (not a judgement yet).
``ok``
    its run started within ``start_grace`` and nothing below applies.
``late``
    no start within ``start_grace`` (the run may still come), or a run that
    started after it (``findings`` holds ``late``). A slot seen late whose
    end flowsight did not watch stays ``late`` (``findings`` holds
    ``unwatched``): what was seen is kept, and whether it was missed is unknown.
``missed``
    no start before the next slot.
``overran``
    its run ran (or runs) past ``max_runtime``, or one of its steps past the step's.
``too_short``
    its run completed in less than ``min_runtime`` (a run whose start is not
    known, a ping of success alone, is not judged so).
``deadline_missed``
    the run had not completed by the ``deadline`` after the slot.
``unknown``
    no start was recorded and flowsight was not watching over the whole
    period that decides (``[slot, slot + grace]`` for late, ``[slot, next
    slot)`` for missed): the server was down or could not store what it
    received, so a start may have been lost. Never an alert: a restart after
    an outage raises no storm of false ``missed``.

A run belongs to the slot whose window holds its start: from a little before
the slot (:func:`~flowsight.model.schedules.slots.early`) to a little before
the next one. The first run of a window is the slot's; a second one in the
same window, and a run marked manual (its ``trigger`` attribute is
``manual``), are not counted against any slot (their own runtimes are still
judged). So two overlapping runs of two slots are judged each against its own
slot. With ``every``, the next slot is ``every`` after the slot's run started
(``every`` after the slot itself when none did).

The status is the worst finding, in this order: ``missed``, ``unknown``,
``overran``, ``deadline_missed``, ``too_short``, ``late``, ``ok``
(``findings`` lists them all).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from flowsight.model.runs.state import WorkflowState
from flowsight.model.schedules import Expectations
from flowsight.model.schedules.slots import EARLY, NEVER, CronGrid, deadline_after

PENDING, OK, LATE, MISSED = "pending", "ok", "late", "missed"
OVERRAN, TOO_SHORT, DEADLINE_MISSED, UNKNOWN = "overran", "too_short", "deadline_missed", "unknown"
#: a finding of a slot seen late whose end flowsight did not watch (whether a run came after is unknown)
UNWATCHED = "unwatched"
STATUSES = (PENDING, OK, LATE, MISSED, OVERRAN, TOO_SHORT, DEADLINE_MISSED, UNKNOWN)
_WORST = (MISSED, UNKNOWN, OVERRAN, DEADLINE_MISSED, TOO_SHORT, LATE)
_COMPLETED = WorkflowState.COMPLETED
_LIVE = (WorkflowState.RUNNING, WorkflowState.SUSPENDED, WorkflowState.PENDING)
#: at most this many slots are judged in one call (a minutely schedule over a month is 43,200)
MAX_SLOTS = 1_000


@dataclass(slots=True)
class RunFacts:
    """What a judgement needs of one run. ``steps``: step -> (started_at,
    ended_at) of its latest attempt (kept for workflows with step limits)."""

    run_id: str
    started_at: float
    state: WorkflowState = WorkflowState.RUNNING
    ended_at: float | None = None
    manual: bool = False
    start_known: bool = True
    error: str | None = None
    steps: dict[str, tuple[float, float | None]] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.ended_at is None and self.state in _LIVE


class Coverage:
    """When flowsight was watching: spans (start, end) of time, merged where
    they are at most ``tolerance`` apart (a heartbeat late on a busy machine,
    one server process taking over from another). A span ends at its last
    heartbeat: a process that died after it did not watch past it."""

    __slots__ = ("starts", "ends")

    def __init__(self, spans: Iterable[tuple[float, float]], tolerance: float = 30.0) -> None:
        merged: list[list[float]] = []
        for a, b in sorted(spans):
            if merged and a <= merged[-1][1] + tolerance:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.starts = [m[0] for m in merged]
        self.ends = [m[1] for m in merged]

    @classmethod
    def always(cls) -> Coverage:
        """Watching all the time: no guard (the runs alone decide)."""
        c = cls(())
        c.starts, c.ends = [-NEVER], [NEVER]
        return c

    def covers(self, a: float, b: float) -> bool:
        """Whether one span holds all of ``[a, b]``."""
        i = bisect_right(self.starts, a) - 1
        return i >= 0 and b <= self.ends[i]


class SlotJudgement(msgspec.Struct, frozen=True):
    """One slot judged (a msgspec struct: made by the thousand in a pass, and stored as it is)."""

    at: float
    next_at: float
    status: str
    run_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    run_state: str | None = None
    #: the deadline this slot's run had (None: no deadline, or a later slot comes before it)
    deadline_at: float | None = None
    #: "met", "missed", "unknown"; None while it has not come
    deadline: str | None = None
    findings: tuple[str, ...] = ()

    @property
    def started(self) -> bool:
        return self.run_id is not None


class Verdict(msgspec.Struct, frozen=True):
    slots: list[SlotJudgement]
    #: the first slot after now (:data:`~flowsight.model.schedules.slots.NEVER` if none)
    next_at: float
    #: when a judgement may change with no new run event (what a scheduler waits for)
    recheck_at: float


def run_findings(e: Expectations, run: RunFacts, now: float) -> tuple[list[str], float]:
    """``overran`` (the run or a step past its limit), ``too_short``; and when
    that may change with time alone."""
    found: list[str] = []
    recheck = NEVER
    end = run.ended_at
    if e.max_runtime is not None:
        took = (end if end is not None else now) - run.started_at
        if took > e.max_runtime:
            found.append(OVERRAN)
        elif end is None and run.live:
            recheck = run.started_at + e.max_runtime
    if e.steps:
        for name, limit in e.steps.items():
            span = run.steps.get(name)
            if span is None:
                continue
            began, ended = span
            if ended is None and not run.live:
                ended = end
            if (ended if ended is not None else now) - began > limit:
                if OVERRAN not in found:
                    found.append(OVERRAN)
            elif ended is None:
                recheck = min(recheck, began + limit)
    if (
        e.min_runtime is not None
        and run.state is _COMPLETED
        and run.start_known
        and end is not None
        and end - run.started_at < e.min_runtime
    ):
        found.append(TOO_SHORT)
    return found, recheck


def overran_steps(e: Expectations, run: RunFacts, now: float) -> list[tuple[str, float, float]]:
    """The steps of ``run`` running past their limit now: (step, started_at, limit)."""
    out = []
    for name, limit in e.steps.items():
        span = run.steps.get(name)
        if span is not None and span[1] is None and run.live and now - span[0] > limit:
            out.append((name, span[0], limit))
    return out


def judge(
    e: Expectations,
    runs: Sequence[RunFacts],
    now: float,
    *,
    first: float,
    coverage: Coverage,
    grid: CronGrid | None = None,
) -> Verdict:
    """Every slot of ``e`` from ``first`` (a slot) up to ``now``, judged.

    ``runs``: the workflow's runs sorted by start (those starting before
    ``first``'s window are ignored). ``grid``: ``e.schedule``'s, kept by the
    caller across calls (one is made if not given).
    """
    grace = e.grace
    every = e.every
    if every is None:
        if e.schedule is None:
            return Verdict([], NEVER, NEVER)
        if grid is None:
            grid = CronGrid(e.schedule, e.timezone)
    tz = e.zone if e.deadline is not None else None
    out: list[SlotJudgement] = []
    recheck = NEVER
    i, nruns = 0, len(runs)
    s = first
    prev_gap: float | None = None
    while s <= now and len(out) < MAX_SLOTS:
        # the slot's window: from a little before it to a little before the next one (slots.early)
        if every is not None:
            gap = every
            lo, hi = s - min(EARLY, (prev_gap or every) / 10), s + every - min(EARLY, every / 10)
        else:
            assert grid is not None
            n = grid.after(s)
            gap = n - s
            lo, hi = s - min(EARLY, (prev_gap or gap) / 10), n - min(EARLY, gap / 10)
        while i < nruns and runs[i].started_at < lo:
            i += 1
        run = None
        j = i
        while j < nruns and runs[j].started_at < hi:
            if not runs[j].manual:
                run = runs[j]
                i = j + 1
                break
            j += 1
        if every is not None:
            n = (run.started_at if run is not None else s) + every
            if run is not None:  # every start resets the wait (a job that runs more often is never late)
                while i < nruns and runs[i].started_at < n - min(EARLY, every / 10):
                    if not runs[i].manual:
                        n = runs[i].started_at + every
                    i += 1
        dl_at = None
        if tz is not None and e.deadline is not None:
            dl_at = deadline_after(s, e.deadline, tz)
            if n <= dl_at:
                dl_at = None
        j_, r = judge_slot(e, s, n, run, now, coverage, dl_at)
        out.append(j_)
        recheck = min(recheck, r)
        prev_gap = n - s
        s = n
    if s <= now:  # MAX_SLOTS reached: the caller judges on from here
        recheck = now
    else:
        recheck = min(recheck, s + grace)
    return Verdict(out, s, recheck)


def judge_slot(
    e: Expectations,
    s: float,
    n: float,
    run: RunFacts | None,
    now: float,
    coverage: Coverage,
    dl_at: float | None = None,
) -> tuple[SlotJudgement, float]:
    """One slot ``s`` (the next one at ``n``) with its run (None: none
    started in its window) and deadline, judged at ``now``; and when that may
    change with time alone."""
    grace_end = s + e.grace
    deadline: str | None = None
    if run is None:
        found: tuple[str, ...] = ()
        if now < grace_end:
            status, recheck = PENDING, grace_end
        elif now < n:
            status, recheck = (LATE if coverage.covers(s, grace_end) else UNKNOWN), n
        elif coverage.covers(s, n):
            status, recheck = MISSED, NEVER
        elif coverage.covers(s, grace_end):  # seen late; its end unwatched: late it stays, missed is unknown
            status, recheck, found = LATE, NEVER, (UNWATCHED,)
        else:
            status, recheck = UNKNOWN, NEVER
        if dl_at is not None:
            if now < dl_at:
                recheck = min(recheck, dl_at)
            elif status == UNKNOWN or not coverage.covers(s, dl_at):
                deadline = UNKNOWN
            else:
                deadline = MISSED
                if status in (LATE, PENDING):
                    status = DEADLINE_MISSED
        return SlotJudgement(s, n, status, deadline_at=dl_at, deadline=deadline, findings=found), recheck
    findings, recheck = run_findings(e, run, now)
    if run.started_at > grace_end:
        findings.append(LATE)
    if dl_at is not None:
        end = run.ended_at
        if run.state is _COMPLETED and end is not None and end <= dl_at:
            deadline = "met"
        elif now >= dl_at:
            deadline = MISSED
            findings.append(DEADLINE_MISSED)
        else:
            recheck = min(recheck, dl_at)
    status = next((w for w in _WORST if w in findings), OK)
    return (
        SlotJudgement(
            s,
            n,
            status,
            run.run_id,
            run.started_at,
            run.ended_at,
            run.state.value,
            dl_at,
            deadline,
            tuple(findings),
        ),
        recheck,
    )
