"""The log analyzer: a template for every entry, counts per template over time.

:class:`LogAnalyzer` is the specification's ``log_analyzer``. For each
:class:`~flowsight.logs.entries.LogEntry` :meth:`LogAnalyzer.analyze` gives

* the entry's template (its message with the variable parts as ``<*>``; of
  a message of several lines -- a traceback joined to the line that logged
  it, a group of lines stored as one entry -- its first line) and
  the template's id, from :class:`~flowsight.logs.templates.TemplateMiner`
  (masking, then a Drain-style fixed-depth tree). The id is a hash of the
  template text, so it is the same in every process and after a restart;
* ``is_new``: whether this shape was never seen before by this analyzer,
  across restarts too (:meth:`state` / :meth:`from_state` keep the tree);
* a count, per (template, workflow) per time bucket.

Counts. An entry counts in the bucket of its own timestamp (the time the line
was written), never later than ``now`` when ``now`` is given (a clock running
ahead must not fill the future). Buckets are ``bucket`` seconds (60 by
default) and kept for ``retention`` seconds (24 h by default) before the
newest one; an entry older than that is templated but not counted. At most
``max_keys`` distinct (template, workflow) pairs are counted per bucket (5000
by default); the entries of further pairs in that bucket count under
``(OVERFLOW, "")``, so a flood of distinct shapes or workflows cannot grow
memory without bound: it is at most buckets x ``max_keys`` counters, in
practice the (template, workflow) pairs that did occur in each minute.

Generalised templates. When the miner generalises a template (a word that
differed becomes ``<*>``), its id changes. Counts already made stay under the
old id, and every read maps ids through :meth:`resolve`, so what was counted
under the old id is counted under the current one; a reader may pass either id.

Evicted templates. The miner keeps at most ``max_templates`` templates
(:mod:`flowsight.logs.templates`); what was counted under one it evicted
is read as ``OVERFLOW`` of the same workflow, and :meth:`state` folds it
there, so the counts saved hold no template the tree lost.

Pure: no I/O, no clock (time comes from the entries and ``now``). Not
thread-safe: one analyzer per consumer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import Any

from flowsight.logs.entries import LogEntry
from flowsight.logs.templates import Match, TemplateMiner

#: The template id the entries of (template, workflow) pairs beyond ``max_keys`` in one bucket count under.
OVERFLOW = "<other>"
_STATE_VERSION = 1


#: What the analyzer made of one entry: ``template_id``, ``template`` and
#: ``is_new`` (the first entry of this shape). The miner's own result, so the
#: hot path makes no object for a repeated shape.
Analysis = Match


@dataclass(frozen=True, slots=True)
class TemplateCount:
    """One line of :meth:`LogAnalyzer.top`."""

    template_id: str
    template: str
    count: int


class LogAnalyzer:
    """Templates and counts for a stream of log entries.

    ``miner``: the template miner (a new one by default; pass one to tune
    it). ``bucket``: seconds per count bucket; ``retention``: seconds of
    buckets kept; ``max_keys``: (template, workflow) pairs counted per bucket.

    Raises:
        ValueError: a bucket or retention that is not positive, ``max_keys`` < 1.
    """

    def __init__(
        self,
        miner: TemplateMiner | None = None,
        *,
        bucket: float = 60.0,
        retention: float = 86400.0,
        max_keys: int = 5000,
    ) -> None:
        if not (math.isfinite(bucket) and bucket > 0):
            raise ValueError(f"bucket must be a positive number of seconds, got {bucket!r}")
        if not (math.isfinite(retention) and retention >= bucket):
            raise ValueError(f"retention must be at least one bucket ({bucket:g}s), got {retention!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")
        self.miner = miner if miner is not None else TemplateMiner()
        self.bucket = float(bucket)
        self.retention = float(retention)
        self.max_keys = max_keys
        self._keep = int(retention // bucket)  # buckets kept before the newest
        # bucket number -> (template id as counted, workflow or "") -> entries
        self._counts: dict[int, dict[tuple[str, str], int]] = {}
        self._newest: int | None = None
        # the bucket written last, so the common case (same minute as the
        # entry before) is one comparison and one dict update
        self._cur_b: int | None = None
        self._cur: dict[tuple[str, str], int] = {}

    # ---- the hot path ---------------------------------------------------------------
    def analyze(self, entry: LogEntry, now: float | None = None) -> Analysis:
        """Template ``entry`` and count it (see the module docstring for which bucket)."""
        message = entry.message
        cut = message.find("\n")
        # a record's shape is its first line: the frames below it, or the other lines of a group, would
        # make every entry a template of its own (and hold its whole text)
        m = self.miner.add(message if cut < 0 else message[:cut])
        ts = entry.timestamp
        if now is not None and ts > now:
            ts = now
        try:
            b = int(ts // self.bucket)
        except (ValueError, OverflowError):  # nan or inf: no usable time, templated and not counted
            return m
        if b == self._cur_b:
            counts = self._cur
        else:
            got = self._bucket(b)
            if got is None:  # older than the retention: templated, not counted
                return m
            counts = got
        key = (m.template_id, entry.workflow or "")
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        elif len(counts) < self.max_keys:
            counts[key] = 1
        else:
            key = (OVERFLOW, "")
            counts[key] = counts.get(key, 0) + 1
        return m

    def _bucket(self, b: int) -> dict[tuple[str, str], int] | None:
        """The counts of bucket ``b`` (made when needed and moving the horizon),
        or None when ``b`` lies before the retention."""
        newest = self._newest
        if newest is None or b > newest:
            self._newest = newest = b
            horizon = b - self._keep
            for old in [k for k in self._counts if k < horizon]:
                del self._counts[old]
        elif b < newest - self._keep:
            return None
        counts = self._counts.get(b)
        if counts is None:
            counts = self._counts[b] = {}
        self._cur_b, self._cur = b, counts
        return counts

    # ---- reading ----------------------------------------------------------------------
    def resolve(self, template_id: str) -> str:
        """The current id of a template id given out earlier (see :meth:`TemplateMiner.resolve`)."""
        return self.miner.resolve(template_id)

    def templates(self) -> dict[str, tuple[str, int]]:
        """Every current template id -> (template text, entries seen)."""
        return self.miner.templates()

    def _buckets(self, since: float | None, until: float | None) -> Iterable[tuple[int, dict[tuple[str, str], int]]]:
        lo = -math.inf if since is None else math.floor(since / self.bucket)
        hi = math.inf if until is None else math.ceil(until / self.bucket)
        if self._newest is not None:
            lo = max(lo, self._newest - self._keep)
        return ((b, c) for b, c in self._counts.items() if lo <= b < hi)

    def series(
        self,
        template_id: str | None = None,
        workflow: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> list[tuple[float, int]]:
        """(bucket start, entries) for each non-empty bucket overlapping
        [``since``, ``until``), oldest first: the entries of ``template_id``
        (any template when None) in ``workflow`` (any when None; ``""``: the
        entries without one)."""
        want = None if template_id is None else self.resolve(template_id)
        resolve = self._resolver(self.miner.templates())
        out = []
        for b, counts in sorted(self._buckets(since, until)):
            n = sum(
                c
                for (tid, wf), c in counts.items()
                if (want is None or resolve(tid) == want) and (workflow is None or wf == workflow)
            )
            if n:
                out.append((b * self.bucket, n))
        return out

    def counts(
        self,
        template_id: str | None = None,
        workflow: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """Entries counted in the buckets overlapping [``since``, ``until``)
        (bucket resolution), for ``template_id`` and ``workflow`` as in :meth:`series`."""
        return sum(n for _, n in self.series(template_id, workflow, since=since, until=until))

    def top(
        self, n: int = 10, *, since: float | None = None, until: float | None = None, workflow: str | None = None
    ) -> list[TemplateCount]:
        """The ``n`` templates with the most entries in [``since``, ``until``),
        most first (ties: by id)."""
        texts = self.miner.templates()
        resolve = self._resolver(texts)
        totals: dict[str, int] = {}
        for _, counts in self._buckets(since, until):
            for (tid, wf), c in counts.items():
                if workflow is None or wf == workflow:
                    cur = resolve(tid)
                    totals[cur] = totals.get(cur, 0) + c
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[: max(0, n)]
        return [TemplateCount(tid, texts.get(tid, ("", 0))[0], c) for tid, c in ranked]

    def _resolver(self, live: Container[str]) -> Callable[[str], str]:
        """id as counted -> the current id of its template; ``OVERFLOW`` for
        an id of no template in ``live`` (one evicted, or ``OVERFLOW``)."""
        cache: dict[str, str] = {}

        def resolve(tid: str) -> str:
            cur = cache.get(tid)
            if cur is None:
                cur = self.miner.resolve(tid)
                cur = cache[tid] = cur if cur in live else OVERFLOW
            return cur

        return resolve

    def _fold_evicted(self) -> None:
        """Count what was counted under an evicted template under ``(OVERFLOW, its workflow)``."""
        resolve = self._resolver(self.miner.templates())
        for counts in self._counts.values():
            for key in [k for k in counts if k[0] != OVERFLOW and resolve(k[0]) == OVERFLOW]:
                other = (OVERFLOW, key[1])
                counts[other] = counts.get(other, 0) + counts.pop(key)

    # ---- restart ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything as JSON-ready data (the miner's tree, the counts, those
        of evicted templates folded first); :meth:`from_state` restores it."""
        self._fold_evicted()
        return {
            "version": _STATE_VERSION,
            "bucket": self.bucket,
            "retention": self.retention,
            "max_keys": self.max_keys,
            "miner": self.miner.state(),
            "counts": [
                [b, tid, wf, n] for b, counts in sorted(self._counts.items()) for (tid, wf), n in counts.items()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LogAnalyzer:
        """Rebuild an analyzer saved by :meth:`state`.

        Raises:
            ValueError: ``state`` is not a saved analyzer state (or of another version).
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            got = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"log analyzer state version {got!r} is not supported (expected {_STATE_VERSION}); start a new analyzer"
            )
        try:
            a = cls(
                TemplateMiner.from_state(state["miner"]),
                bucket=float(state["bucket"]),
                retention=float(state["retention"]),
                max_keys=int(state["max_keys"]),
            )
            for b, tid, wf, n in state["counts"]:
                a._counts.setdefault(int(b), {})[(str(tid), str(wf))] = int(n)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"log analyzer state is damaged ({exc!r}); start a new analyzer") from None
        if a._counts:
            a._newest = max(a._counts)
        return a
