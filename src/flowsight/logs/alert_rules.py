"""Log alert rules: the specification's ``LogAlertRule``, of five kinds.
:class:`~flowsight.logs.ruleset.LogRuleSet` runs many of them over a
stream of entries; :func:`~flowsight.logs.ruleset.make_rule` makes one by kind.

After ElastAlert2's rule types (any, frequency, spike, flatline, new_term,
with ``realert`` and ``query_key``) and Loki's ruler. Every rule has match
conditions, all optional: ``pattern`` (a regex searched in the entry's
message) or ``contains`` (a substring), ``ignore_case``, ``level`` (at
least), ``fields`` (each field equal to a value, compared as text; the entry's
``workflow``, ``run_id``, ``step``, ``source`` and ``level`` are fields too).
:meth:`LogAlertRule.matches` says whether an entry meets them; what follows
from a match depends on the kind:

``match``
    Every matching entry is an alert.
``frequency``
    ``threshold`` matching entries within ``window`` seconds (inclusive), per
    key; the count starts again after an alert (ElastAlert's frequency).
``spike``
    The count in the last ``window`` against the one before it, per key:
    ``up`` when the current one is at least ``factor`` times the previous one
    and at least ``min_count``; ``down`` when the previous one is at least
    ``factor`` times the current one and at least ``min_count`` (so 0 -> 1 is
    no spike); ``both``. Counted in ``window / 10`` steps, so a window is
    exact to a tenth of itself. Judged at each matching entry and at
    :meth:`~LogAlertRule.tick` (a drop shows when nothing comes), and only
    once the rule has watched for two windows (no spike against the empty
    window before a start).
``absence``
    An expected line did not come: ``within`` (none for that long since the
    last one, or since the start) or ``by`` (none by ``HH:MM`` in
    ``timezone`` since the deadline the day before). Fires at its deadline,
    not before, from :meth:`~LogAlertRule.tick`; resolves when the line
    comes. In :mod:`flowsight.logs.absence`.
``new_template``
    The analyzer (:mod:`flowsight.logs.analyzer`) saw this message shape
    for the first time, at ``level`` or above (default ``warn``).

The key. ``group_by`` names the fields that tell alerts apart (ElastAlert's
``query_key``): one window, cooldown and alert per value; each becomes a label
(a field name that is no label name has its other characters made ``_``).
Default ``["workflow"]``, none for ``absence`` (one timer from the start;
with ``group_by``, one per key seen at least once).

Cooldown. ``realert`` (default 5 minutes): after a rule made an alert for a
key, it makes none for that key for that long. ElastAlert's default is one
minute; flowsight's alert manager already dedups a re-sent alert, so the
cooldown only bounds churn and re-firing, and 5 minutes is Alertmanager's
default ``group_interval``, the pace of notifications anyway.

Resolution. ``match``, ``frequency``, ``spike`` and ``new_template`` alerts
carry ``ends_at = now + resolve_after`` (default 10 minutes, twice the
cooldown: a line that keeps coming re-sends the alert before it ends, so it
stays firing, and it resolves 5 to 10 minutes after the last one); the alert
manager resolves them then. ``absence`` alerts carry no end: they resolve when
the line comes.

Time. Windows, cooldowns and deadlines are counted in ``now``, the time the
rule is called at (the arrival time in production), not in the entries' own
timestamps: one clock for entries and ticks, and a line whose timestamp is
off by a zone cannot push a window. The cost: a backlog read at once counts
as a burst. ``starts_at`` of an alert about a line is the line's time
(never after ``now``). State is in memory only: windows and timers start
again at a restart.

Labels: ``alertname`` (the rule's name), the key's labels, ``template_id``
(new_template), the rule's ``labels``, ``severity``. Annotations:
``summary``, ``description``, then the rule's ``annotations`` (which win).
Source ``log``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flowsight.errors import ConfigError
from flowsight.model.alerts import Alert, Severity
from flowsight.model.durations import format_duration
from flowsight.logs.analyzer import Analysis
from flowsight.logs.entries import FieldValue, LogEntry, LogLevel, level_from_word
from flowsight.logs.templates import template_id, tokenize

DEFAULT_REALERT = 300.0
DEFAULT_RESOLVE_AFTER = 600.0
DEFAULT_MAX_KEYS = 10_000
DIRECTIONS = ("up", "down", "both")
ENTRY_FIELDS = ("workflow", "run_id", "step", "source", "level")
RESERVED_LABELS = frozenset({"alertname", "severity", "template_id"})
_SPLIT = 10  # spike: steps per window
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TIME_OF_DAY = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_SHOWN = 300  # characters of a message in a summary
_RANK = {lv: lv.rank for lv in LogLevel}  # a dict lookup, faster than the property on the hot path

Key = tuple[str, ...]


# ---- helpers shared with the config reader -----------------------------------------
def compile_pattern(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """``pattern`` compiled. Raises ConfigError: ``invalid regex '(': ...`` or an empty one."""
    if not pattern:
        raise ConfigError("an empty pattern matches every line; leave pattern out instead")
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ConfigError(f"invalid regex {pattern!r}: {exc}") from None


def time_of_day(text: str) -> dt.time:
    """``"03:00"`` -> 03:00. Raises ConfigError unless ``HH:MM`` (00:00 to 23:59)."""
    m = _TIME_OF_DAY.fullmatch(text.strip())
    if m is None:
        raise ConfigError(f'expected a time of day as HH:MM such as "03:00", got {text!r}')
    return dt.time(int(m.group(1)), int(m.group(2)))


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``. Raises ConfigError when there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown timezone {name!r}; use an IANA name such as 'UTC' or 'Europe/Paris'") from None


def label_name(field: str) -> str:
    """The label a ``group_by`` field becomes: ``logger.name`` -> ``logger_name``."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", field)
    return name if _LABEL.fullmatch(name) else "_" + name


