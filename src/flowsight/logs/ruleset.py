"""Many log rules over one stream: :class:`LogRuleSet`, and the table of
rule kinds (:data:`RULE_KINDS`, :func:`make_rule`).

The set tries, for each entry, only the rules that can match it: a
multi-pattern prefilter (:class:`flowsight.logs.match.MultiMatcher` when
it is there) finds in one pass the rules whose text condition the message
meets; the rules without a text condition are always tried. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from enum import Enum
from typing import Any

from flowsight.errors import ConfigError
from flowsight.model.alerts import Alert
from flowsight.logs.absence import AbsenceRule
from flowsight.logs.match import MultiMatcher, Pattern
from flowsight.logs.analyzer import Analysis
from flowsight.logs.alert_rules import FrequencyRule, LogAlertRule, MatchRule, NewTemplateRule, SpikeRule
from flowsight.logs.entries import LogEntry

#: The kinds of rule, by the name ``kind`` takes in flowsight.toml.
RULE_KINDS: dict[str, type[LogAlertRule]] = {
    cls.kind: cls for cls in (MatchRule, FrequencyRule, SpikeRule, AbsenceRule, NewTemplateRule)
}


def make_rule(kind: str, name: str, **options: Any) -> LogAlertRule:
    """A new rule of ``kind`` (fresh state). Raises ConfigError for an unknown kind or a bad option."""
    cls = RULE_KINDS.get(kind)
    if cls is None:
        raise ConfigError(f"rule {name!r}: unknown kind {kind!r}; expected one of {', '.join(RULE_KINDS)}")
    try:
        return cls(name, **options)
    except TypeError as exc:  # an option this kind does not take
        raise ConfigError(f"rule {name!r}: {exc}") from None


# ---- many rules -------------------------------------------------------------------------
Prefilter = Callable[[str], Iterable[int]]


class _Default(Enum):
    AUTO = "auto"


AUTO = _Default.AUTO


def _matcher(patterns: Sequence[tuple[int, str, bool]]) -> MultiMatcher | None:
    """:class:`flowsight.logs.match.MultiMatcher` over ``patterns``, or
    None when there are none (then only the rules without text are tried)."""
    if not patterns:
        return None
    return MultiMatcher([Pattern(key, regex, ignore_case) for key, regex, ignore_case in patterns])


def default_prefilter(patterns: Sequence[tuple[int, str, bool]]) -> Prefilter | None:
    """A multi-pattern matcher over ``patterns`` ((rule index, regex,
    ignore_case)): :meth:`flowsight.logs.match.MultiMatcher.match` when it
    is there and takes them all, else None (each rule tests its own)."""
    matcher = _matcher(patterns)
    if matcher is None:
        return None
    match: Prefilter = matcher.match
    return match


class LogRuleSet:
    """Runs ``rules`` over a stream: :meth:`evaluate` for each entry (or
    :meth:`evaluate_many` for a batch that arrived together), :meth:`tick`
    every second or so. Each rule starts watching at ``now``.

    ``prefilter``: text -> the indices of the rules whose ``pattern_regex``
    searches it (a superset is fine: candidates are checked again); built
    from the rules' patterns by :func:`default_prefilter` unless given (None:
    each rule tests its own text). Rules without a text condition are always
    tried. ``external_url``: alerts about a run link to ``{external_url}/runs/{run_id}``.

    Raises:
        ConfigError: two rules with one name.
    """

    def __init__(
        self,
        rules: Sequence[LogAlertRule],
        *,
        now: float,
        prefilter: Prefilter | None | _Default = AUTO,
        external_url: str = "",
    ) -> None:
        seen: set[str] = set()
        for r in rules:
            if r.name in seen:
                raise ConfigError(f"rule {r.name!r}: two log rules have this name; names must be unique")
            seen.add(r.name)
            r.start(now)
        self.rules = list(rules)
        self.external_url = external_url.rstrip("/")
        self._always = [i for i, r in enumerate(self.rules) if r.pattern_regex is None]
        self._texts = frozenset(i for i, r in enumerate(self.rules) if r.pattern_regex is not None)
        # a batch of messages -> the rules each one's text meets, in one pass (the matcher's fast path)
        self._many: Callable[[Sequence[str]], Sequence[Iterable[int]]] | None = None
        if prefilter is AUTO:
            matcher = _matcher(self.patterns())
            self.prefilter: Prefilter | None = None if matcher is None else matcher.match
            self._many = None if matcher is None else matcher.match_many
        else:
            self.prefilter = prefilter

    def patterns(self) -> list[tuple[int, str, bool]]:
        """(rule index, regex, ignore_case) of every rule with a text condition."""
        return [(i, r.pattern_regex, r.ignore_case) for i, r in enumerate(self.rules) if r.pattern_regex is not None]

    def evaluate(self, entry: LogEntry, analysis: Analysis | None, now: float) -> list[Alert]:
        """The alerts ``entry`` calls for, rule by rule in order."""
        hits = None if self.prefilter is None else self.prefilter(entry.message)
        return self._evaluate(entry, analysis, now, hits)

    def evaluate_many(
        self, entries: Sequence[LogEntry], analyses: Sequence[Analysis | None], now: float
    ) -> list[Alert]:
        """:meth:`evaluate` for each entry in order, all at ``now`` (``analyses``:
        one per entry), the texts of the whole batch matched in one pass when
        the matcher can.

        Raises:
            ValueError: not one analysis per entry.
        """
        if len(analyses) != len(entries):
            raise ValueError(f"one analysis per entry: {len(entries)} entries, {len(analyses)} analyses")
        if self._many is not None:
            found: Sequence[Iterable[int] | None] = self._many([e.message for e in entries])
        elif self.prefilter is not None:
            found = [self.prefilter(e.message) for e in entries]
        else:
            found = [None] * len(entries)
        out: list[Alert] = []
        for e, a, hits in zip(entries, analyses, found):
            out += self._evaluate(e, a, now, hits)
        return out

    def _evaluate(
        self, entry: LogEntry, analysis: Analysis | None, now: float, hits: Iterable[int] | None
    ) -> list[Alert]:
        """``hits``: the rules the prefilter found for the entry's text (None: no prefilter)."""
        rules = self.rules
        if hits is None:
            candidates: Iterable[int] = range(len(rules))
        else:
            found = self._texts.intersection(hits)
            candidates = sorted(found.union(self._always)) if found else self._always
        out: list[Alert] = []
        for i in candidates:
            out += rules[i].evaluate(entry, analysis, now)
        return self._linked(out) if out else out

    def tick(self, now: float) -> list[Alert]:
        """The alerts due at ``now`` without an entry (absence, spike down)."""
        return self._linked([a for r in self.rules for a in r.tick(now)])

    def _linked(self, alerts: list[Alert]) -> list[Alert]:
        if not self.external_url:
            return alerts
        return [
            replace(a, link=f"{self.external_url}/runs/{a.labels['run_id']}")
            if "run_id" in a.labels and a.link is None
            else a
            for a in alerts
        ]
