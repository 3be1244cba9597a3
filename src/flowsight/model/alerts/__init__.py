"""Alerts, label matchers, silences and inhibition: the alert manager's
vocabulary, with Prometheus Alertmanager's meanings. No I/O.

An alert is identified by its labels: the fingerprint is a hash of the sorted
label pairs, so the same condition raised twice is one alert (deduplication).

Regex matchers (``=~``, ``!~``) are RE2 patterns, matched by RE2 (google-re2)
in time linear in the label's length, as Alertmanager's Go regexps are: no
pattern can make matching backtrack for ever (``(a+)+`` against ``aaaa…!``).
What RE2 cannot match that way (backreferences, lookahead, lookbehind) is
refused when the matcher is made, saying which pattern and why.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from flowsight.errors import ConfigError


class Severity(str, Enum):
    """Ordered: ``Severity.INFO < Severity.CRITICAL``."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    # ordered by rank, not alphabetically as the str mix-in would
    def __lt__(self, other: object) -> bool:
        return self.rank < other.rank if isinstance(other, Severity) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= other.rank if isinstance(other, Severity) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > other.rank if isinstance(other, Severity) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= other.rank if isinstance(other, Severity) else NotImplemented

    __hash__ = str.__hash__


_RANK = {s: i for i, s in enumerate(Severity)}


class AlertStatus(str, Enum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"

    __hash__ = str.__hash__


SOURCES = ("execution", "performance", "state", "fault", "log")


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits from the sorted label pairs; the same labels, the same alert."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\xff")
        h.update(str(labels[k]).encode())
        h.update(b"\xfe")
    return h.hexdigest()


@dataclass(frozen=True)
class Alert:
    """One alert. ``labels`` identify it (``alertname`` is conventional);
    ``annotations`` describe it (``summary``, ``description``)."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    severity: Severity = Severity.WARNING
    source: str = "execution"
    starts_at: float = 0.0
    ends_at: float | None = None
    status: AlertStatus = AlertStatus.FIRING
    link: str | None = None

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class AlertState:
    """One alert as kept across restarts: the alert and the receivers told
    "firing" that are still owed a "resolved"."""

    alert: Alert
    told: tuple[str, ...] = ()


# ---- matchers ----------------------------------------------------------------
_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
OPS = ("=", "!=", "=~", "!~")


_RE2 = re2.Options()
_RE2.log_errors = False  # a refused pattern is the caller's error, said to the caller, not logged by RE2
_RE2.never_capture = True  # only whether it matches

#: what RE2 leaves out, by the start of its complaint (it has no error codes)
_UNSUPPORTED = (
    ("invalid escape sequence: \\", "backreferences"),  # \1 ... \9: checked below
    ("invalid perl operator: (?=", "lookahead assertions"),
    ("invalid perl operator: (?!", "lookahead assertions"),
    ("invalid perl operator: (?<=", "lookbehind assertions"),
    ("invalid perl operator: (?<!", "lookbehind assertions"),
)


def _refusal(exc: Exception) -> str:
    """Why RE2 refused a pattern, for people (RE2 says it in bytes)."""
    raw = exc.args[0] if exc.args else exc
    why = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    for start, what in _UNSUPPORTED:
        if why.startswith(start) and (what != "backreferences" or why[-1:].isdigit()):
            return f"{why}: {what} are not supported (regexes are RE2 syntax, matched in linear time)"
    return why


def compile_full(pattern: str) -> Any:
    """``pattern`` compiled to match whole strings only (as if anchored by
    ``^(?:...)$``), with RE2.

    Raises:
        ConfigError: RE2 refuses it; says why.
    """
    try:
        re2.compile(pattern, _RE2)  # for the reason: a set only says that it failed
        regex = re2.Set.FullMatchSet(_RE2)
        regex.Add(pattern)
        regex.Compile()
    except re2.error as exc:
        raise ConfigError(_refusal(exc)) from None
    return regex


@dataclass(frozen=True)
class Matcher:
    """``name op value``: ``=`` equal, ``!=`` not equal, ``=~`` regex match,
    ``!~`` regex non-match. Regexes (RE2 syntax) are anchored at both ends,
    as in Alertmanager; a missing label counts as the empty string."""

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ConfigError(f"matcher {self}: operator {self.op!r} must be one of {', '.join(OPS)}")
        if self.op in ("=~", "!~"):
            try:
                self._regex
            except ConfigError as exc:
                raise ConfigError(f"matcher {self}: invalid regex {self.value!r}: {exc}") from None

    @cached_property
    def _regex(self) -> Any:
        return compile_full(self.value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        # bytes: a label may hold half a UTF-16 pair (JSON allows one), which UTF-8 cannot encode strictly
        hit = self._regex.Match(actual.encode("utf-8", "surrogatepass")) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value!r}"


def parse_matcher(text: str) -> Matcher:
    """``workflow=nightly-etl``, ``severity!=info``, ``alertname=~Run.*``;
    the value may be quoted.

    Raises:
        ConfigError: says what a matcher looks like.
    """
    m = _MATCHER.match(text)
    if m is None:
        raise ConfigError(f"matcher {text!r}: write name=value, name!=value, name=~regex or name!~regex")
    name, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return Matcher(name, op, value)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


# ---- silences ------------------------------------------------------------------
@dataclass(frozen=True)
class Silence:
    """Mutes notifications for the alerts its matchers select, from
    ``starts_at`` until ``ends_at`` (then it expires by itself)."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ConfigError("silence: give at least one matcher (a silence of everything is never meant)")
        if self.ends_at < self.starts_at:  # equal: one expired before it started
            raise ConfigError("silence: it must end after it starts")

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.active(now) and matches_all(self.matchers, labels)


