"""What a file is: its sha256, size and mtime (:class:`Expected`), and how
to take them (:func:`record_output`, :func:`sha256_file`).

Shared by ``Run.output`` of the SDK (a run registers a file it wrote) and the
``integrity`` detector (:mod:`flowsight.detectors.integrity`, which checks
files against such records and re-exports these names): it sits below both,
so that the SDK imports no detector. It reads files, so it is not in
:mod:`flowsight.model` (no I/O there).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass

__all__ = ["Expected", "record_output", "sha256_file", "stat_identity"]

_CHUNK = 1024 * 1024
_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Expected:
    """What a file must be: its sha256 (hex, stored lower-case), and where
    known its size in bytes and mtime (seconds, as ``os.stat().st_mtime``).

    Raises:
        ValueError: ``sha256`` is not 64 hex digits, or ``size``/``mtime`` is not a number.
    """

    sha256: str
    size: int | None = None
    mtime: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _HEX.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {self.sha256!r}")
        object.__setattr__(self, "sha256", self.sha256.lower())
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            raise ValueError(f"size must be a whole number of bytes, 0 or more, got {self.size!r}")
        if self.mtime is not None and (
            isinstance(self.mtime, bool) or not isinstance(self.mtime, (int, float)) or not math.isfinite(self.mtime)
        ):
            raise ValueError(f"mtime must be a number of seconds, got {self.mtime!r}")


def sha256_file(path: str) -> str:
    """The sha256 of the file at ``path``, hex, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def record_output(path: str | os.PathLike[str]) -> Expected:
    """What ``path`` is now: its sum, size and mtime (blocking).

    Raises:
        OSError: it cannot be read.
        RuntimeError: it kept changing while it was hashed (three tries).
    """
    p = os.fspath(path)
    for _ in range(3):
        before = os.stat(p)
        digest = sha256_file(p)
        if stat_identity(os.stat(p)) == stat_identity(before):
            return Expected(digest, before.st_size, before.st_mtime)
    raise RuntimeError(f"{p}: changed while it was being hashed, three times; record it once it is complete")


def stat_identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from another without reading it:
    size, mtime and ctime (ns) and inode."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns
