"""Cutting a byte stream into `RawLine` s — pure, no I/O.

`LineSplitter` is the part of a log source that does not care where the bytes
come from: a process's stdout, stdin, a socket. It takes chunks as they were
read and hands back lines (or joined multi-line entries, see
`flowsight.collect.multiline`), with the rules `FileTail` follows too:

* a line ends at ``\\n``; a ``\\r`` before it is dropped;
* the bytes are UTF-8; an invalid sequence becomes U+FFFD, and so does a NUL
  byte (PostgreSQL text cannot hold one);
* a line longer than ``max_line`` bytes is cut into pieces of at most
  ``max_line`` bytes, at a character boundary; each piece is a line of its
  own and is never joined with its neighbours;
* at the end of the stream (`finish`), a last line without ``\\n`` is
  handed out as it is.

A consumer that falls behind a flood of lines can ask `feed` for groups
(``group=N``): the complete lines of the chunk go out as entries of up to N
lines each (``RawLine.lines``), split and decoded a chunk at a time instead
of a line at a time, with no multi-line joining (an entry being joined is
handed out first). Nothing is dropped; only the grain of the entries changes.

Each kind of trouble is reported once per stream through ``on_problem``,
prefixed by the stream's label. ``RawLine.offset`` is the byte offset of the
line in the stream; ``RawLine.path`` is the label. Time (``now``, monotonic
seconds) is passed in, for the multi-line idle flush.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flowsight.collect.multiline import Joined, Joiner
from flowsight.collect.tail import RawLine, _char_boundary  # the tailer's rule for cutting, shared

__all__ = ["LineSplitter"]

_log = logging.getLogger(__name__)


class LineSplitter:
    """Turns the bytes of one stream, fed in order, into lines."""

    def __init__(
        self,
        label: str,
        *,
        max_line: int = 1 << 20,
        multiline: bool = True,
        idle: float = 1.0,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        if max_line < 16:
            raise ValueError(f"max_line must be at least 16 bytes, got {max_line}")
        self.label = label
        self._max_line = max_line
        self._joiner = Joiner(idle=idle, max_chars=max_line) if multiline else None
        self._problem = on_problem if on_problem is not None else _log.warning
        self._buf = bytearray()  # the partial line
        self._base = 0  # stream offset of _buf[0]
        self._cutting = False  # inside a line longer than max_line
        self._warned: set[str] = set()

    @property
    def holding(self) -> bool:
        """True while an entry waits for possible continuation lines: call
        `flush_idle` again after the idle time."""
        return self._joiner is not None and self._joiner.pending_offset is not None

    def feed(self, data: bytes, now: float, *, group: int = 0) -> list[RawLine]:
        """Add the next bytes of the stream; the lines (entries) they
        complete. ``group`` > 1: the complete lines as groups of up to that
        many (see the module docstring)."""
        self._buf += data
        out: list[RawLine] = []
        buf = self._buf
        limit = self._max_line
        i = 0
        if group > 1 and not self._cutting:
            i = self._groups(out, group)
        while True:
            nl = buf.find(b"\n", i, i + limit + 1)
            if nl >= 0:
                raw = bytes(buf[i:nl])
                if self._cutting:  # the last piece of a cut line stands alone like the others
                    self._cutting = False
                    out.append(self._alone(raw.removesuffix(b"\r"), self._base + i))
                else:
                    out += self._line(raw, self._base + i, self._base + nl + 1, now)
                i = nl + 1
            elif len(buf) - i > limit:
                cut = _char_boundary(buf, i, i + limit)
                self._warn(
                    "long",
                    f"a line longer than max_line={limit} bytes at byte {self._base + i}; "
                    f"cut into pieces of at most {limit} bytes",
                )
                out += self._joined(self._joiner.flush() if self._joiner else [])
                out.append(self._alone(bytes(buf[i:cut]), self._base + i))
                i = cut
                self._cutting = True
            else:
                break
        del buf[:i]
        self._base += i
        return out

    def flush_idle(self, now: float) -> list[RawLine]:
        """The entry being joined, once no line came for the idle time."""
        return self._joined(self._joiner.flush_idle(now)) if self._joiner is not None else []

    def finish(self, now: float) -> list[RawLine]:
        """The stream ended: its last line without a newline, then the open entry."""
        out: list[RawLine] = []
        if self._buf:
            raw = bytes(self._buf)
            start = self._base
            self._base += len(raw)
            self._buf.clear()
            if self._cutting:
                self._cutting = False
                out.append(self._alone(raw.removesuffix(b"\r"), start))
            else:
                out += self._line(raw, start, start + len(raw), now)
        if self._joiner is not None:
            out += self._joined(self._joiner.flush())
        return out

    # ---- helpers -----------------------------------------------------------
    def _groups(self, out: list[RawLine], size: int) -> int:
        """Hand out the buffer's complete lines as groups of up to ``size``;
        how many bytes they took (0: none, or a line too long for a group:
        the line-by-line path cuts it)."""
        buf = self._buf
        end = buf.rfind(b"\n") + 1
        if end == 0:
            return 0
        raw_lines = bytes(buf[: end - 1]).split(b"\n")
        if end > self._max_line and max(map(len, raw_lines)) > self._max_line:
            return 0
        if self._joiner is not None:
            out += self._joined(self._joiner.flush())
        offset = self._base
        for at in range(0, len(raw_lines), size):
            part = raw_lines[at : at + size]
            raw = b"\n".join(part)
            if b"\r" in raw:
                raw = b"\n".join(line.removesuffix(b"\r") for line in part)
            out.append(RawLine(self.label, self._decode(raw, offset), offset, lines=len(part)))
            offset += sum(map(len, part)) + len(part)
        return end

    def _line(self, raw: bytes, offset: int, end: int, now: float) -> list[RawLine]:
        text = self._decode(raw.removesuffix(b"\r"), offset)
        if self._joiner is None:
            return [RawLine(self.label, text, offset)]
        return self._joined(self._joiner.feed(text, offset, end, now))

    def _alone(self, raw: bytes, offset: int) -> RawLine:
        return RawLine(self.label, self._decode(raw, offset), offset)

    def _joined(self, joined: list[Joined]) -> list[RawLine]:
        return [RawLine(self.label, j.text, j.offset) for j in joined]

    def _decode(self, raw: bytes, offset: int) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._warn("utf8", f"invalid UTF-8 at byte {offset + exc.start}; undecodable bytes shown as U+FFFD")
            text = raw.decode("utf-8", errors="replace")
        if "\x00" in text:
            self._warn("nul", f"binary data (NUL bytes) in the line at byte {offset}; NULs shown as U+FFFD")
            text = text.replace("\x00", "\ufffd")
        return text

    def _warn(self, kind: str, what: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self._problem(f"{self.label}: {what} (reported once per stream)")
