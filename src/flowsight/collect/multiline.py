"""Joining multi-line log entries (tracebacks, stack traces) — pure, no I/O.

`Joiner` takes the lines of ONE file in order and hands back entries: an
entry is its first line plus every continuation line that follows it, joined
with ``"\\n"``. Whether a line continues the open entry is decided by
`_continues`, from the line itself and a little state:

A line continues the open entry when

1. it starts with a space or a tab (Python ``  File ...`` frames and their
   source lines, Java ``\\tat ...``, ``\\t... 12 more``, indented messages);
2. it is ``Traceback (most recent call last):`` (Python, after the log line
   that reported the exception);
3. it is a Python chaining line (``During handling of the above exception,
   another exception occurred:`` / ``The above exception was the direct
   cause of the following exception:``) or a Java ``Caused by: ...`` /
   ``Suppressed: ...`` / ``... N more`` line;
4. it is the first unindented line after the frames of a Python traceback
   (the ``ValueError: boom`` line that ends it);
5. it looks like a Java exception header, a dotted class name ending in
   ``Exception``, ``Error`` or ``Throwable`` (``java.lang.IllegalStateException:
   boom`` after the logback line that reported it);
6. it is blank and the entry holds a Python traceback (the blank lines
   around chained exceptions);
7. the entry's first line is a log record (`starts_like_entry`) and this
   line is not: in a log whose entries carry a level or a time, a line with
   neither belongs to the entry above it.

`starts_like_entry` is the parser's own judgement
(:func:`flowsight.logs.parse.carries_level_or_time`: a level or a time
in any format flowsight parses — ``2024-05-01 12:00:00 INFO``, ``ERROR:``,
logfmt's ``level=error``, JSON with a level, syslog ...), after a quick look
for the common prefixes (a timestamp, an upper-case level word, ``{``). So a
logfmt or JSON record after a prefixed line starts an entry of its own.

Anything else starts a new entry, so a plain log without prefixes is passed
through line by line (only rules 1-6 can join in it). Known limits of rule
7: in a file mixing log records with unprefixed ``print`` output, the
printed lines are attached to the record above them; and a continuation line
that begins with a level word (Node's ``Error: boom`` under the line that
logged it) counts as a record of its own.

An open entry is flushed when the next entry starts, when it would grow past
``max_chars``, or by `Joiner.flush_idle` once no line has arrived for
``idle`` seconds (so the traceback that ends a file is not held forever).
Time is passed in (``now``), never read here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flowsight.logs.parse import carries_level_or_time

__all__ = ["Joined", "Joiner", "starts_like_entry"]

_TIMESTAMP = (
    r"\[?(?:"
    r"\d{4}[-/]\d{2}[-/]\d{2}"  # 2024-05-01, 2024/05/01
    r"|\d{2}:\d{2}:\d{2}"  # 12:00:01
    r"|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}"  # syslog: May  1 12:00
    r"|\d{2}/[A-Z][a-z]{2}/\d{4}"  # 01/May/2024 (access logs)
    r"|\d{10}(?:\.\d+)?\b"  # epoch seconds
    r")"
)
_LEVEL = r"\[?(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|SEVERE)\b"
_ENTRY_START = re.compile(rf"(?:{_TIMESTAMP}|{_LEVEL}|\{{)")
_PY_TB_HEADER = "Traceback (most recent call last):"
_CHAIN = re.compile(
    r"(?:During handling of the above exception, another exception occurred:"
    r"|The above exception was the direct cause of the following exception:"
    r"|Caused by: |Suppressed: |\.\.\. \d+ (?:more|common frames omitted))"
)
_JAVA_EXCEPTION = re.compile(r"(?:[A-Za-z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)\b(?::|$)")


def starts_like_entry(line: str) -> bool:
    """True when ``line`` is a log record of its own: it begins with a
    timestamp, a level word or ``{``, or the parser finds a level or a time
    in it (logfmt's ``level=``, syslog's priority, ...)."""
    return _ENTRY_START.match(line) is not None or (line[:1] not in (" ", "\t", "") and carries_level_or_time(line))


@dataclass(slots=True)
class _Open:
    lines: list[str]
    offset: int
    end: int
    chars: int
    prefixed: bool | None  # first line starts like a log entry (rule 7); None: not looked at yet
    in_traceback: bool  # inside Python frames, waiting for the exception line
    has_traceback: bool
    last_seen: float


def _prefixed(entry: _Open) -> bool:
    """Whether the entry's first line is a log record (looked at once, when
    first needed: in a plain log most entries never need it)."""
    if entry.prefixed is None:
        entry.prefixed = starts_like_entry(entry.lines[0])
    return entry.prefixed


def _continues(line: str, entry: _Open) -> bool | None:
    """Whether ``line`` continues ``entry`` (rules 1-7 of the module
    docstring); None for "no, and the line is a log record of its own"."""
    if line[:1] in (" ", "\t"):
        return True
    if line.startswith(_PY_TB_HEADER) or _CHAIN.match(line) is not None:
        return True
    if entry.in_traceback and line.strip():
        return True  # the "ValueError: boom" line closing the traceback
    if _JAVA_EXCEPTION.match(line) is not None:
        return True
    if not line.strip():
        return entry.has_traceback or _prefixed(entry)
    if not _prefixed(entry):
        return False
    return None if starts_like_entry(line) else True


@dataclass(frozen=True, slots=True)
class Joined:
    """One finished entry: its text, the byte offset where its first line
    starts and the byte offset just past its last line."""

    text: str
    offset: int
    end: int


class Joiner:
    """Joins the lines of one file into entries (see the module docstring)."""

    def __init__(self, *, idle: float = 1.0, max_chars: int = 1 << 20) -> None:
        self._idle = idle
        self._max_chars = max_chars
        self._open: _Open | None = None

    @property
    def pending_offset(self) -> int | None:
        """Byte offset of the first line not yet handed out, or None."""
        return None if self._open is None else self._open.offset

    def feed(self, line: str, offset: int, end: int, now: float) -> list[Joined]:
        """Add one line (without its newline) that spans bytes
        ``[offset, end)``; return the entries it completes (0 or 1)."""
        done: list[Joined] = []
        entry = self._open
        continues = _continues(line, entry) if entry is not None else False
        if entry is not None and continues and entry.chars + 1 + len(line) <= self._max_chars:
            entry.lines.append(line)
            entry.end = end
            entry.chars += len(line) + 1
            entry.last_seen = now
            self._note_traceback(entry, line)
            return done
        if entry is not None:
            done.append(self._close())
        entry = _Open(
            lines=[line],
            offset=offset,
            end=end,
            chars=len(line),
            prefixed=True if continues is None else None,  # rule 7 said it is a record
            in_traceback=False,
            has_traceback=False,
            last_seen=now,
        )
        self._note_traceback(entry, line)
        self._open = entry
        return done

    def flush_idle(self, now: float) -> list[Joined]:
        """The open entry if no line arrived for ``idle`` seconds."""
        if self._open is not None and now - self._open.last_seen >= self._idle:
            return [self._close()]
        return []

    def flush(self) -> list[Joined]:
        """The open entry, whatever its age (end of file, rotation, shutdown)."""
        return [] if self._open is None else [self._close()]

    def _close(self) -> Joined:
        assert self._open is not None
        entry, self._open = self._open, None
        return Joined("\n".join(entry.lines), entry.offset, entry.end)

    @staticmethod
    def _note_traceback(entry: _Open, line: str) -> None:
        if line.startswith(_PY_TB_HEADER):
            entry.in_traceback = entry.has_traceback = True
        elif entry.in_traceback and line.strip() and line[:1] not in (" ", "\t"):
            entry.in_traceback = False  # the exception line ended the traceback
