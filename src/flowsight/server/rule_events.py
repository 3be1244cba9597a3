"""What the built-in rules read each round: the events stored since the
last round that they react to, whoever wrote them (this server, the SDK
writing to the store directly, another replica), each once.

This server's own commits are kept as they happen (:meth:`RuleEvents.observe`,
a hook of the hub), so only the stretches of seqs it did not commit are read
back from the store.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from flowsight.model.runs.events import Event, EventKind
from flowsight.monitors.rule_engine import RuleEngine
from flowsight.monitors.schedules import ScheduleMonitor
from flowsight.store.interface import Store

SETTLE = 2.0  # seconds a PostgreSQL insert may take to commit, for the rules' reading window
#: what the rules react to (step_completed only for workflows with failing steps)
RULE_KINDS = ("started", "step_failed", "failed", "completed", "cancelled", "suspended", "resumed")
RULE_KIND_SET = frozenset(EventKind(k) for k in RULE_KINDS)
STEP_COMPLETED = EventKind.STEP_COMPLETED
STEP_KINDS = frozenset({EventKind.STEP_STARTED, EventKind.STEP_COMPLETED, EventKind.STEP_FAILED})
MAX_GAPS = 50
PAGE = 10_000


class RuleEvents:
    def __init__(self, store: Store, rules: RuleEngine, schedules: ScheduleMonitor | None = None) -> None:
        self._store = store
        self._rules = rules
        self._schedules = schedules
        self.last_seq = 0  # events up to here have been read
        self._marks: deque[tuple[float, int]] = deque()
        self._seen_lock = threading.Lock()
        self._seen: list[tuple[int, Event]] = []  # committed here, not yet read
        self._covered: list[tuple[int, int]] = []  # seq ranges committed here (no need to scan them)
        self._step_workflows: set[str] = set()
        self._all_steps: set[str] = set()  # workflows with step limits: every step event

    def observe(self, events: Sequence[Event], seqs: Mapping[str, int]) -> None:
        """A batch this server just committed (the hub's hook, on the ingest
        path: it only keeps what the rules react to). Those seqs need not be
        read back from the store."""
        wanted, steps, all_steps = RULE_KIND_SET, self._step_workflows, self._all_steps
        got = [
            (seq, ev)
            for ev in events
            if (
                ev.kind in wanted
                or (ev.kind is STEP_COMPLETED and ev.workflow in steps)
                or (ev.kind in STEP_KINDS and ev.workflow in all_steps)
            )
            and (seq := seqs.get(ev.id)) is not None
        ]
        with self._seen_lock:
            self._seen.extend(got)
            self._covered.extend(seq_ranges(seqs.values()))

    def start_at(self, seq: int) -> None:
        """Read from after ``seq`` on (a replica that takes the lead starts
        where the last leader stopped); what this server kept is dropped."""
        with self._seen_lock:
            self.last_seq = seq
            self._marks.clear()
            self._seen, self._covered = [], []

    def known_until(self, now: float) -> float:
        """Up to when the events :meth:`read` returns are complete: on
        PostgreSQL a commit may land up to ``SETTLE`` seconds after its seq was
        taken, so what is judged from them (the schedules) is judged that much behind."""
        return now if self._store.commits_in_seq_order else now - SETTLE

    def read(self, now: float) -> list[Event]:
        """The events stored since the last round that the rules react to,
        whoever wrote them: this server's own from :meth:`observe`, the rest
        (the SDK writing to the store directly, another replica) read back
        from the store, where only the stretches of seqs this server did not
        commit are scanned. On PostgreSQL, seqs are taken at insert and
        commits may land out of order, so the window stops at the highest seq
        seen ``SETTLE`` seconds ago."""
        self._marks.append((now, self._store.runs.last_seq()))
        if self._store.commits_in_seq_order:
            upto = self._marks[-1][1]
        else:
            while len(self._marks) > 1 and self._marks[1][0] <= now - SETTLE:
                self._marks.popleft()
            upto = self._marks[0][1] if self._marks[0][0] <= now - SETTLE else self.last_seq
        with self._seen_lock:
            seen = [p for p in self._seen if self.last_seq < p[0] <= upto]
            self._seen = [p for p in self._seen if p[0] > upto]
            covered = merge_ranges(self._covered)
            self._covered = [(max(lo, upto + 1), hi) for lo, hi in covered if hi > upto]
        gaps = uncovered(self.last_seq, upto, covered)
        if len(gaps) > MAX_GAPS:  # many writers interleaved: one scan is cheaper than many
            gaps, seen = [(self.last_seq + 1, upto)], []
        self._step_workflows = self._rules.step_workflows()
        self._all_steps = self._schedules.step_workflows() if self._schedules is not None else set()
        found = list(seen)
        for lo, hi in gaps:
            after = lo - 1
            while after < hi:
                page = self._store.runs.rule_events(
                    after,
                    hi,
                    RULE_KINDS,
                    step_completed_of=sorted(self._step_workflows),
                    steps_of=sorted(self._all_steps),
                    limit=PAGE,
                )
                found.extend(page)
                after = page[-1][0] if len(page) == PAGE else hi
        self.last_seq = max(self.last_seq, upto)
        found.sort(key=lambda p: p[0])
        return [ev for _, ev in found]


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, inclusive runs of consecutive seqs: 3, 4, 5, 9 -> (3, 5), (9, 9)."""
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def uncovered(after: int, upto: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The inclusive stretches of ``after < seq <= upto`` outside the merged ``covered``."""
    gaps, nxt = [], after + 1
    for lo, hi in covered:
        if hi < nxt:
            continue
        if lo > upto:
            break
        if lo > nxt:
            gaps.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= upto:
        gaps.append((nxt, upto))
    return gaps