def new_silence(
    matchers: Iterable[str],
    *,
    now: float,
    duration: float | None = None,
    starts_at: float | None = None,
    ends_at: float | None = None,
    created_by: str = "",
    comment: str = "",
    silence_id: str | None = None,
) -> Silence:
    """A silence from matcher texts (``workflow=nightly-etl``), starting at
    ``starts_at`` (default now) and ending at ``ends_at`` or after ``duration``.
    What the CLI and the API both make.

    Raises:
        ConfigError: a bad matcher, no end, an end not after the start, an
            end that has passed or one past the last time kept (:data:`~flowsight.model.runs.events.MAX_TS`,
            as for an alert's end), no comment.
    """
    from flowsight.model.runs.events import MAX_TS
    from flowsight.model.runs.ids import new_id

    parsed = tuple(parse_matcher(m) for m in matchers)
    start = now if starts_at is None else starts_at
    if ends_at is None:
        if duration is None:
            raise ConfigError("silence: say how long (a duration such as 2h) or until when")
        ends_at = start + duration
    if ends_at <= start:
        raise ConfigError("silence: it must end after it starts")
    if ends_at <= now:
        raise ConfigError(f"silence: it would end at {_when(ends_at)}, which has passed: it would mute nothing")
    if not ends_at < MAX_TS:  # NaN too
        raise ConfigError(
            f"silence: it would end at {ends_at:g}, past the year 10889, the last time flowsight "
            "keeps; give a shorter duration or an earlier end"
        )
    if not comment.strip():
        raise ConfigError("silence: give a comment (why is this quiet?): the next person on call will ask")
    return Silence(silence_id or new_id(), parsed, start, ends_at, created_by or "unknown", comment.strip())


def _when(ts: float) -> str:
    """``ts`` as UTC text when it is a date, else the number as given."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    except (OverflowError, OSError, ValueError):
        return f"{ts:g}"


# ---- inhibition ------------------------------------------------------------------
@dataclass(frozen=True)
class InhibitRule:
    """A firing alert matching ``source`` mutes alerts matching ``target``
    that have the same values for every label in ``equal``."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def inhibits(self, target_labels: Mapping[str, str], firing: Iterable[Alert]) -> bool:
        return self.inhibitor(target_labels, firing) is not None

    def inhibitor(self, target_labels: Mapping[str, str], firing: Iterable[Alert]) -> Alert | None:
        """The first firing alert that mutes ``target_labels`` under this rule."""
        if not self.is_target(target_labels):
            return None
        wanted = self.equal_values(target_labels)
        for src in firing:
            if src.labels is target_labels or not self.is_source(src.labels):
                continue
            if self.equal_values(src.labels) == wanted:
                return src
        return None

    def is_source(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.source, labels)

    def is_target(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.target, labels)

    def equal_values(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The values of the ``equal`` labels (missing: empty): a source
        mutes the targets with the same ones."""
        return tuple(labels.get(k, "") for k in self.equal)