def field_value(entry: LogEntry, name: str) -> FieldValue:
    """The value of field ``name`` of ``entry``: one of its attributes
    (``workflow``, ``run_id``, ``step``, ``source``, ``level``) or of its ``fields``."""
    if name == "workflow":
        return entry.workflow
    if name == "run_id":
        return entry.run_id
    if name == "step":
        return entry.step
    if name == "source":
        return entry.source
    if name == "level":
        return entry.level.value
    return entry.fields.get(name)


def as_text(value: FieldValue) -> str | None:
    """How field values are compared and shown: ``true``/``false``, numbers as Python writes them."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_time(ts: float, tz: dt.tzinfo = dt.UTC) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S %Z")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= _SHOWN else line[: _SHOWN - 3] + "..."


def _about(entry: LogEntry) -> str:
    """``error line from /var/log/etl.log at 2024-..., workflow etl, run r1, step load``."""
    parts = [f"{entry.level.value} line from {entry.source or '?'} at {format_time(entry.timestamp)}"]
    parts += [
        f"{what} {v}" for what, v in (("workflow", entry.workflow), ("run", entry.run_id), ("step", entry.step)) if v
    ]
    return ", ".join(parts)


# ---- the rule --------------------------------------------------------------------------
class LogAlertRule(ABC):
    """One log alert rule (see the module docstring for the kinds).

    ``matches(entry)`` tests the match conditions; ``evaluate(entry, analysis,
    now)`` takes an entry and returns the alerts it calls for (windows and
    cooldown applied); ``tick(now)`` returns the alerts due with no entry
    (absence, spike down) and forgets what has aged out; ``create_alert(entry,
    now)`` builds the rule's alert about ``entry``, whatever the state.

    ``pattern_regex`` is a Python regex equivalent to the text condition (a
    ``contains`` is escaped), None without one: what a multi-pattern
    prefilter is built from, with ``ignore_case``.

    Raises:
        ConfigError: a setting is invalid; the message names the rule.
    """

    kind: ClassVar[str]
    default_group_by: ClassVar[tuple[str, ...]] = ("workflow",)
    default_level: ClassVar[LogLevel | None] = None

    def __init__(
        self,
        name: str,
        *,
        pattern: str | None = None,
        contains: str | None = None,
        ignore_case: bool = False,
        level: LogLevel | str | None = None,
        fields: Mapping[str, FieldValue] | None = None,
        group_by: Sequence[str] | None = None,
        severity: Severity | str = Severity.WARNING,
        realert: float = DEFAULT_REALERT,
        resolve_after: float = DEFAULT_RESOLVE_AFTER,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a log rule needs a name")
        self.name = name
        try:
            self._setup(
                pattern,
                contains,
                ignore_case,
                level,
                fields,
                group_by,
                severity,
                realert,
                resolve_after,
                labels,
                annotations,
                max_keys,
            )
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"rule {name!r}: {exc}") from None
        self._started: float | None = None
        self._last_alert: dict[Key, float] = {}  # key -> when it last made an alert (realert)

    def _setup(
        self,
        pattern: str | None,
        contains: str | None,
        ignore_case: bool,
        level: LogLevel | str | None,
        fields: Mapping[str, FieldValue] | None,
        group_by: Sequence[str] | None,
        severity: Severity | str,
        realert: float,
        resolve_after: float,
        labels: Mapping[str, str] | None,
        annotations: Mapping[str, str] | None,
        max_keys: int,
    ) -> None:
        if pattern is not None and contains is not None:
            raise ConfigError("give pattern or contains, not both")
        if contains is not None and not contains:
            raise ConfigError("an empty contains matches every line; leave it out instead")
        self.ignore_case = bool(ignore_case)
        self.pattern = pattern
        self.contains = contains
        self.pattern_regex = pattern if pattern is not None else (re.escape(contains) if contains else None)
        self._search: Callable[[str], object] | None = None
        if self.pattern_regex is not None:
            if contains is not None and not ignore_case:

                def search(text: str, needle: str = contains) -> bool:
                    return needle in text  # faster than a regex for a plain substring

                self._search = search
            else:
                self._search = compile_pattern(self.pattern_regex, self.ignore_case).search
        lv = self.default_level if level is None else level_from_word(level)
        if lv is None and level is not None:
            raise ConfigError(f"level must be one of {', '.join(v.value for v in LogLevel)}, got {level!r}")
        self.level = lv
        self._min_rank = 0 if lv is None else lv.rank  # 0: trace, any level
        self.fields = {str(k): v for k, v in (fields or {}).items()}
        self._want = tuple((k, as_text(v)) for k, v in self.fields.items())
        self.group_by = tuple(self.default_group_by if group_by is None else group_by)
        self._label_names = tuple(label_name(f) for f in self.group_by)
        if len(set(self._label_names)) != len(self._label_names):
            raise ConfigError(f"group_by {list(self.group_by)} names the same label twice")
        self.severity = Severity(severity)
        if not (math.isfinite(realert) and realert >= 0):
            raise ConfigError(f"realert must be a duration of at least 0 seconds, got {realert!r}")
        if not (math.isfinite(resolve_after) and resolve_after > 0):
            raise ConfigError(f"resolve_after must be a duration greater than zero, got {resolve_after!r}")
        self.realert = float(realert)
        self.resolve_after = float(resolve_after)
        self.labels = dict(labels or {})
        for k in self.labels:
            if not _LABEL.fullmatch(k):
                raise ConfigError(f"label {k!r} is not a label name (letters, digits and _, not first a digit)")
            if k in RESERVED_LABELS or k in self._label_names:
                raise ConfigError(
                    f"label {k!r} is set by the rule itself (alertname is the rule's name; "
                    f"severity, template_id and the group_by labels come from the entry)"
                )
        self.annotations = dict(annotations or {})
        if max_keys < 1:
            raise ConfigError(f"max_keys must be at least 1, got {max_keys!r}")
        self.max_keys = max_keys

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ---- conditions and keys ------------------------------------------------------------
    def matches(self, entry: LogEntry) -> bool:
        """Whether ``entry`` meets the match conditions (level, fields, text)."""
        if self._min_rank and _RANK[entry.level] < self._min_rank:
            return False
        for name, want in self._want:
            if as_text(field_value(entry, name)) != want:
                return False
        search = self._search
        return search is None or bool(search(entry.message))

    def key(self, entry: LogEntry) -> Key:
        """The ``group_by`` values of ``entry`` (``""`` for a missing one)."""
        return tuple(as_text(field_value(entry, f)) or "" for f in self.group_by)

    def alert_labels(self, key: Key, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        labels = {"alertname": self.name}
        labels.update((n, v) for n, v in zip(self._label_names, key) if v)
        if extra:
            labels.update(extra)
        labels.update(self.labels)
        labels["severity"] = self.severity.value
        return labels

    def _scope(self, key: Key) -> str:
        """How a summary names where: ``etl``, ``etl/host=a``, or the rule's name."""
        shown = [v if f == "workflow" else f"{f}={v}" for f, v in zip(self.group_by, key) if v]
        return "/".join(shown) if shown else self.name

    def _what(self) -> str:
        """The match conditions, for people: ``lines matching 'x' at error or above``."""
        parts = []
        if self.pattern is not None:
            parts.append(f"matching /{self.pattern}/" + ("i" if self.ignore_case else ""))
        elif self.contains is not None:
            parts.append(f"containing {self.contains!r}" + (" (any case)" if self.ignore_case else ""))
        if self.level is not None:
            parts.append(f"at {self.level.value} or above")
        parts += [f"with {k}={as_text(v)}" for k, v in self.fields.items()]
        return " ".join(["lines", *parts])

    def _alert(
        self,
        key: Key,
        now: float,
        starts_at: float,
        summary: str,
        description: str,
        *,
        extra: Mapping[str, str] | None = None,
        ends: bool = True,
    ) -> Alert:
        return Alert(
            labels=self.alert_labels(key, extra),
            annotations={"summary": summary, "description": description, **self.annotations},
            severity=self.severity,
            source="log",
            starts_at=starts_at,
            ends_at=now + self.resolve_after if ends else None,
        )

    # ---- cooldown and state --------------------------------------------------------------
    def _cooling(self, key: Key, now: float) -> bool:
        last = self._last_alert.get(key)
        return last is not None and now < last + self.realert

    def _made(self, key: Key, now: float) -> None:
        last = self._last_alert
        if key not in last and len(last) >= self.max_keys:
            self._forget_cooldowns(now)
            if len(last) >= self.max_keys:
                del last[next(iter(last))]
        last[key] = now

    def _forget_cooldowns(self, now: float) -> None:
        for key in [k for k, t in self._last_alert.items() if now >= t + self.realert]:
            del self._last_alert[key]

    def start(self, now: float) -> None:
        """Start watching at ``now`` (once; the first evaluate or tick does it otherwise)."""
        if self._started is None:
            self._started = now

    # ---- the work --------------------------------------------------------------------------
    def evaluate(self, entry: LogEntry, analysis: Analysis | None, now: float) -> list[Alert]:
        """The alerts ``entry`` calls for at ``now`` (``analysis``: the analyzer's, for new_template)."""
        if self._started is None:
            self.start(now)
        if not self.matches(entry):
            return []
        return self._matched(entry, analysis, now)

    @abstractmethod
    def _matched(self, entry: LogEntry, analysis: Analysis | None, now: float) -> list[Alert]:
        """The alerts a matching ``entry`` calls for."""

    def tick(self, now: float) -> list[Alert]:
        """The alerts due at ``now`` without an entry; drops expired state."""
        self.start(now)
        self._forget_cooldowns(now)
        return []

    @abstractmethod
    def create_alert(self, entry: LogEntry, now: float) -> Alert:
        """This rule's firing alert about ``entry`` at ``now``."""


