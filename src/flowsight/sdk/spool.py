"""The SDK's disk spool: batches wait here until a server has acknowledged them.

A spool is one directory per server URL. Each batch is one *segment* file,
the request body exactly as it will be sent (a gzip-compressed JSON array of
events), written to a temporary name and renamed into place, so a reader never
sees half a segment. Names sort oldest first::

    <time_ns:020d>-<pid:07d>-<n:06d>[.<half>...]_<events>.json.gz

A sender *claims* a segment with ``flock(LOCK_EX | LOCK_NB)`` before sending
it and deletes it while still holding the lock, only once the server answered.
Two processes (or two clients of one process: ``flock`` locks belong to the
open file, not the process) therefore never send the same segment at the same
time, and a segment deleted under a waiting claimer is noticed (its link count
is 0) and skipped.

The directory is bounded (``max_bytes``): a new segment that does not fit makes
room by deleting the oldest unclaimed segments. Every dropped event is counted
(:attr:`Spool.dropped`) and reported with a warning; nothing is lost silently.

Segments survive the death of the process that wrote them (``kill -9``
included): they are plain files, written without ``fsync``, so a power loss can
still take the last ones with it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from flowsight.errors import ConfigError
from flowsight.pids import alive

log = logging.getLogger("flowsight.sdk")

ENV_SPOOL_DIR = "FLOWSIGHT_SPOOL_DIR"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
SUFFIX = ".json.gz"
_TMP_PREFIX = ".tmp-"
# one counter for every spool of the process: two clients of one URL share a
# directory, and their names (pid + counter) must still never collide
_names = itertools.count()


def spool_dir_for(
    url: str, root: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ
) -> Path:
    """The spool directory of the server at ``url``: ``<root>/<hash of url>``.

    ``root`` defaults to ``$FLOWSIGHT_SPOOL_DIR``, else
    ``$XDG_CACHE_HOME/flowsight/spool`` (``~/.cache/flowsight/spool``). Each URL
    gets its own directory, so events spooled for one server never go to another.
    """
    if root is None:
        root = environ.get(ENV_SPOOL_DIR) or None
    if root is None:
        cache = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(cache, "flowsight", "spool")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(root) / digest


def log_spool_dir(url: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The spool directory of log entries for the server at ``url``: ``logs``
    below its events' one, bounded on its own (a flood of log lines never
    pushes events out)."""
    return spool_dir_for(url, root) / "logs"


@dataclass(frozen=True, slots=True)
class Segment:
    """A spooled batch, claimed (locked) by the caller until the ``with`` ends."""

    path: Path
    body: bytes
    count: int


