"""Following log files like ``tail -F``: globs, rotation, resume, multi-line.

`FileTail` follows every regular file matched by its patterns and hands out
`RawLine` s — one per line, or one per multi-line entry when ``multiline``
is on (see `flowsight.collect.multiline` for the joining rules). Parsing a
line into a log entry is not done here.

How files are followed
----------------------
* A file is known by its identity ``(st_dev, st_ino)``, not its path. The
  patterns (plain paths or globs) are evaluated again on every poll; a file
  matched for the first time after the first poll is new and is read from its
  beginning. On the first poll, ``start`` decides: ``"end"`` skips what is
  already there (from just after the last complete line), ``"beginning"``
  reads it all. With a state file from an earlier run, files it names resume
  at their saved offset and all other files are new, read from the beginning.
* Rotation by rename (the path now names another file, or no file): the old
  file, still open, is read to its end — its partial last line included —
  before the new file is read from offset 0. When the rotated name is matched
  by a pattern too (``app.log*``), the old file is simply followed under its
  new name, by identity, and nothing is read twice. Otherwise, what a writer
  still holding the old file appends after we switched is not read (as with
  ``tail -F``): rotate with the writer's cooperation (reopen on SIGHUP, or
  ``RotatingFileHandler``), or include the rotated name in the patterns.
* copytruncate (same identity, size now below our offset): the file is read
  again from 0. Known limit, shared by ``tail -F`` and every tailer that does
  not own the writer: lines the writer appends between the copy and the
  truncate end up in the copy only, and so do lines appended after our last
  poll and before the truncate. A file truncated and refilled past our
  offset between two polls is recognised by its first 32 bytes having
  changed (not if the new ones happen to be equal). A writer that does
  not open with ``O_APPEND`` keeps writing at its old offset and leaves a run
  of NUL bytes at the start; those are replaced (see below).
* A file that disappears (deleted, or renamed out of the patterns) is read
  to its end through the open descriptor, then closed; when its path is gone
  ``on_problem`` is told, and a file appearing there later is new.
* A plain path that names no file is waited for (``on_problem`` is told
  once); with ``wait=False`` (one pass, nothing to wait for) it is reported
  as ``PATH: no such file`` and a glob that matches no file as a warning.
  `missing` lists the plain paths that named no file at the last poll.

Every line is handed out exactly once and in order per file: the saved
offset of a file is the end of the last entry handed out, so a partial line
(no newline yet) and an entry still being joined are read again after a
restart rather than lost. Lines of a rotated file that were not read before
a restart are lost unless the rotated name matches a pattern.

Bad input never stops the tailer: bytes are decoded as UTF-8 with
``errors="replace"`` and NUL bytes become U+FFFD (PostgreSQL text cannot hold
them); a line longer than ``max_line`` bytes is cut into pieces of at most
``max_line`` bytes (at a character boundary). Each of these is reported once
per file through ``on_problem``, as are files that cannot be opened.
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import stat
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flowsight.collect.multiline import Joined, Joiner

__all__ = ["FileTail", "RawLine"]

_log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_READ_BUDGET = 8 << 20  # per file per poll, so one huge file cannot starve the others
_HEAD = 32  # bytes kept in the state file to recognise a file after a restart
_STATE_VERSION = 1

Identity = tuple[int, int]


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line, or one joined multi-line entry (lines joined by ``"\\n"``),
    without its newline. ``offset`` is the byte offset in the file where it
    starts; ``path`` is the file's path when it was read. ``file``: for a
    line of a file, its identity (device, inode, and how many times it was
    seen truncated), so that (``file``, ``offset``, ``text``) names the line
    across a restart; empty for other streams. ``lines``: how many lines
    of a stream a group holds (`LineSplitter.feed` with ``group``), else 1."""

    path: str
    text: str
    offset: int
    file: str = field(default="", compare=False)
    lines: int = field(default=1, compare=False)


