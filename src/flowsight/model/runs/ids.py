"""Client-made, unique, time-sortable event ids (ULID text form).

``str(uuid.uuid4())`` costs too much per event on the hot path (docs/benchmarks.md), so ids
are 48 bits of milliseconds plus 80 bits made of a per-process random prefix
and a counter: unique across processes (the prefix), strictly increasing within
a process (the counter), and sortable by time as plain strings.
"""

from __future__ import annotations

import hashlib
import os
import threading

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_TABLE2 = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> 2 chars


def _b32(value: int, chars: int) -> str:
    """Encode ``value`` as ``chars`` base32 characters (chars must be even)."""
    out = []
    for shift in range(5 * (chars - 2), -1, -10):
        out.append(_TABLE2[(value >> shift) & 0x3FF])
    return "".join(out)


class IdFactory:
    """Makes ULID-shaped ids; thread-safe; re-seeds itself after ``fork``."""

    def __init__(self) -> None:
        self._seed()
        os.register_at_fork(after_in_child=self._seed)

    def _seed(self) -> None:
        # a new lock too: a fork while another thread held the old one leaves it held for ever
        self._lock = threading.Lock()
        rand = int.from_bytes(os.urandom(10), "big")
        self._prefix = _b32(rand >> 40, 8)  # 40 random bits per process
        self._n = rand & 0xFFFFFFFF  # the 40-bit counter starts at a random point
        self._last_ms = -1
        self._time_part = ""  # time (10 chars) + prefix (8 chars)

    def new(self, ts_ns: int) -> str:
        """An id for an event that happened at ``ts_ns`` (ns since the epoch)."""
        return self.many([ts_ns])[0]

    def many(self, ts_ns: list[int]) -> list[str]:
        """Ids for a batch of events (one lock, encoding unrolled: the writer's path)."""
        t = _TABLE2
        out: list[str] = []
        with self._lock:
            last_ms, time_part, prefix, n = self._last_ms, self._time_part, self._prefix, self._n
            append = out.append
            for ts in ts_ns:
                ms = ts // 1_000_000
                if ms != last_ms:
                    last_ms, time_part = ms, _b32(ms, 10) + prefix
                n = (n + 1) & 0xFFFFFFFFFF  # 40 bits; wraps after 2^40 ids
                append(time_part + t[n >> 30 & 0x3FF] + t[n >> 20 & 0x3FF] + t[n >> 10 & 0x3FF] + t[n & 0x3FF])
            self._last_ms, self._time_part, self._n = last_ms, time_part, n
        return out


_factory = IdFactory()


def new_id(ts_ns: int | None = None) -> str:
    """A new event id; ``ts_ns`` defaults to now."""
    if ts_ns is None:
        import time

        ts_ns = time.time_ns()
    return _factory.new(ts_ns)


def new_ids(ts_ns: list[int]) -> list[str]:
    """Ids for a batch of events that happened at ``ts_ns``."""
    return _factory.many(ts_ns)


def fact_id(source: str, *parts: object) -> str:
    """The id of one fact that ``source`` reports (a ping, an engine's task):
    made of the fact itself, so the same fact sent again has the same id, and
    the store counts it once."""
    text = "\x00".join([source, *map(str, parts)])
    return f"{source}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def fact_id_at(ts_ns: int, source: str, *parts: object) -> str:
    """:func:`fact_id`, led by the fact's own time (its milliseconds, as the
    ids :func:`new_id` makes begin): the same fact has the same id, and the
    ids of a stream of facts come in about the order of their time (the
    store's id index then grows at its end instead of everywhere). For a
    fact whose time is part of it (a span's start, an OpenLineage event's
    time), never the time someone saw it."""
    return f"{_b32(ts_ns // 1_000_000, 10)}-{fact_id(source, *parts)}"


def id_time_ms(event_id: str) -> int:
    """The millisecond timestamp encoded in an id made by :func:`new_id`."""
    value = 0
    for ch in event_id[:10]:
        value = value * 32 + _ALPHABET.index(ch)
    return value