def count_of(name: str) -> int:
    """Events in a segment, from its name (0 if the name is not a segment's)."""
    try:
        return int(name[: -len(SUFFIX)].rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 0


class Spool:
    """A bounded directory of segments (see the module docstring).

    Thread-safe: the SDK's writer thread adds segments while its sender thread
    claims and deletes them.

    Raises:
        ConfigError: the directory cannot be created or written.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        label: str | None = None,
        what: str = "events",
    ) -> None:
        if max_bytes <= 0:
            raise ConfigError(f"spool bound must be a positive number of bytes, got {max_bytes}")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.what = what  # names the items in messages ("events", "log entries")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if label is not None:
                (self.dir / "URL").write_text(label + "\n")  # for a person wondering what the directory holds
        except OSError as exc:
            raise ConfigError(
                f"cannot use {str(self.dir)!r} as the SDK's spool ({exc.strerror}); set "
                f"{ENV_SPOOL_DIR} to a writable directory"
            ) from None
        self._lock = threading.Lock()
        #: events dropped to keep the spool under ``max_bytes`` (or unwritable), by this process
        self.dropped = 0
        self._remove_stale_temporaries()

    # ---- writing -----------------------------------------------------------
    def put(self, body: bytes, count: int, *, name: str | None = None) -> Path | None:
        """Add a segment of ``count`` events; the oldest go first if it does not fit.

        Returns the segment's path, or None when it was dropped itself (larger
        than the whole bound, or the disk refused it; counted and warned about).
        """
        with self._lock:
            if not self._make_room(len(body), count):
                return None
            if name is None:
                name = f"{time.time_ns():020d}-{os.getpid():07d}-{next(_names) % 1_000_000:06d}"
            path = self.dir / f"{name}_{count}{SUFFIX}"
            tmp = self.dir / f"{_TMP_PREFIX}{os.getpid()}-{next(_names)}"
            try:
                with open(tmp, "wb") as f:
                    f.write(body)
                os.replace(tmp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                self._drop(count, f"writing it to {str(self.dir)!r} failed ({exc.strerror})")
                return None
            return path

    def _make_room(self, size: int, count: int) -> bool:
        entries = self._entries()
        total = sum(s for _, s in entries)
        if total + size <= self.max_bytes:
            return True
        if size > self.max_bytes:
            self._drop(
                count, f"the batch alone ({size} bytes) is larger than the spool's bound of {self.max_bytes} bytes"
            )
            return False
        freed_events = 0
        for path, seg_size in entries:
            if total + size <= self.max_bytes:
                break
            with self.claim(path, read=False) as seg:
                if seg is None:
                    continue  # being sent right now
                os.unlink(path)
                total -= seg_size
                freed_events += seg.count
        if freed_events:
            self._drop(
                freed_events,
                f"the spool {str(self.dir)!r} reached its bound of {self.max_bytes} bytes "
                f"while the server could not take them (oldest {self.what} go first)",
            )
        return True  # at most the segments in flight over the bound

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        log.warning(
            "flowsight: dropped %d %s: %s; %d dropped by this process so far", count, self.what, why, self.dropped
        )

    # ---- reading -----------------------------------------------------------
    def _entries(self) -> list[tuple[Path, int]]:
        """Segments, oldest first, with their sizes."""
        out = []
        try:
            with os.scandir(self.dir) as it:
                for e in it:
                    if e.name.endswith(SUFFIX):
                        with contextlib.suppress(FileNotFoundError):
                            out.append((e.name, Path(e.path), e.stat().st_size))
        except FileNotFoundError:
            return []
        out.sort()
        return [(p, s) for _, p, s in out]

    def segments(self) -> list[Path]:
        """Segment paths, oldest first (some may be claimed by a sender)."""
        return [p for p, _ in self._entries()]

    def size(self) -> int:
        """Bytes the segments take."""
        return sum(s for _, s in self._entries())

    def pending(self) -> int:
        """Events waiting in the spool (from the segment names)."""
        return sum(count_of(p.name) for p in self.segments())

    @contextlib.contextmanager
    def claim(self, path: Path, *, read: bool = True) -> Iterator[Segment | None]:
        """Lock ``path`` for the duration of the ``with``: the segment (its body
        empty unless ``read``), or None when another sender holds it or it is gone."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    yield None
                    return
                raise
            if os.fstat(fd).st_nlink == 0:  # deleted by whoever held it before us
                yield None
                return
            body = b""
            if read:
                with os.fdopen(os.dup(fd), "rb") as f:
                    body = f.read()
            yield Segment(path, body, count_of(path.name))
        finally:
            os.close(fd)  # releases the lock

    def remove(self, segment: Segment) -> None:
        """Delete a claimed segment (call inside its ``claim``)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment.path)

    def split(self, segment: Segment, halves: tuple[tuple[bytes, int], tuple[bytes, int]]) -> list[Path]:
        """Replace a claimed segment by two, in its place in the order (a
        server that found it too big gets it in halves); their paths."""
        stem = segment.path.name[: -len(SUFFIX)].rsplit("_", 1)[0]
        paths = [self.put(body, count, name=f"{stem}.{i}") for i, (body, count) in enumerate(halves)]
        self.remove(segment)
        return [p for p in paths if p is not None]

    def _remove_stale_temporaries(self) -> None:
        """Half-written segments of processes that died while writing them."""
        with contextlib.suppress(FileNotFoundError):
            for p in self.dir.glob(f"{_TMP_PREFIX}*"):
                pid = p.name[len(_TMP_PREFIX) :].split("-", 1)[0]
                if pid.isdigit() and not alive(int(pid)):
                    with contextlib.suppress(OSError):
                        p.unlink()
