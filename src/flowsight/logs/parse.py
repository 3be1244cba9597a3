"""Turn one line of log text into a :class:`~flowsight.logs.entries.LogEntry`.
Pure code, no I/O: the tailers read the lines and hand them here.

:func:`parse_line` recognises, cheapest discriminating check first:

- ``{`` JSON lines: ``level``/``lvl``/``severity``/``levelname`` (a word, or
  pino/bunyan's 10-60), ``msg``/``message``/``event``, ``ts``/``time``/
  ``timestamp``/``@timestamp`` (epoch s, ms, us or ns, or RFC 3339 text);
  ``workflow``/``run_id``/``step`` fill those attributes; every other key goes
  into ``fields`` (nested values as JSON text).
- ``<`` syslog with a priority: RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID
  MSGID [SD] MSG``, structured-data params into ``fields``) and RFC 3164
  (``<PRI>Mmm dd hh:mm:ss host tag[pid]: msg``); the level is the PRI severity.
- ``[`` Apache error logs (``[Sun Dec 04 04:47:44 2005] [error] ...``, 2.4's
  ``[module:level] [pid N]`` too), ``[TIMESTAMP] LEVEL ...`` and ``[LEVEL] msg``.
- a digit: ``DATE TIME [pid...] [-] LEVEL [thread] component: message`` in its
  many spellings: ISO dates (``2015-10-18 18:01:47,978``, ``T``, zone
  offsets), ``081109 203615`` (HDFS), ``17/06/09 20:10:40`` (Spark),
  ``03-17 16:13:38.811`` (Android, with pid, tid and a one-letter level),
  Python logging's ``%(asctime)s - %(name)s - %(levelname)s - %(message)s``,
  log4j's ``... - LEVEL [thread] - message`` (Zookeeper); an ISO time followed
  by ``host tag[pid]: msg`` is rsyslog's high-precision syslog; HPC's
  ``id node component state epoch flag message``.
- a letter: RFC 3164 without a priority (``/var/log/syslog``, OpenSSH,
  ``Jun 14 15:16:01 combo sshd(pam_unix)[19939]: msg``), Python's
  ``LEVEL:name:message``, ``LEVEL: message``, logfmt (``key=value
  key2="quoted value"``, values kept as text), and a one-word prefix before a
  timestamped line (``nova-api.log.1 2017-05-16 00:00:00.008 ...``).
- ``-`` or a word then an epoch and a dotted date: BGL.

Contract: ``parse_line`` never raises. A line that fits no format is kept as
Info with its text as the message and ``now`` as its time. Times without a
zone are UTC; times without a year take ``default_year``, or else the year of
``now`` (the previous year when that would put the line more than a day after
``now``: December's lines read in January). Two-digit years are 2000-2069
and 1970-1999. A number is epoch seconds, ms, us or ns by its magnitude (up
to the year 5138 in each); a bigger one (``1e300``) is no time. A time
before 1970 or more than :data:`MAX_AHEAD` after ``now`` is not taken as the
line's: a line dated 9999 would outlive every retention. Such a line, like
one without a time, gets ``now`` (or the ``default_ts`` given), its text
kept. The message is stripped of surrounding whitespace; ``raw`` keeps the
line as given, minus its line ending.

Speed: see docs/benchmarks.md (``bench/log_pipeline.py`` parses as part of
the pipeline).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import msgspec

from flowsight.logs.entries import FieldValue, LogEntry, LogLevel, level_from_syslog, level_from_word
from flowsight.model.runs.timestamps import ISO, epoch, time_value

_INFO = LogLevel.INFO
_MONTHS = {
    m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}

# Tuple of (level or None, message, fields, workflow, run_id, step, timestamp or None);
# the level is None when the line names none (JSON or logfmt without a level key).
_Parsed = tuple[LogLevel | None, str, dict[str, FieldValue], str | None, str | None, str | None, float | None]


#: How far after ``now`` a time in a line may be (clocks of different
#: machines disagree) and still be taken as the line's time.
MAX_AHEAD = 86400.0


def parse_line(
    line: str, *, source: str, now: float, default_year: int | None = None, default_ts: float | None = None
) -> LogEntry:
    """Parse one line (see the module docstring for the formats). Never raises:
    a line no format fits is an Info entry whose message is the line.
    ``default_ts``: the time of a line whose text holds none (or none that
    can be its time); default ``now``."""
    if line[-1:] == "\n":
        line = line[:-2] if line[-2:] == "\r\n" else line[:-1]
    at = now if default_ts is None else default_ts
    try:
        parsed = _dispatch(line, now, default_year)
    except Exception:  # the contract is "never raises": a parser bug costs one line its structure, not the stream
        parsed = None
    if parsed is None:
        return LogEntry(at, _INFO, line.strip(), source, None, None, None, {}, line)
    level, message, fields, workflow, run_id, step, ts = parsed
    if ts is None or not 0 <= ts <= now + MAX_AHEAD:
        ts = at
    return LogEntry(ts, level or _INFO, message, source, workflow, run_id, step, fields, line)


def carries_level_or_time(line: str) -> bool:
    """True when one of the formats :func:`parse_line` knows finds a level or
    a time in ``line`` itself (``2024-05-01 12:00:00 ...``, ``ERROR: ...``,
    ``level=error msg=...``, ``{"level": "warn", ...}``, syslog, ...): the
    line is a record of its own, not the continuation of the one above it
    (see :mod:`flowsight.collect.multiline`). Never raises."""
    try:  # a leap year, so that "Feb 29" without a year is a date
        parsed = _dispatch(line, 0.0, 2000)
    except Exception:  # as parse_line: a parser bug costs the line its structure only
        return False
    return parsed is not None and (parsed[0] is not None or parsed[6] is not None)


def _dispatch(line: str, now: float, default_year: int | None) -> _Parsed | None:
    c = line[:1]
    if c.isdigit():
        return _timestamped(line, 0, now, default_year) or _hpc(line)
    if c == "{":
        return _json(line, now)
    if c == "<":
        return _syslog_pri(line, now, default_year)
    if c == "[":
        return _bracketed(line, now, default_year)
    if c.isalpha():
        if line[3:4] == " " and line[:3] in _MONTHS:
            parsed = _rfc3164(line, 0, now, default_year, _INFO, {})
            if parsed is not None:
                return parsed
        return _leading_level(line) or _logfmt(line, now) or _bgl(line) or _prefixed(line, now, default_year)
    if c == "-":
        return _bgl(line)
    return None


# ---- time -----------------------------------------------------------------------
def _year(default_year: int | None, now: float) -> int:
    return default_year if default_year is not None else time.gmtime(now).tm_year


def _yearless(
    mo: int, d: int, h: int, mi: int, s: int, frac: str | None, now: float, default_year: int | None
) -> float | None:
    ts = epoch(_year(default_year, now), mo, d, h, mi, s, frac)
    if ts is not None and default_year is None and ts > now + 86400:
        ts = epoch(time.gmtime(now).tm_year - 1, mo, d, h, mi, s, frac)
    return ts


def _century(yy: str) -> int:
    y = int(yy)
    return y + (2000 if y < 70 else 1900)


_SLASH4 = re.compile(r"(\d{4})/(\d\d)/(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?")
_SLASH2 = re.compile(r"(\d\d)/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?")
_ANDROID = re.compile(r"(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?")
_COMPACT = re.compile(r"(\d\d)(\d\d)(\d\d) (\d\d)(\d\d)(\d\d)")
_EPOCH_NUM = re.compile(r"(\d{10})(?:\.(\d{1,9}))?")


def _leading_time(line: str, pos: int, now: float, default_year: int | None) -> tuple[float, int] | None:
    """The timestamp a line starts with at ``pos`` and where it ends."""
    sep = line[pos + 4 : pos + 5]
    if sep == "-":
        m = ISO.match(line, pos)
        if m is None:
            return None
        y, mo, d, h, mi, s, frac, zone = m.groups()
        ts = epoch(int(y), int(mo), int(d), int(h), int(mi), int(s), frac, zone)
    elif sep == "/":
        m = _SLASH4.match(line, pos)
        if m is None:
            return None
        y, mo, d, h, mi, s, frac = m.groups()
        ts = epoch(int(y), int(mo), int(d), int(h), int(mi), int(s), frac)
    elif line[pos + 6 : pos + 7] == " ":
        m = _COMPACT.match(line, pos)
        if m is None:
            return None
        yy, mo, d, h, mi, s = m.groups()
        ts = epoch(_century(yy), int(mo), int(d), int(h), int(mi), int(s))
    elif line[pos + 2 : pos + 3] == "/":
        m = _SLASH2.match(line, pos)
        if m is None:
            return None
        yy, mo, d, h, mi, s, frac = m.groups()
        ts = epoch(_century(yy), int(mo), int(d), int(h), int(mi), int(s), frac)
    elif line[pos + 2 : pos + 3] == "-":
        m = _ANDROID.match(line, pos)
        if m is None:
            return None
        mo, d, h, mi, s, frac = m.groups()
        ts = _yearless(int(mo), int(d), int(h), int(mi), int(s), frac, now, default_year)
    else:
        m = _EPOCH_NUM.match(line, pos)
        if m is None:
            return None
        ts = float(m.group(0))
    end = m.end()
    if ts is None or (end < len(line) and not line[end].isspace()):
        return None
    return ts, end


# ---- DATE TIME [pid] LEVEL component: message --------------------------------
def _bracket_end(line: str, i: int) -> int:
    """Index after the ``]`` closing the ``[`` at ``i`` (nested brackets count), or -1."""
    depth = 0
    n = len(line)
    while i < n:
        j = line.find("]", i)
        if j < 0:
            return -1
        depth += line.count("[", i, j) - 1
        if depth <= 0:
            return j + 1
        i = j + 1
    return -1


def _skip_spaces(line: str, i: int) -> int:
    n = len(line)
    while i < n and line[i] == " ":
        i += 1
    return i


_SEPARATORS = frozenset({"-", "|", ",", ":"})


def _timestamped(line: str, pos: int, now: float, default_year: int | None) -> _Parsed | None:
    """``TIME [pid tid] [-] [name -] LEVEL [thread] [component:] message``."""
    found = _leading_time(line, pos, now, default_year)
    if found is None:
        return None
    ts, i = found
    fields: dict[str, FieldValue] = {}
    numbers: list[int] = []
    names: list[str] = []
    level = None
    n = len(line)
    start = i = _skip_spaces(line, i)
    # The level comes within the first few tokens, after numbers (pid, tid),
    # a [thread], separators, or a name followed by a separator ("- name -
    # LEVEL"), or not at all: a level word further on is part of the message.
    after_name = False
    for _ in range(6):
        if i >= n:
            break
        if line[i] == "[":
            j = _bracket_end(line, i)
            if j < 0:
                break
            word = line[i + 1 : j - 1]
            level = level_from_word(word) if len(word) > 1 else None
            if level is None:
                fields["thread"] = word
        else:
            j = line.find(" ", i)
            if j < 0:
                j = n
            word = line[i:j]
            colon = word[-1] == ":" and len(word) > 1
            if colon:
                word = word[:-1]
            level = level_from_word(word)
            if level is not None and len(word) == 1 and names:  # a one-letter level only after numbers (Android)
                level = None
            if level is None:
                if word in _SEPARATORS:
                    after_name = False
                elif after_name or colon:
                    break
                elif word.isdecimal():
                    numbers.append(int(word))
                else:
                    names.append(word)
                    after_name = True
        if after_name and level is not None:
            level = None
            break
        i = _skip_spaces(line, j)
        if level is not None:
            break
    if level is None:
        return _syslog_tail(line, start, ts)
    if numbers:
        fields["pid"] = numbers[0]
        if len(numbers) > 1:
            fields["tid"] = numbers[1]
    if len(names) == 1:
        fields["component"] = names[0]
    if line.startswith("[", i):  # log4j's [thread] after the level (not Kafka's "[Server 0], started")
        j = _bracket_end(line, i)
        if j > 0 and (j == n or line[j] == " "):
            fields["thread"] = line[i + 1 : j - 1]
            i = _skip_spaces(line, j)
    if line.startswith("- ", i) or line.startswith("-", i) and i + 1 == n:
        return level, line[i + 2 :].strip(), fields, None, None, None, ts
    j = line.find(" ", i)
    if j > i and "component" not in fields:
        if line[j - 1] == ":":  # "dfs.DataNode$PacketResponder: message"
            fields["component"] = line[i : j - 1]
            i = j + 1
        else:
            k = _skip_spaces(line, j)
            if line.startswith("[", k):  # OpenStack: "nova.compute.manager [req-... - - -] message"
                e = _bracket_end(line, k)
                if e > 0:
                    fields["component"] = line[i:j]
                    fields["context"] = line[k + 1 : e - 1]
                    i = e
            elif line.startswith("- ", k):  # log4j "%c - %m"
                fields["component"] = line[i:j]
                i = k + 2
    return level, line[i:].strip(), fields, None, None, None, ts


_SYSLOG_TAG = re.compile(r"([^\s\[\]:]{1,64})(?:\[([^\]\s]{1,32})\])?:(?: |$)")


def _syslog_tag(line: str, i: int, fields: dict[str, FieldValue]) -> int:
    """Read ``tag[pid]:`` at ``i`` into ``fields``; the index of the message."""
    i = _skip_spaces(line, i)
    m = _SYSLOG_TAG.match(line, i)
    if m is not None:
        fields["app"] = m.group(1)
        if m.group(2) is not None:
            pid = m.group(2)
            fields["pid"] = int(pid) if pid.isdecimal() else pid
        return m.end()
    # "syslogd 1.4.1: restart.": a tag of at most two words before ": "
    j = line.find(": ", i, i + 48)
    if j > i and line.count(" ", i, j) <= 1:
        fields["app"] = line[i:j]
        return j + 2
    return i


def _syslog_tail(line: str, i: int, ts: float) -> _Parsed:
    """``host tag[pid]: msg`` after an ISO time (rsyslog), else the rest as the message."""
    fields: dict[str, FieldValue] = {}
    j = line.find(" ", i)
    if j > i:
        k = _syslog_tag(line, j + 1, fields)
        if fields:
            fields["host"] = line[i:j]
            return _INFO, line[k:].strip(), fields, None, None, None, ts
    return _INFO, line[i:].strip(), fields, None, None, None, ts


_HPC = re.compile(r"(\d+) (\S+) (\S+) (\S+) (\d{10}) (\d+) ")


def _hpc(line: str) -> _Parsed | None:
    """HPC: ``id node component state epoch flag message``."""
    m = _HPC.match(line)
    if m is None:
        return None
    fields: dict[str, FieldValue] = {"node": m.group(2), "component": m.group(3), "state": m.group(4)}
    return _INFO, line[m.end() :].strip(), fields, None, None, None, float(m.group(5))


def _prefixed(line: str, now: float, default_year: int | None) -> _Parsed | None:
    """A one-word prefix (a file name) before a timestamped line."""
    i = line.find(" ")
    if 0 < i < 256 and line[i + 1 : i + 2].isdigit():
        parsed = _timestamped(line, i + 1, now, default_year)
        if parsed is not None:
            parsed[2]["prefix"] = line[:i]
            return parsed
    return None


_BGL = re.compile(
    r"(\S+) (\d{9,10}) \d{4}\.\d\d\.\d\d (\S+) \d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d(?:\.(\d{1,9}))? \S+ (\S+) (\S+) (\S+)(?: |$)"
)


def _bgl(line: str) -> _Parsed | None:
    """BGL: ``label epoch yyyy.mm.dd node yyyy-mm-dd-hh.mm.ss.us node type component LEVEL message``."""
    m = _BGL.match(line)
    if m is None:
        return None
    label, epoch, node, frac, kind, component, word = m.groups()
    level = level_from_word(word)
    if level is None:
        return None
    fields: dict[str, FieldValue] = {"node": node, "type": kind, "component": component}
    if label != "-":
        fields["label"] = label
    ts = int(epoch) + (int(frac) / 10 ** len(frac) if frac else 0.0)
    return level, line[m.end() :].strip(), fields, None, None, None, ts


# ---- syslog ----------------------------------------------------------------------
_RFC3164 = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ \d]?\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? (\S+) ?"
)
_RFC5424 = re.compile(r"1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_SD_ELEMENT = re.compile(r'\[([^\s\]=]+)((?: [^\s=\]"]+="[^"\\]*+(?:\\.[^"\\]*+)*+")*+) ?\]')
_SD_PARAM = re.compile(r'([^\s=\]"]+)="([^"\\]*+(?:\\.[^"\\]*+)*+)"')


def _syslog_pri(line: str, now: float, default_year: int | None) -> _Parsed | None:
    end = line.find(">", 1, 5)
    if end < 0 or not line[1:end].isdecimal():
        return None
    pri = int(line[1:end])
    if pri > 191:
        return None
    fields: dict[str, FieldValue] = {"facility": pri >> 3}
    level = level_from_syslog(pri & 7) or _INFO
    if line.startswith("1 ", end + 1):
        return _rfc5424(line, end + 1, now, level, fields)
    return _rfc3164(line, end + 1, now, default_year, level, fields)


def _rfc3164(
    line: str, i: int, now: float, default_year: int | None, level: LogLevel, fields: dict[str, FieldValue]
) -> _Parsed | None:
    m = _RFC3164.match(line, i)
    if m is None:
        return None
    mon, d, h, mi, s, frac, host = m.groups()
    ts = _yearless(_MONTHS[mon], int(d), int(h), int(mi), int(s), frac, now, default_year)
    if ts is None:
        return None
    fields["host"] = host
    k = _syslog_tag(line, m.end(), fields)
    return level, line[k:].strip(), fields, None, None, None, ts


def _unescape_sd(value: str) -> str:
    return value.replace('\\"', '"').replace("\\]", "]").replace("\\\\", "\\") if "\\" in value else value


def _rfc5424(line: str, i: int, now: float, level: LogLevel, fields: dict[str, FieldValue]) -> _Parsed | None:
    m = _RFC5424.match(line, i)
    if m is None:
        return None
    stamp, host, app, procid, msgid = m.groups()
    ts = None if stamp == "-" else time_value(stamp, now)
    for name, value in (("host", host), ("app", app), ("procid", procid), ("msgid", msgid)):
        if value != "-":
            fields[name] = int(value) if name == "procid" and value.isdecimal() else value
    i = m.end()
    if line.startswith("-", i):
        i += 1
    else:
        while (sd := _SD_ELEMENT.match(line, i)) is not None:
            for p in _SD_PARAM.finditer(sd.group(2)):
                fields[p.group(1)] = _unescape_sd(p.group(2))
            i = sd.end()
    message = line[i:].strip().removeprefix("\ufeff")
    return (
        level,
        message,
        fields,
        _text(fields.pop("workflow", None)),
        _text(fields.pop("run_id", None)),
        _text(fields.pop("step", None)),
        ts,
    )


# ---- [ ... ] ---------------------------------------------------------------------
_APACHE = re.compile(
    r"\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([ \d]\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? (\d{4})\] ?"
)


def _bracketed(line: str, now: float, default_year: int | None) -> _Parsed | None:
    m = _APACHE.match(line)
    if m is not None:
        mon, d, h, mi, s, frac, y = m.groups()
        ts = epoch(int(y), _MONTHS[mon], int(d), int(h), int(mi), int(s), frac)
        return _apache_rest(line, m.end(), ts)
    if line[1:2].isdigit():  # "[2024-01-01 12:00:00,123] INFO message"
        e = line.find("]")
        if e > 0:
            inner = _leading_time(line[1:e], 0, now, default_year)
            if inner is not None and inner[1] == e - 1:
                parsed = _timestamped(line[1:e] + line[e + 1 :], 0, now, default_year)
                if parsed is not None:
                    return parsed
    e = line.find("]")
    if e > 1:  # "[ERROR] message"
        level = level_from_word(line[1:e])
        if level is not None and e > 2:
            return level, line[e + 1 :].strip(), {}, None, None, None, None
    return None


def _apache_rest(line: str, i: int, ts: float | None) -> _Parsed:
    """``[level] [pid N] message`` or 2.4's ``[module:level] [pid N:tid M] message``."""
    fields: dict[str, FieldValue] = {}
    level = _INFO
    if line.startswith("[", i):
        e = line.find("]", i)
        if e > 0:
            module, _, word = line[i + 1 : e].rpartition(":")
            found = level_from_word(word) or (level_from_word(word[:-1]) if word[-1:].isdigit() else None)  # trace1-8
            if found is not None:
                level = found
                if module:
                    fields["module"] = module
                i = _skip_spaces(line, e + 1)
    if line.startswith("[pid ", i):
        e = line.find("]", i)
        if e > 0:
            pid, _, tid = line[i + 5 : e].partition(":tid ")
            fields["pid"] = int(pid) if pid.isdecimal() else pid
            if tid:
                fields["tid"] = int(tid) if tid.isdecimal() else tid
            i = _skip_spaces(line, e + 1)
    return level, line[i:].strip(), fields, None, None, None, ts


# ---- LEVEL: message, LEVEL:name:message -----------------------------------------
def _leading_level(line: str) -> _Parsed | None:
    """Python's ``LEVEL:name:message``, and ``LEVEL: message`` / ``LEVEL message``."""
    j = line.find(":", 0, 12)
    k = line.find(" ", 0, 12)
    if j > 0 and (k < 0 or j < k):
        level = level_from_word(line[:j]) if j > 1 else None
        if level is None:
            return None
        e = line.find(":", j + 1)
        name = line[j + 1 : e]
        if e > j + 1 and " " not in name:
            return level, line[e + 1 :].strip(), {"component": name}, None, None, None, None
        return level, line[j + 1 :].strip(), {}, None, None, None, None
    if k > 1:
        level = level_from_word(line[:k])
        if level is not None and line[:k].isupper():
            return level, line[k:].strip(), {}, None, None, None, None
    return None


# ---- JSON and logfmt -------------------------------------------------------------
_LEVEL_KEYS = ("level", "lvl", "severity", "levelname", "loglevel", "log.level", "severity_text", "Level")
_MESSAGE_KEYS = ("msg", "message", "event", "Message", "MESSAGE", "log")
_TIME_KEYS = ("ts", "time", "timestamp", "@timestamp", "t", "asctime", "Timestamp", "datetime")
_PINO = {
    10: LogLevel.TRACE,
    20: LogLevel.DEBUG,
    30: LogLevel.INFO,
    40: LogLevel.WARN,
    50: LogLevel.ERROR,
    60: LogLevel.FATAL,
}
_json_decode: Callable[[str], Any] = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


def _text(value: object) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _level_value(value: object) -> LogLevel | None:
    if isinstance(value, str):
        return level_from_word(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return _PINO.get(value)
    return None


def _structured(data: dict[str, Any], line: str, now: float, decode_values: bool) -> _Parsed:
    """Level, message, time and run from a decoded JSON object or logfmt pairs
    (without a message key, the message is the whole line)."""
    level = None
    message: str | None = None
    ts = None
    for key in _LEVEL_KEYS:
        if key in data:
            level = _level_value(data[key])
            if level is not None:
                del data[key]
                break
    for key in _MESSAGE_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            message = value
            del data[key]
            break
    for key in _TIME_KEYS:
        if key in data:
            ts = time_value(data[key], now)
            if ts is not None:
                del data[key]
                break
    workflow = _text(data.pop("workflow", None))
    run_id = _text(data.pop("run_id", None))
    step = _text(data.pop("step", None))
    fields: dict[str, FieldValue] = {}
    for key, value in data.items():
        if value is None or isinstance(value, (str, int, float, bool)):
            fields[key] = value
        elif decode_values:
            fields[key] = _json_encode(value).decode()
    return level, (line if message is None else message).strip(), fields, workflow, run_id, step, ts


def _json(line: str, now: float) -> _Parsed | None:
    try:
        data = _json_decode(line)
    except (msgspec.DecodeError, UnicodeError):
        return None
    if not isinstance(data, dict):
        return None
    return _structured(data, line, now, True)


_LOGFMT_START = re.compile(r"[A-Za-z_][\w.\-/@]{0,127}=")
# unrolled and possessive: a 10 MB line with an unclosed quote costs one pass
_LOGFMT_PAIR = re.compile(r'([^\s="]+)(?:=("[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|$)|\S*))?\s*')
_LOGFMT_KNOWN = frozenset(_LEVEL_KEYS + _MESSAGE_KEYS + _TIME_KEYS)


def _unquote(value: str) -> str:
    """A logfmt value's text; an unclosed quote runs to the end of the line."""
    if value[:1] != '"':
        return value
    value = value[1:-1] if len(value) > 1 and value[-1] == '"' else value[1:]
    if "\\" in value:
        value = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), value)
    return value


def _logfmt(line: str, now: float) -> _Parsed | None:
    """``key=value key2="quoted value"``; needs two pairs, or one naming a level, message or time."""
    if _LOGFMT_START.match(line) is None:
        return None
    data: dict[str, Any] = {}
    i, n = 0, len(line)
    while i < n:
        m = _LOGFMT_PAIR.match(line, i)
        if m is None:
            return None
        key, value = m.group(1), m.group(2)
        data[key] = True if value is None else _unquote(value)
        i = m.end()
    pairs = sum(1 for v in data.values() if v is not True)
    if pairs < 2 and not (_LOGFMT_KNOWN & data.keys()):
        return None
    for key, value in data.items():
        if value is True:
            data[key] = "true"
    return _structured(data, line, now, False)