class MatchRule(LogAlertRule):
    """Every matching entry is an alert (ElastAlert's ``any``)."""

    kind = "match"

    def _matched(self, entry: LogEntry, analysis: Analysis | None, now: float) -> list[Alert]:
        key = self.key(entry)
        if self._cooling(key, now):
            return []
        self._made(key, now)
        return [self.create_alert(entry, now)]

    def create_alert(self, entry: LogEntry, now: float) -> Alert:
        key = self.key(entry)
        return self._alert(
            key,
            now,
            min(entry.timestamp, now),
            f"{self._scope(key)}: {_first_line(entry.message)}",
            f"{_about(entry)}; rule {self.name!r} fires on {self._what()}\n{entry.raw or entry.message}",
        )


class FrequencyRule(LogAlertRule):
    """``threshold`` matching entries within ``window`` seconds, per key."""

    kind = "frequency"

    def __init__(self, name: str, *, threshold: int, window: float, **common: Any) -> None:
        super().__init__(name, **common)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"rule {name!r}: threshold must be a whole number of at least 1, got {threshold!r}")
        if not (math.isfinite(window) and window > 0):
            raise ConfigError(f"rule {name!r}: window must be a duration greater than zero, got {window!r}")
        self.threshold = threshold
        self.window = float(window)
        self._seen: dict[Key, deque[float]] = {}  # key -> the times of its last `threshold` matches

    def _matched(self, entry: LogEntry, analysis: Analysis | None, now: float) -> list[Alert]:
        key = self.key(entry)
        times = self._seen.get(key)
        if times is None:
            if len(self._seen) >= self.max_keys:
                self._prune(now)
                if len(self._seen) >= self.max_keys:
                    del self._seen[next(iter(self._seen))]
            times = self._seen[key] = deque(maxlen=self.threshold)
        times.append(now)
        if len(times) < self.threshold or now - times[0] > self.window or self._cooling(key, now):
            return []
        alert = self.create_alert(entry, now)
        self._made(key, now)
        del self._seen[key]  # count again from zero
        return [alert]

    def create_alert(self, entry: LogEntry, now: float) -> Alert:
        key = self.key(entry)
        times = self._seen.get(key) or deque([now])
        n, span = len(times), now - times[0]
        return self._alert(
            key,
            now,
            times[0],
            f"{self._scope(key)}: {n} {self._what()} within {format_duration(self.window)}",
            f"rule {self.name!r} fires at {self.threshold} {self._what()} within {format_duration(self.window)}: "
            f"{n} in {format_duration(span)}; the last, {_about(entry)}:\n{entry.raw or entry.message}",
        )

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._seen.items() if now - t[-1] > self.window]:
            del self._seen[key]

    def tick(self, now: float) -> list[Alert]:
        self._prune(now)
        return super().tick(now)


