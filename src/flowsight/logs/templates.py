"""Online log template mining: masking plus a Drain-style fixed-depth tree.

``TemplateMiner.add(message)`` gives every log message a template (its
constant words, variables shown as ``<*>``) and a template id. The id is a
short hash of the template text, so the same template gets the same id in
every process and after a restart; when a template is generalised (a word
that differed becomes ``<*>``), its id changes with its text.

How a message is matched (after He et al., "Drain", ICWS 2017):

1. Masking: numbers, IPv4 addresses, ``0x..`` and long hex ids, UUIDs, paths
   and block ids (``blk_-123``) are replaced by ``<*>`` with one regex pass;
   a comma list of variables becomes one ``<*>``.
2. Tokens: the masked text is split on whitespace, and ``=``/``,`` boundaries
   become separate tokens so ``key=value`` keeps its key as a constant.
3. Tree: clusters are bucketed by (token count, first two constant tokens),
   skipping tokens that hold a digit or ``<*>`` so a leading variable does
   not throw every line into one bucket. In the bucket, the cluster with the
   highest share of equal tokens wins if that share reaches
   ``sim_threshold`` (ties: more ``<*>``); else the message starts a new
   cluster (``is_new``). Joining a cluster turns the differing tokens of its
   template into ``<*>``; ``resolve()`` maps an id given out earlier to the
   template's current id.
4. A bounded cache (raw and masked text -> cluster) answers repeated lines
   and repeated shapes without touching the tree: most log lines are one.

Bounded: at most ``max_templates`` templates (10,000 by default). A new
template beyond that evicts one twentieth of them (at least one): those
with the fewest lines, the least recently seen first -- recency counted
in templates made since -- so a flood of distinct lines evicts its own
one-line templates, not the ones lines keep coming under. The templates that
stay keep their ids; an id always names one template text, so a shape that
was evicted and comes back has its old id again (and is new again). What is
saved is bounded with the tree: the evicted templates and the former ids
that led to them go with them.

One configuration (``sim_threshold=0.5``, ``prefix_depth=2``) for every
source; its grouping accuracy against Drain3's is measured by
``bench/log_templates.py`` (figures: docs/benchmarks.md).

Pure: no I/O, no clock. ``state()`` / ``from_state()`` persist the tree as
plain JSON-ready data.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import operator
import re
from dataclasses import dataclass
from typing import Any

WILDCARD = "<*>"
_STATE_VERSION = 1
#: templates a miner keeps by default (see "Bounded" above)
MAX_TEMPLATES = 10_000
#: the share of ``max_templates`` one eviction removes (at least one): the tree is scanned once per so many
#: new templates, not for each
EVICT_SHARE = 0.05
_EVICTION_ORDER = operator.attrgetter("count", "last")  # fewest lines, then least recently seen

# Every variable starts with a hex digit, "b" (blk_), "/", "+" or "-", never
# inside a word or after a dot. The regex therefore opens with that one
# character class (which lets the engine's C search loop skip other positions
# without entering the pattern: faster than a plain union of the shapes, see
# docs/benchmarks.md),
# checks the character before it, and each shape below goes on after its
# first character, asserting with a lookbehind that the first one was its own.
# Order matters: the longer shapes first so a UUID is not eaten as numbers.
_SEG = r"""[^\s/"'()\[\],]+"""
MASK_PATTERNS: tuple[tuple[str, str], ...] = (
    ("uuid", r"(?<=[0-9a-fA-F])[0-9a-fA-F]{7}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    ("block id blk_-123", r"(?<=b)lk_-?\d+"),
    ("ipv4[:port]", r"(?<=\d)\d{0,2}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.])"),
    ("0x hex", r"(?<=0)[xX][0-9a-fA-F]+\b"),
    ("long hex id (8+, a digit)", r"(?<=[0-9a-fA-F])(?:(?<=\d)|(?=[0-9a-fA-F]*\d))[0-9a-fA-F]{7,}\b"),
    ("path /a/b?q", r"(?<=/)(?<!//)" + _SEG + r"(?:/" + _SEG + r")+/?"),
    ("number", r"(?:(?<=[-+])\d+|(?<=\d)\d*)(?:\.\d+)?(?![\w.])"),
)
#: The one regex every variable shape is masked with (also handed to Drain3 in bench/).
MASK_REGEX = r"[0-9a-fA-Fb/+-](?<![\w.].)(?:" + "|".join(rx for _, rx in MASK_PATTERNS) + ")"
_MASK = re.compile(MASK_REGEX)
# key=value and a,b lists: make the separators their own boundaries.
_SPLIT = re.compile(r"([=,])")
_LIST = re.compile(r"<\*>(?:,<\*>)+")


def mask(message: str) -> str:
    """Return ``message`` with every variable shape replaced by ``<*>``."""
    return _MASK.sub(WILDCARD, message)


def tokenize(message: str) -> list[str]:
    """Mask ``message`` and split it into tokens (``=`` and ``,`` kept apart)."""
    return _tokens(_MASK.sub(WILDCARD, message))


def _tokens(masked: str) -> list[str]:
    if "<*>," in masked:
        # a list of variables ("10.0.0.1,10.0.0.2") is one variable
        masked = _LIST.sub(WILDCARD, masked)
    if "=" in masked or "," in masked:
        masked = _SPLIT.sub(r" \1 ", masked)
    return masked.split()


def template_id(template: str) -> str:
    """Stable short id of a template text: 12 hex digits of its SHA-1."""
    return hashlib.sha1(template.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Match:
    """The template a message was given; ``is_new`` on the first message of one."""

    template_id: str
    template: str
    is_new: bool


class _Cluster:
    __slots__ = ("key", "tokens", "template", "id", "count", "last", "match")

    def __init__(self, key: tuple[str, ...], tokens: list[str], count: int = 1, last: int = 0) -> None:
        self.key = key  # its bucket's
        self.tokens = tokens
        self.count = count
        self.last = last  # the miner's count of templates made when this one was last seen; -1: evicted
        self.template = " ".join(tokens)
        self.id = template_id(self.template)
        self.match = Match(self.id, self.template, False)  # reused for every repeat


def _has_digit(token: str) -> bool:
    for ch in token:
        if "0" <= ch <= "9":
            return True
    return False


class TemplateMiner:
    """Drain-style online template miner.

    ``sim_threshold`` is the share of equal tokens a message needs to join a
    cluster; ``prefix_depth`` how many leading constant tokens pick the
    bucket; ``cache_size`` bounds the masked-text -> cluster cache;
    ``max_templates`` the templates kept (see the module docstring). Not
    thread-safe: one miner per consumer.

    Raises:
        ValueError: a setting out of its range.
    """

    def __init__(
        self,
        sim_threshold: float = 0.5,
        prefix_depth: int = 2,
        cache_size: int = 50_000,
        max_templates: int = MAX_TEMPLATES,
    ) -> None:
        if not 0.0 <= sim_threshold <= 1.0:
            raise ValueError(f"sim_threshold must be between 0 and 1, got {sim_threshold!r}")
        if prefix_depth < 0:
            raise ValueError(f"prefix_depth must be >= 0, got {prefix_depth!r}")
        if max_templates < 1:
            raise ValueError(f"max_templates must be at least 1, got {max_templates!r}")
        self.sim_threshold = sim_threshold
        self.prefix_depth = prefix_depth
        self.cache_size = cache_size
        self.max_templates = max_templates
        self.size = 0  # templates kept
        self.made = 0  # templates made so far: the clock "least recently seen" is counted in
        self.evicted = 0  # templates evicted so far
        # raw and masked text -> its cluster; bounded (cleared when full), not persisted
        self._seen: dict[str, _Cluster] = {}
        self._buckets: dict[tuple[str, ...], list[_Cluster]] = {}
        # old template id -> the id its template was generalised into
        self._renamed: dict[str, str] = {}

    def _key(self, tokens: list[str]) -> tuple[str, ...]:
        # The first prefix_depth constant-looking tokens: a leading variable
        # ("[instance: <*>]", a timestamp) must not put every line in one bucket.
        key = [str(len(tokens))]
        depth = self.prefix_depth
        for tok in tokens:
            if len(key) > depth:
                break
            if "<*>" not in tok and not _has_digit(tok):
                key.append(tok)
        return tuple(key)

    def add(self, message: str) -> Match:
        """Assign ``message`` to a template, creating or generalising one."""
        # Most lines repeat a line or a shape already seen: the same text, or
        # the same masked text, goes to the cluster it went to before, skipping
        # masking (for a repeat), tokenising and the tree. Masking is
        # idempotent, so raw and masked keys share one dict without conflict.
        # A cached cluster still covers the text: templates only generalise.
        seen = self._seen
        cached = seen.get(message)
        if cached is not None:
            cached.count += 1
            cached.last = self.made
            return cached.match
        masked = _MASK.sub(WILDCARD, message)
        cached = seen.get(masked)
        if cached is not None:
            seen[message] = cached
            cached.count += 1
            cached.last = self.made
            return cached.match
        if len(seen) >= self.cache_size:
            seen.clear()
        tokens = _tokens(masked)
        key = self._key(tokens)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = []
        best: _Cluster | None = None
        best_sim = -1.0
        best_wild = -1
        n = len(tokens) or 1
        for cluster in bucket:
            same = 0
            wild = 0
            for a, b in zip(cluster.tokens, tokens):
                if a == b:
                    same += 1
                elif a == WILDCARD:
                    wild += 1
            sim = same / n
            if sim > best_sim or (sim == best_sim and wild > best_wild):
                best, best_sim, best_wild = cluster, sim, wild
        if best is None or best_sim < self.sim_threshold:
            self.made += 1
            cluster = _Cluster(key, tokens, 1, self.made)
            bucket.append(cluster)
            seen[masked] = seen[message] = cluster
            self.size += 1
            if self.size > self.max_templates:
                self._evict(self.size - self.max_templates + int(self.max_templates * EVICT_SHARE), keep=cluster)
            return Match(cluster.id, cluster.template, True)
        best.count += 1
        best.last = self.made
        old = best.tokens
        if old != tokens:
            merged = [a if a == b else WILDCARD for a, b in zip(old, tokens)]
            if merged != old:
                best.tokens = merged
                best.template = " ".join(merged)
                new_id = template_id(best.template)
                self._renamed[best.id] = new_id
                best.id = new_id
                best.match = Match(new_id, best.template, False)
        seen[masked] = seen[message] = best
        return best.match

    def _evict(self, n: int, keep: _Cluster | None = None) -> None:
        """Remove the ``n`` templates with the fewest lines, least recently
        seen first (never ``keep``), with what leads to them: the cache's
        entries, their empty buckets, the former ids that resolve to them."""
        everyone = itertools.chain.from_iterable(self._buckets.values())
        victims = [c for c in heapq.nsmallest(n + 1, everyone, key=_EVICTION_ORDER) if c is not keep][:n]
        for c in victims:
            c.last = -1
            bucket = self._buckets[c.key]
            bucket.remove(c)
            if not bucket:
                del self._buckets[c.key]
        self._seen = {text: c for text, c in self._seen.items() if c.last >= 0}
        if self._renamed:
            gone = {c.id for c in victims}
            self._renamed = {old: new for old, new in self._renamed.items() if self.resolve(old) not in gone}
        self.size -= len(victims)
        self.evicted += len(victims)

    def resolve(self, template_id: str) -> str:
        """The current id of a template given out earlier (it may have been generalised since)."""
        seen = 0
        while template_id in self._renamed and seen <= len(self._renamed):
            template_id = self._renamed[template_id]
            seen += 1
        return template_id

    def templates(self) -> dict[str, tuple[str, int]]:
        """Every template id -> (template text, messages seen)."""
        return {c.id: (c.template, c.count) for b in self._buckets.values() for c in b}

    def state(self) -> dict[str, Any]:
        """The whole tree as JSON-ready data; ``from_state`` restores it."""
        return {
            "version": _STATE_VERSION,
            "sim_threshold": self.sim_threshold,
            "prefix_depth": self.prefix_depth,
            "max_templates": self.max_templates,
            "made": self.made,
            "evicted": self.evicted,
            "buckets": [
                {
                    "key": list(key),
                    "clusters": [{"tokens": c.tokens, "count": c.count, "last": c.last} for c in clusters],
                }
                for key, clusters in self._buckets.items()
                if clusters
            ],
            "renamed": dict(self._renamed),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TemplateMiner:
        """Rebuild a miner saved by ``state()`` (one saved before templates
        were bounded is cut to ``max_templates`` as above).

        Raises ``ValueError`` when ``state`` is not a saved miner state.
        """
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"template miner state version {state.get('version')!r} is not supported "
                f"(expected {_STATE_VERSION}); start a new miner"
            )
        miner = cls(
            float(state["sim_threshold"]),
            int(state["prefix_depth"]),
            max_templates=int(state.get("max_templates", MAX_TEMPLATES)),
        )
        for bucket in state["buckets"]:
            key = tuple(str(k) for k in bucket["key"])
            clusters = [
                _Cluster(key, [str(t) for t in c["tokens"]], int(c["count"]), int(c.get("last", 0)))
                for c in bucket["clusters"]
            ]
            miner._buckets[key] = clusters
            miner.size += len(clusters)
        miner.made = int(state.get("made", miner.size))
        miner.evicted = int(state.get("evicted", 0))
        miner._renamed = {str(k): str(v) for k, v in state.get("renamed", {}).items()}
        if miner.size > miner.max_templates:
            miner._evict(miner.size - miner.max_templates)
        return miner
