"""The ``integrity`` detector: are the files still what was written?

``IntegrityDetector(name, manifest=None, paths=None, expected=None,
large=8 MiB)`` checks files against their recorded sha256 sums:

- ``manifest``: a file in ``sha256sum`` format (``<hex>  <path>`` lines,
  ``*`` binary marks, ``\\``-escaped names and ``SHA256 (path) = <hex>`` tag
  lines too; relative paths are relative to the manifest's folder, as for
  ``sha256sum -c``), or JSON: ``{"path": "<hex>"}`` or a list of
  ``{"path", "sha256", "size", "mtime"}`` (what :func:`write_manifest`
  writes to a ``.json`` file), told by a ``.json`` name or a first ``{`` or
  ``[``. It is read again whenever it changes.
- ``expected``: in code, path -> :class:`Expected` (or a bare hex sum); it
  wins over the manifest for the same path.
- ``paths``: only these files, or the listed files under these folders, are
  checked (default: every one listed). A file on disk that is not listed is
  no concern of this detector; a file listed and missing is corruption. A
  file named in ``paths`` that nothing lists makes the check raise: there is
  nothing to compare it with.

Each listed file, in path order, is judged by :func:`judge`: missing; a size
other than the recorded one (truncated or grown; not hashed); a size *and*
mtime equal to the recorded ones (the cheap check: not hashed); else its
sum is compared. Every corrupt file of one check is in the evidence
(``files``); the first is the fault, a
:class:`~flowsight.model.faults.DataCorruption` of its path.

Hashing is chunked; files over ``large`` bytes are hashed in a thread. The
sum of a file is kept with its (size, mtime, inode, ctime) and not computed
again while these stay the same, except for a file changed within the last
:data:`RACY_SECONDS` (a filesystem's timestamps may be too coarse to tell
two writes in the same tick apart; git calls this "racily clean").
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from flowsight.options.fields import Options, Opt, array, boolean, nonempty_string
from flowsight.detectors.tcp import check_name
from flowsight.model.faults import DataCorruption, Fault

# what a file is, and taking it: shared with the SDK's Run.output (flowsight.outputs), importable here as before
from flowsight.outputs import Expected, record_output, sha256_file, stat_identity

__all__ = [
    "LARGE",
    "RACY_SECONDS",
    "Expected",
    "IntegrityDetector",
    "judge",
    "read_manifest",
    "record_output",
    "sha256_file",
    "write_manifest",
]

#: files over this many bytes are hashed in a thread
LARGE = 8 * 1024 * 1024
#: a file changed this recently is hashed again at every check
RACY_SECONDS = 2.0
# "<hex>  <path>" ("*" before the path: binary mode), or "SHA256 (<path>) = <hex>"
_SUM_LINE = re.compile(r"(\\?)([0-9a-fA-F]{64}) [ *](.*)")
_TAG_LINE = re.compile(r"(\\?)SHA256 \((.*)\) = ([0-9a-fA-F]{64})")
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}
_UNESCAPE_RE = re.compile(r"\\[\\nr]")


def write_manifest(
    entries: Mapping[str, Expected] | Iterable[tuple[str, Expected]], manifest_path: str | os.PathLike[str]
) -> None:
    """Write ``entries`` (path -> :class:`Expected`) to ``manifest_path``,
    atomically (a temporary file beside it, then renamed over it): in
    ``sha256sum`` format, or for a ``.json`` name as a JSON list that keeps
    size and mtime too (so that the detector can skip unchanged files).
    Paths are written relative to the manifest's folder, sorted.
    """
    target = os.fspath(manifest_path)
    folder = os.path.dirname(os.path.abspath(target))
    items = entries.items() if isinstance(entries, Mapping) else entries
    rows = sorted((os.path.relpath(os.path.abspath(p), folder), e) for p, e in items)
    if target.endswith(".json"):
        listed = [
            {
                "path": p,
                "sha256": e.sha256,
                **({"size": e.size} if e.size is not None else {}),
                **({"mtime": e.mtime} if e.mtime is not None else {}),
            }
            for p, e in rows
        ]
        text = json.dumps(listed, indent=1) + "\n"
    else:
        text = "".join(_sum_line(p, e.sha256) for p, e in rows)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _sum_line(path: str, digest: str) -> str:
    if "\\" in path or "\n" in path or "\r" in path:  # GNU's escaping: a backslash before the line
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {escaped}\n"
    return f"{digest}  {path}\n"


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Expected]:
    """The entries of a manifest (format: see the module docstring), by path
    (the manifest's folder joined to a relative one, normalized). Blocking.

    Raises:
        OSError: it cannot be read.
        ValueError: it is not a manifest (the message names the line or entry).
    """
    where = os.fspath(path)
    with open(where, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    folder = os.path.dirname(where)
    is_json = where.endswith(".json") or text.lstrip()[:1] in ("{", "[")
    raw = _parse_json_manifest(where, text) if is_json else _parse_sums(where, text)
    return {os.path.normpath(os.path.join(folder, p)): e for p, e in raw}


def _parse_sums(where: str, text: str) -> list[tuple[str, Expected]]:
    out: list[tuple[str, Expected]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if m := _SUM_LINE.fullmatch(line):
            escaped, digest, name = m.groups()
        elif m := _TAG_LINE.fullmatch(line):
            escaped, name, digest = m.groups()
        else:
            raise ValueError(f"{where}: line {number}: expected '<sha256>  <path>', got {line[:80]!r}")
        if escaped:
            name = _UNESCAPE_RE.sub(lambda e: _UNESCAPE[e.group()], name)
        out.append((name, Expected(digest)))
    return out


def _parse_json_manifest(where: str, text: str) -> list[tuple[str, Expected]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if isinstance(doc, dict):
        listed: list[Any] = [{"path": k, **(v if isinstance(v, dict) else {"sha256": v})} for k, v in doc.items()]
    elif isinstance(doc, list):
        listed = doc
    else:
        raise ValueError(f"{where}: expected an object of path -> sha256 or a list of entries")
    out: list[tuple[str, Expected]] = []
    for i, item in enumerate(listed):
        try:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
                raise ValueError("expected an object with path and sha256")
            out.append((item["path"], Expected(item.get("sha256", ""), item.get("size"), item.get("mtime"))))
        except ValueError as exc:
            raise ValueError(f"{where}: entry {i + 1}: {exc}") from None
    return out


# ---- the pure decision -----------------------------------------------------------------
def judge(
    file: str, expected: Expected, st: os.stat_result | OSError | None, digest: str | None = None
) -> tuple[str, dict[str, Any]] | None:
    """Whether ``file`` is what ``expected`` says: None, or the problem (a
    message, the evidence). ``st``: its stat (an OSError: it could not be
    stat'ed; None: missing); ``digest``: its sum when it has been computed
    (needed only when :func:`needs_hash`). The message leaves the file out:
    it is the fault's target, shown beside it."""
    if st is None:
        return "missing", {"file": file, "problem": "missing"}
    if isinstance(st, OSError):
        return f"unreadable ({st.strerror})", {"file": file, "problem": "unreadable", "error": str(st)}
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file", {"file": file, "problem": "not a regular file"}
    if expected.size is not None and st.st_size != expected.size:
        what = "truncated" if st.st_size < expected.size else "grown"
        return (
            f"{what}: {st.st_size:,} bytes, expected {expected.size:,}",
            {"file": file, "problem": what, "expected_size": expected.size, "actual_size": st.st_size},
        )
    if digest is None or digest == expected.sha256:
        return None
    return (
        f"content changed: sha256 {digest[:12]}..., expected {expected.sha256[:12]}...",
        {"file": file, "problem": "changed", "expected_sha256": expected.sha256, "actual_sha256": digest},
    )


def needs_hash(expected: Expected, st: os.stat_result | OSError | None) -> bool:
    """Whether :func:`judge` needs the file's sum: it is a regular file of
    the recorded size (or none is recorded), and not both its size and mtime
    match the recorded ones (the cheap check)."""
    if not isinstance(st, os.stat_result) or not stat.S_ISREG(st.st_mode):
        return False
    if expected.size is not None and st.st_size != expected.size:
        return False
    return not (expected.size is not None and expected.mtime is not None and expected.mtime == st.st_mtime)


def _stat_error(exc: OSError) -> OSError | None:
    """What :func:`judge` makes of a failure to stat or read a file: None
    (missing), the error (an I/O error: the data is damaged).

    Raises:
        OSError: any other (no permission, say): the detector cannot look,
            the file may be fine.
    """
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return None
    if exc.errno == errno.EIO:
        return exc
    raise exc


# ---- the detector ----------------------------------------------------------------------
class IntegrityDetector:
    """See the module docstring. ``hash_file`` computes a file's sum
    (:func:`sha256_file`); ``clock`` is the wall clock the racy-file rule
    compares mtimes with.

    Raises:
        ValueError: an option is not what it must be (the message names it).
    """

    KIND: ClassVar[str] = "integrity"
    OPTIONS: ClassVar[Options] = {
        "manifest": Opt(nonempty_string, path=True),
        "registered": Opt(boolean),
        "paths": Opt(array(nonempty_string, nonempty=True), path=True),
    }

    def __init__(
        self,
        name: str,
        *,
        manifest: str | os.PathLike[str] | None = None,
        paths: Iterable[str | os.PathLike[str]] | None = None,
        expected: Mapping[str, Expected | str] | None = None,
        large: int = LARGE,
        registered: bool = False,
        store: Any = None,
        hash_file: Callable[[str], str] = sha256_file,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = check_name(name)
        if manifest is not None and (not isinstance(manifest, (str, os.PathLike)) or not os.fspath(manifest)):
            raise ValueError(
                f"detector {name!r}: manifest must be the path of a sha256sum or JSON file, got {manifest!r}"
            )
        self.manifest = os.fspath(manifest) if manifest is not None else None
        self.expected = self._check_expected(expected)
        if not isinstance(registered, bool):
            raise ValueError(f"detector {name!r}: registered must be true or false, got {registered!r}")
        # registered: the files runs registered (Run.output), read from the
        # store (anything with registered_outputs(under)), given by the server
        self.registered = registered
        self.store = store
        if self.manifest is None and not self.expected and not registered:
            raise ValueError(
                f"detector {name!r}: needs manifest (a sha256sum or JSON file), expected "
                f"(path -> sha256) or registered = true (the outputs runs registered), to know "
                f"what the files must be"
            )
        if paths is not None and (
            isinstance(paths, (str, bytes, os.PathLike))
            or not all(isinstance(p, (str, os.PathLike)) and os.fspath(p) for p in paths)
        ):
            raise ValueError(f"detector {name!r}: paths must be a list of files or folders, got {paths!r}")
        self.paths = [os.path.abspath(p) for p in paths] if paths is not None else None
        if isinstance(large, bool) or not isinstance(large, int) or large < 0:
            raise ValueError(f"detector {name!r}: large must be a whole number of bytes, 0 or more, got {large!r}")
        self.large = large
        self._hash_file = hash_file
        self._clock = clock
        self._manifest_seen: tuple[tuple[int, int, int, int], dict[str, Expected]] | None = None
        self._sums: dict[str, tuple[tuple[int, int, int, int], str]] = {}  # path -> (identity, its sum)

    def _check_expected(self, expected: Mapping[str, Expected | str] | None) -> dict[str, Expected]:
        if expected is None:
            return {}
        if not isinstance(expected, Mapping):
            raise ValueError(f"detector {self.name!r}: expected must map paths to Expected, got {expected!r}")
        out: dict[str, Expected] = {}
        for path, e in expected.items():
            try:
                out[os.path.normpath(os.fspath(path))] = e if isinstance(e, Expected) else Expected(e)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"detector {self.name!r}: expected[{path!r}]: {exc}") from None
        return out

    async def detect(self) -> Fault | None:
        """Check every listed file once: None when all are intact, else the fault.

        Raises:
            OSError: the manifest, or a file, cannot be read for want of permission.
            ValueError: the manifest is malformed, or a file in ``paths`` is listed nowhere.
        """
        looked = await asyncio.to_thread(self._look)
        problems: list[tuple[str, dict[str, Any]]] = []
        for file, expected, st in looked:
            digest = None
            if needs_hash(expected, st):
                assert isinstance(st, os.stat_result)
                try:
                    digest = await self._sum(file, st)
                except OSError as exc:
                    st = _stat_error(exc)  # gone, or unreadable, since it was stat'ed
            problem = judge(file, expected, st, digest)
            if problem is not None:
                problems.append(problem)
        listed = {file for file, _, _ in looked}
        self._sums = {f: kept for f, kept in self._sums.items() if f in listed}
        if not problems:
            return None
        message, evidence = problems[0]
        files = [e["file"] for _, e in problems]
        if len(problems) > 1:  # the target is the first; the others are named here
            others = ", ".join(files[1:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
            message = f"{message}; {len(problems) - 1} more file{'s' if len(problems) > 2 else ''} corrupt: {others}"
        return Fault(
            DataCorruption(evidence["file"]), message, detector=self.name, evidence={**evidence, "files": files}
        )

    def _look(self) -> list[tuple[str, Expected, os.stat_result | OSError | None]]:
        """The listed files in path order, each with its stat (blocking)."""
        entries = self._entries()
        out: list[tuple[str, Expected, os.stat_result | OSError | None]] = []
        for file in sorted(entries):
            st: os.stat_result | OSError | None
            try:
                st = os.stat(file)
            except OSError as exc:
                st = _stat_error(exc)
            out.append((file, entries[file], st))
        return out

    def _entries(self) -> dict[str, Expected]:
        entries = {**self._read_manifest(), **self._registered(), **self.expected}
        if self.paths is None:
            return entries
        chosen: dict[str, Expected] = {}
        absolute = {os.path.abspath(f): f for f in entries}
        for p in self.paths:
            under = [f for a, f in absolute.items() if a == p or a.startswith(p.rstrip(os.sep) + os.sep)]
            if not under and not os.path.isdir(p) and not self.registered:
                raise ValueError(f"{p}: in paths, but neither the manifest nor expected lists it")
            chosen.update((f, entries[f]) for f in under)
        return chosen

    def _registered(self) -> dict[str, Expected]:
        if not self.registered:
            return {}
        if self.store is None:
            raise ValueError(
                "registered = true needs the store of the runs' outputs: it is given when the "
                "detector runs in flowsight serve or flowsight detectors check"
            )
        return {
            path: Expected(digest, size, mtime)
            for path, (digest, size, mtime) in self.store.faults.registered_outputs(self.paths).items()
        }

    def _read_manifest(self) -> dict[str, Expected]:
        if self.manifest is None:
            return {}
        seen = stat_identity(os.stat(self.manifest))
        if self._manifest_seen is None or self._manifest_seen[0] != seen:
            self._manifest_seen = seen, read_manifest(self.manifest)
        return self._manifest_seen[1]

    async def _sum(self, file: str, st: os.stat_result) -> str:
        identity = stat_identity(st)
        kept = self._sums.get(file)
        if kept is not None and kept[0] == identity:
            return kept[1]
        if st.st_size > self.large:
            digest = await asyncio.to_thread(self._hash_file, file)
        else:
            digest = self._hash_file(file)
            await asyncio.sleep(0)  # many small files: let the loop breathe between them
        if st.st_mtime < self._clock() - RACY_SECONDS:
            self._sums[file] = identity, digest
        return digest