class SpikeRule(LogAlertRule):
    """The rate of matching entries in the last ``window`` against the window before, per key."""

    kind = "spike"

    def __init__(
        self,
        name: str,
        *,
        window: float,
        factor: float = 3.0,
        direction: str = "up",
        min_count: int = 10,
        **common: Any,
    ) -> None:
        super().__init__(name, **common)
        if not (math.isfinite(window) and window > 0):
            raise ConfigError(f"rule {name!r}: window must be a duration greater than zero, got {window!r}")
        if not (math.isfinite(factor) and factor > 1):
            raise ConfigError(f"rule {name!r}: factor must be a number greater than 1, got {factor!r}")
        if direction not in DIRECTIONS:
            raise ConfigError(f"rule {name!r}: direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ConfigError(f"rule {name!r}: min_count must be a whole number of at least 1, got {min_count!r}")
        self.window = float(window)
        self.factor = float(factor)
        self.direction = direction
        self.min_count = min_count
        self._step = self.window / _SPLIT
        self._counts: dict[Key, dict[int, int]] = {}  # key -> step number -> matches

    def _windows(self, key: Key, now: float) -> tuple[int, int]:
        """(matches in the current window, in the one before) for ``key`` at ``now``."""
        steps = self._counts.get(key)
        if not steps:
            return 0, 0
        cur_from = math.floor(now / self._step) - _SPLIT + 1
        cur = prev = 0
        for s, n in steps.items():
            if s >= cur_from:
                cur += n
            elif s >= cur_from - _SPLIT:
                prev += n
        return cur, prev

    def spike(self, cur: int, prev: int) -> str | None:
        """``"up"``, ``"down"`` or None: what the counts of two windows say under this rule."""
        if self.direction != "down" and cur >= self.min_count and cur > prev and cur >= self.factor * prev:
            return "up"
        if self.direction != "up" and prev >= self.min_count and prev > cur and prev >= self.factor * cur:
            return "down"
        return None

    def _judge(self, key: Key, now: float, entry: LogEntry | None) -> list[Alert]:
        # the window before must have been watched whole
        if self._started is None or self._started > (math.floor(now / self._step) - 2 * _SPLIT + 1) * self._step:
            return []
        cur, prev = self._windows(key, now)
        if self.spike(cur, prev) is None or self._cooling(key, now):
            return []
        self._made(key, now)
        return [self._spike_alert(key, now, cur, prev, entry)]

    def _matched(self, entry: LogEntry, analysis: Analysis | None, now: float) -> list[Alert]:
        key = self.key(entry)
        steps = self._counts.get(key)
        if steps is None:
            if len(self._counts) >= self.max_keys:
                del self._counts[next(iter(self._counts))]
            steps = self._counts[key] = {}
        s = math.floor(now / self._step)
        steps[s] = steps.get(s, 0) + 1
        return self._judge(key, now, entry)

    def create_alert(self, entry: LogEntry, now: float) -> Alert:
        key = self.key(entry)
        return self._spike_alert(key, now, *self._windows(key, now), entry)

    def _spike_alert(self, key: Key, now: float, cur: int, prev: int, entry: LogEntry | None) -> Alert:
        way = self.spike(cur, prev) or ("up" if cur >= prev else "down")
        ratio = "from none" if min(cur, prev) == 0 else f"{max(cur, prev) / min(cur, prev):.1f}x"
        w = format_duration(self.window)
        last = f"; the last, {_about(entry)}:\n{entry.raw or entry.message}" if entry is not None else ""
        return self._alert(
            key,
            now,
            now,
            f"{self._scope(key)}: {self._what()} went {way} {ratio}: {cur} in the last {w}, {prev} in the {w} before",
            f"rule {self.name!r} fires when the count of {self._what()} in {w} goes {self.direction} "
            f"{self.factor:g}x with at least {self.min_count}{last}",
        )

    def tick(self, now: float) -> list[Alert]:
        out: list[Alert] = []
        oldest = math.floor(now / self._step) - 2 * _SPLIT + 1
        for key in list(self._counts):
            steps = self._counts[key]
            for s in [s for s in steps if s < oldest]:
                del steps[s]
            if not steps:
                del self._counts[key]
            elif self.direction != "up":  # a drop shows when nothing comes
                out += self._judge(key, now, None)
        return out + super().tick(now)


class NewTemplateRule(LogAlertRule):
    """A message shape never seen before, at ``level`` or above (default warn)."""

    kind = "new_template"
    default_level = LogLevel.WARN

    def _matched(self, entry: LogEntry, analysis: Analysis | None, now: float) -> list[Alert]:
        if analysis is None or not analysis.is_new:
            return []
        key = self.key(entry)
        if self._cooling(key, now):
            return []
        self._made(key, now)
        return [self.create_alert(entry, now, analysis)]

    def create_alert(self, entry: LogEntry, now: float, analysis: Analysis | None = None) -> Alert:
        """``analysis``: the analyzer's; without it the template is the one a new miner would make."""
        if analysis is None:
            text = " ".join(tokenize(entry.message))
            analysis = Analysis(template_id(text), text, True)
        key = self.key(entry)
        return self._alert(
            key,
            now,
            min(entry.timestamp, now),
            f"{self._scope(key)}: new {entry.level.value} message: {_first_line(analysis.template)}",
            f"first line of this shape ({analysis.template_id}), {_about(entry)}:\n{entry.raw or entry.message}",
            extra={"template_id": analysis.template_id},
        )
