"""Log entries and log levels: the specification's ``LogLevel`` and ``LogEntry``.
No I/O; parsing text into entries is :mod:`flowsight.logs.parse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType


class LogLevel(str, Enum):
    """The specification's ``LogLevel{Trace, Debug, Info, Warn, Error, Fatal}``.

    Ordered by rank: ``LogLevel.TRACE < LogLevel.INFO < LogLevel.FATAL``.
    """

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    FATAL = "fatal"

    @property
    def rank(self) -> int:
        return _RANK[self]

    # ordered by rank, not alphabetically as the str mix-in would
    def __lt__(self, other: object) -> bool:
        return self.rank < other.rank if isinstance(other, LogLevel) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= other.rank if isinstance(other, LogLevel) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > other.rank if isinstance(other, LogLevel) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= other.rank if isinstance(other, LogLevel) else NotImplemented

    # Enum's own __hash__ is Python code; str's is C and agrees with __eq__.
    __hash__ = str.__hash__


_RANK = {level: i for i, level in enumerate(LogLevel)}

#: Level words of the common logging libraries and log formats (upper case).
#: Single letters are Android's and glog's (``I``, ``W``, ``E``, ``D``, ``V``,
#: ``F``); Android's ``A`` (assert) is left out as too likely a plain word.
#: ``SEVERE`` is java.util.logging's top level and BGL's second highest, so it
#: is Fatal; BGL's ``FAILURE`` sits between ``SEVERE`` and ``FATAL``.
LEVEL_WORDS: Mapping[str, LogLevel] = MappingProxyType(
    {
        **dict.fromkeys(("TRACE", "FINEST", "FINER", "FINE"), LogLevel.TRACE),
        **dict.fromkeys(("DEBUG", "DBG", "VERBOSE", "D", "V"), LogLevel.DEBUG),
        **dict.fromkeys(("INFO", "INFORMATION", "NOTICE", "I"), LogLevel.INFO),
        **dict.fromkeys(("WARN", "WARNING", "W"), LogLevel.WARN),
        **dict.fromkeys(("ERROR", "ERR", "E"), LogLevel.ERROR),
        **dict.fromkeys(
            ("CRITICAL", "CRIT", "FATAL", "SEVERE", "FAILURE", "PANIC", "EMERG", "EMERGENCY", "ALERT", "F"),
            LogLevel.FATAL,
        ),
    }
)

# Every case the lookup may meet, so the hot path is one dict lookup: upper,
# lower and title case are built once; other mixes go through str.upper().
_WORDS: dict[str, LogLevel] = {}
for _word, _level in LEVEL_WORDS.items():
    _WORDS[_word] = _WORDS[_word.lower()] = _WORDS[_word.title()] = _level


def level_from_word(word: str) -> LogLevel | None:
    """The level a level word names, case-insensitively (``"warning"`` ->
    ``LogLevel.WARN``), or None when ``word`` is no level word."""
    level = _WORDS.get(word)
    if level is None and len(word) <= 11 and word.isascii():  # "ﬁne".upper() is "FINE": ASCII letters only
        level = LEVEL_WORDS.get(word.upper())
    return level


#: Syslog severities (RFC 5424 section 6.2.1), 0 = Emergency ... 7 = Debug.
_SYSLOG = (
    LogLevel.FATAL,
    LogLevel.FATAL,
    LogLevel.FATAL,
    LogLevel.ERROR,
    LogLevel.WARN,
    LogLevel.INFO,
    LogLevel.INFO,
    LogLevel.DEBUG,
)


def level_from_syslog(severity: int) -> LogLevel | None:
    """The level of a syslog numeric severity: 0 Emergency, 1 Alert and
    2 Critical are Fatal, 3 Error, 4 Warning, 5 Notice and 6 Informational
    are Info, 7 Debug. None outside 0-7."""
    return _SYSLOG[severity] if 0 <= severity <= 7 else None


#: Values a field of a :class:`LogEntry` may hold.
FieldValue = str | int | float | bool | None

_NO_FIELDS: Mapping[str, FieldValue] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log record, from whatever format it came in.

    ``timestamp``: seconds since the epoch (a text time without a zone is read
    as UTC). ``source``: where it was read: a file path, ``"stdin"``,
    ``"process:NAME"``, ``"logging"`` or ``"http"``. ``workflow``, ``run_id``,
    ``step``: the run the line belongs to when it says so. ``fields``: the
    other structured values the line carried (logger name, thread, pid, JSON
    or logfmt keys...). ``raw``: the original text, without its line ending.
    """

    timestamp: float
    level: LogLevel
    message: str
    source: str
    workflow: str | None = None
    run_id: str | None = None
    step: str | None = None
    fields: Mapping[str, FieldValue] = field(default_factory=lambda: _NO_FIELDS)
    raw: str = ""