@dataclass(slots=True)
class _File:
    key: Identity
    path: str
    fd: int
    pos: int  # offset of the next byte to read
    acked: int  # end of the last entry handed out: the offset saved for a restart
    joiner: Joiner | None
    buf: bytearray = field(default_factory=bytearray)  # the partial line, ends at pos
    generation: int = 0  # bumped on truncation, so late acks of old entries are ignored
    warned: set[str] = field(default_factory=set)
    cutting: bool = False  # inside a line longer than max_line
    head: bytes = b""  # the file's first bytes (up to _HEAD), to notice it being rewritten


@dataclass(frozen=True, slots=True)
class _Item:
    line: RawLine
    file: _File
    generation: int
    end: int


@dataclass(frozen=True, slots=True)
class _Saved:
    path: str
    offset: int
    head: bytes


class FileTail:
    """Follow the files matched by ``patterns`` (paths or globs).

    Iterate with ``async for line in tail`` (polls every ``poll`` seconds in a
    worker thread, saves the state every ``save_interval`` seconds and when
    the iteration ends), or call `read_available` for one synchronous pass.
    ``clock`` (monotonic seconds) times the ``multiline_idle`` flush.
    ``on_problem`` receives one readable sentence per problem; by default it
    is logged as a warning. ``wait``: a plain path that names no file is
    waited for (the default) or, False, reported as missing (`missing`).
    """

    def __init__(
        self,
        patterns: Sequence[str],
        *,
        state_path: Path | None = None,
        poll: float = 0.25,
        max_line: int = 1 << 20,
        start: Literal["end", "beginning"] = "end",
        multiline: bool = True,
        multiline_idle: float = 1.0,
        on_problem: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        save_interval: float = 5.0,
        wait: bool = True,
    ) -> None:
        if isinstance(patterns, str):
            patterns = [patterns]
        if start not in ("end", "beginning"):
            raise ValueError(f"start must be 'end' or 'beginning', got {start!r}")
        if max_line < 16:
            raise ValueError(f"max_line must be at least 16 bytes, got {max_line}")
        self._patterns = [os.path.expanduser(p) for p in patterns]
        self._state_path = state_path
        self._poll = poll
        self._max_line = max_line
        self._start = start
        self._multiline = multiline
        self._idle = multiline_idle
        self._problem = on_problem if on_problem is not None else _log.warning
        self._clock = clock
        self._save_interval = save_interval
        self._files: dict[Identity, _File] = {}
        self._first_poll = True
        self._waiting: set[str] = set()  # paths already reported missing / unreadable
        self._wait = wait
        self._missing: list[str] = []  # plain paths that named no file at the last scan
        self._saved: dict[Identity, _Saved] = {}
        self._resuming = False
        # A poll may run in a worker thread (async iteration) while the loop
        # thread saves or closes: one at a time.
        self._lock = threading.Lock()
        self._closed = False
        if state_path is not None:
            self._load_state(state_path)

    # -- public -----------------------------------------------------------

    @property
    def missing(self) -> list[str]:
        """The plain paths (not globs) that named no file at the last poll, in
        the order given (not counting one that disappeared while followed, on
        the poll that read it to its end)."""
        return list(self._missing)

    def read_available(self) -> list[RawLine]:
        """One polling pass: everything complete that can be read now (up to
        8 MiB per file), in order per file. The lines count as handed out."""
        items = self._poll_locked()[0]
        for item in items:
            self._ack(item)
        return [item.line for item in items]

    def flush(self) -> list[RawLine]:
        """Hand out what is held back: partial last lines and open entries
        (for shutdown, or a test that wants them now)."""
        items: list[_Item] = []
        with self._lock:
            for f in self._files.values():
                items += self._flush_file(f)
        for item in items:
            self._ack(item)
        return [item.line for item in items]

    def save_state(self) -> None:
        """Write each followed file's identity, path and resume offset to
        ``state_path`` atomically (temporary file, fsync, ``os.replace``).
        Files of the loaded state not found again yet are kept in it.

        Raises ``OSError`` when it cannot be written; does nothing without a
        ``state_path`` or after `close`."""
        if self._state_path is None or self._closed:
            return
        with self._lock:
            files = [
                {"dev": k[0], "ino": k[1], "path": sv.path, "offset": sv.offset, "head": sv.head.hex()}
                for k, sv in self._saved.items()
            ]
            for f in self._files.values():
                head = os.pread(f.fd, min(_HEAD, f.acked), 0) if f.acked else b""
                files.append({"dev": f.key[0], "ino": f.key[1], "path": f.path, "offset": f.acked, "head": head.hex()})
        data = json.dumps({"version": _STATE_VERSION, "files": files}, indent=1).encode()
        tmp = self._state_path.with_name(self._state_path.name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._state_path)

    def close(self) -> None:
        """Close every open file. Held-back lines are not handed out (call
        `flush` first for that); their offsets stay unsaved, so a restart
        reads them again. Saving is not possible afterwards."""
        with self._lock:
            self._closed = True
            for f in self._files.values():
                os.close(f.fd)
            self._files.clear()

    def __aiter__(self) -> AsyncGenerator[RawLine, None]:
        """Poll forever; close the generator (``contextlib.aclosing``) to
        save the state promptly when you stop."""
        return self._run()

    # -- the loop -----------------------------------------------------------

    async def _run(self) -> AsyncGenerator[RawLine, None]:
        last_save = self._clock()
        try:
            while True:
                items, more = await asyncio.to_thread(self._poll_locked)
                for item in items:
                    self._ack(item)
                    yield item.line
                if self._state_path is not None and self._clock() - last_save >= self._save_interval:
                    self._save_quietly()
                    last_save = self._clock()
                if not more:
                    await asyncio.sleep(self._poll)
        finally:
            self._save_quietly()

    def _save_quietly(self) -> None:
        try:
            self.save_state()
        except OSError as exc:
            self._problem(f"state file {self._state_path}: cannot be written ({exc}); offsets are not saved")

    def _ack(self, item: _Item) -> None:
        f = item.file
        if item.generation == f.generation and item.end > f.acked:
            f.acked = item.end

    def _poll_locked(self) -> tuple[list[_Item], bool]:
        with self._lock:
            if self._closed:
                raise RuntimeError("FileTail is closed")
            return self._poll_once()

    def _poll_once(self) -> tuple[list[_Item], bool]:
        """Read every file once. Returns the items and whether some file has
        more to read than this pass's budget allowed."""
        now = self._clock()
        found = self._scan()
        items: list[_Item] = []
        more = False
        # Files gone from the patterns first: a rotated file's last lines come
        # before the first lines of the file that replaced it.
        for key in [k for k in self._files if k not in found]:
            f = self._files.pop(key)
            items += self._drain_and_close(f, now)
        for key, f in self._files.items():
            f.path = found[key]
            got, f_more = self._read(f, now)
            items += got
            more |= f_more
        for key, path in found.items():
            if key in self._files:
                continue
            f_new = self._open(key, path)
            if f_new is None:
                continue
            self._files[key] = f_new
            got, f_more = self._read(f_new, now)
            items += got
            more |= f_more
        for f in self._files.values():
            if f.joiner is not None:
                items += self._items(f, f.joiner.flush_idle(now))
        self._first_poll = False
        return items, more

    # -- finding and opening files -----------------------------------------

    def _scan(self) -> dict[Identity, str]:
        found: dict[Identity, str] = {}
        followed = {f.path for f in self._files.values()}  # reported as "disappeared" instead
        missing: list[str] = []
        for pattern in self._patterns:
            if glob.has_magic(pattern):
                paths: Iterable[str] = sorted(glob.glob(pattern))
                if not paths and not self._wait:
                    self._report_path(pattern, "matches no file (a glob; nothing to read)")
            else:
                paths = [pattern]
            for path in paths:
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    if not glob.has_magic(pattern) and path not in followed:
                        missing.append(path)
                        self._report_path(
                            path, "no such file yet; waiting for it to appear" if self._wait else "no such file"
                        )
                    continue
                except OSError as exc:
                    self._report_path(path, f"cannot be examined ({exc.strerror}); skipped until it can")
                    continue
                if not stat.S_ISREG(st.st_mode):
                    self._report_path(path, "is not a regular file; skipped")
                    continue
                found.setdefault((st.st_dev, st.st_ino), path)
        self._missing = missing
        return found

    def _report_path(self, path: str, what: str) -> None:
        if path not in self._waiting:
            self._waiting.add(path)
            self._problem(f"{path}: {what}")

    def _open(self, key: Identity, path: str) -> _File | None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            self._report_path(path, f"cannot be opened ({exc.strerror}); will retry on every poll")
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != key:
            os.close(fd)  # replaced between stat and open: the next poll sees the new file
            return None
        self._waiting.discard(path)
        pos = self._start_offset(key, path, fd, st.st_size)
        joiner = Joiner(idle=self._idle, max_chars=self._max_line) if self._multiline else None
        return _File(key=key, path=path, fd=fd, pos=pos, acked=pos, joiner=joiner)

    def _start_offset(self, key: Identity, path: str, fd: int, size: int) -> int:
        saved = self._saved.pop(key, None)
        if saved is not None:
            if saved.offset > size:
                self._problem(
                    f"{path}: shorter than the saved offset {saved.offset}; truncated meanwhile, reading from the start"
                )
                return 0
            if os.pread(fd, len(saved.head), 0) != saved.head:
                return 0  # the inode was reused by another file
            return saved.offset
        if self._first_poll and not self._resuming and self._start == "end":
            return _after_last_newline(fd, size)
        return 0

    # -- reading ------------------------------------------------------------

    def _read(self, f: _File, now: float) -> tuple[list[_Item], bool]:
        items: list[_Item] = []
        try:
            size = os.fstat(f.fd).st_size
        except OSError as exc:  # pragma: no cover - fstat on an open fd hardly fails
            self._warn(f, "fstat", f"cannot be examined ({exc.strerror})")
            return items, False
        rewritten = False
        if size >= f.pos and f.head:
            # Truncated and refilled past our offset between two polls: the
            # size cannot tell, the first bytes (which never change in an
            # appended-to file) can.
            rewritten = os.pread(f.fd, len(f.head), 0) != f.head
        if size < f.pos or rewritten:
            how = "truncated and rewritten" if rewritten else f"truncated from {f.pos} to {size} bytes"
            self._problem(f"{f.path}: {how} (copytruncate?); reading again from the start")
            items += self._flush_file(f)
            f.generation += 1
            f.pos = f.acked = 0
            f.head = b""
        chunks: list[bytes] = []
        budget = _READ_BUDGET
        more = False
        while True:
            if budget <= 0:
                more = True
                break
            try:
                data = os.pread(f.fd, min(_CHUNK, budget), f.pos)
            except OSError as exc:
                self._warn(f, "read", f"read failed at byte {f.pos} ({exc.strerror}); will retry")
                break
            if not data:
                break
            chunks.append(data)
            f.pos += len(data)
            budget -= len(data)
        if chunks:
            f.buf += b"".join(chunks)
            items += self._split(f, now)
        if len(f.head) < _HEAD and f.pos > len(f.head):
            f.head = os.pread(f.fd, min(_HEAD, f.pos), 0)
        return items, more

    def _split(self, f: _File, now: float) -> list[_Item]:
        """Cut the complete lines (and over-long pieces) off ``f.buf``."""
        items: list[_Item] = []
        buf = f.buf
        base = f.pos - len(buf)
        limit = self._max_line
        i = 0
        while True:
            nl = buf.find(b"\n", i, i + limit + 1)
            if nl >= 0:
                if f.cutting:  # the last piece of a cut line stands alone like the others
                    f.cutting = False
                    raw = bytes(buf[i:nl]).removesuffix(b"\r")
                    items.append(self._item(f, Joined(self._decode(f, raw, base + i), base + i, base + nl + 1)))
                else:
                    items += self._line(f, bytes(buf[i:nl]), base + i, base + nl + 1, now)
                i = nl + 1
            elif len(buf) - i > limit:
                cut = _char_boundary(buf, i, i + limit)
                self._warn(
                    f,
                    "long",
                    f"a line longer than max_line={limit} bytes at byte {base + i}; cut into pieces of at most {limit} bytes",
                )
                items += self._items(f, f.joiner.flush() if f.joiner else [])
                items.append(self._item(f, Joined(self._decode(f, bytes(buf[i:cut]), base + i), base + i, base + cut)))
                i = cut
                f.cutting = True
            else:
                break
        del buf[:i]
        return items

    def _line(self, f: _File, raw: bytes, offset: int, end: int, now: float) -> list[_Item]:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = self._decode(f, raw, offset)
        if f.joiner is None:
            return [self._item(f, Joined(text, offset, end))]
        return self._items(f, f.joiner.feed(text, offset, end, now))

    def _decode(self, f: _File, raw: bytes, offset: int) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._warn(f, "utf8", f"invalid UTF-8 at byte {offset + exc.start}; undecodable bytes shown as U+FFFD")
            text = raw.decode("utf-8", errors="replace")
        if "\x00" in text:
            self._warn(f, "nul", f"binary data (NUL bytes) in the line at byte {offset}; NULs shown as U+FFFD")
            text = text.replace("\x00", "\ufffd")
        return text

    def _flush_file(self, f: _File) -> list[_Item]:
        """Everything held back for ``f``: its partial last line, then the open entry."""
        items: list[_Item] = []
        if f.buf:
            start = f.pos - len(f.buf)
            raw = bytes(f.buf)
            f.buf.clear()
            items += self._line(f, raw, start, start + len(raw), self._clock())
        if f.joiner is not None:
            items += self._items(f, f.joiner.flush())
        return items

    def _drain_and_close(self, f: _File, now: float) -> list[_Item]:
        items: list[_Item] = []
        more = True
        while more:
            got, more = self._read(f, now)
            items += got
        items += self._flush_file(f)
        os.close(f.fd)
        if not os.path.lexists(f.path):
            self._waiting.add(f.path)  # said here; no "no such file yet" on top
            self._problem(
                f"{f.path}: file disappeared; read to its end and closed (a file created there later is read from its start)"
            )
        return items

    def _items(self, f: _File, joined: list[Joined]) -> list[_Item]:
        return [self._item(f, j) for j in joined]

    def _item(self, f: _File, j: Joined) -> _Item:
        return _Item(RawLine(f.path, j.text, j.offset, f"{f.key[0]}:{f.key[1]}:{f.generation}"), f, f.generation, j.end)

    def _warn(self, f: _File, kind: str, what: str) -> None:
        if kind not in f.warned:
            f.warned.add(kind)
            self._problem(f"{f.path}: {what} (reported once per file)")

    # -- state ----------------------------------------------------------------

    def _load_state(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._problem(f"state file {path}: cannot be read ({exc.strerror}); starting without it")
            return
        try:
            doc: Any = json.loads(raw)
            if doc.get("version") != _STATE_VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {_STATE_VERSION}")
            saved = {
                (int(e["dev"]), int(e["ino"])): _Saved(str(e["path"]), int(e["offset"]), bytes.fromhex(e["head"]))
                for e in doc["files"]
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._problem(f"state file {path}: not a valid tail state ({exc}); starting without it — delete or fix it")
            return
        self._saved = saved
        self._resuming = True


def _after_last_newline(fd: int, size: int) -> int:
    """Offset just past the last newline in the final 64 KiB (``size`` when
    the file ends with one or no newline is found)."""
    if size == 0:
        return 0
    start = max(0, size - _CHUNK)
    tail = os.pread(fd, size - start, start)
    nl = tail.rfind(b"\n")
    return size if nl < 0 else start + nl + 1


def _char_boundary(buf: bytearray, start: int, cut: int) -> int:
    """Move ``cut`` back (at most 3 bytes) so it does not split a UTF-8 character."""
    for back in range(4):
        if cut - back <= start:
            break
        if buf[cut - back] & 0xC0 != 0x80:
            return cut - back
    return cut
