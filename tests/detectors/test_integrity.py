"""The integrity detector on real files: changed, truncated, grown and missing
files against sha256sum and JSON manifests, and the work it saves (hash
calls counted through its ``hash_file``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowsight.detectors.integrity import (
    RACY_SECONDS,
    Expected,
    IntegrityDetector,
    read_manifest,
    record_output,
    sha256_file,
    write_manifest,
)
from flowsight.model.faults import DataCorruption, Fault
from tests.helpers import run

LONG_AGO = time.time() - 3600


class CountingHasher:
    """sha256_file, counting its calls (and whether each ran in the main thread)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.in_main: list[bool] = []

    def __call__(self, path: str) -> str:
        self.calls.append(os.path.basename(path))
        self.in_main.append(threading.current_thread() is threading.main_thread())
        return sha256_file(path)


def check(detector: IntegrityDetector) -> Fault | None:
    return run(detector.detect)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def outputs(folder: Path, **files: bytes) -> dict[str, Path]:
    """Write ``files`` under ``folder`` with an mtime an hour ago (settled, not racy)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        os.utime(path, (LONG_AGO, LONG_AGO))
        out[name] = path
    return out


def sums_manifest(folder: Path, **files: bytes) -> Path:
    """A sha256sum-format manifest of ``files``, the files written too."""
    outputs(folder, **files)
    manifest = folder / "SHA256SUMS"
    manifest.write_text("".join(f"{sha(data)}  {name}\n" for name, data in files.items()))
    return manifest


# ---- what is found -------------------------------------------------------------------------
def test_a_file_whose_bytes_changed_is_corrupt_until_restored(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"part-0.csv": b"id,value\n1,10\n", "part-1.csv": b"id,value\n2,20\n"})
    detector = IntegrityDetector(name="outputs", manifest=str(manifest))
    assert check(detector) is None

    target = tmp_path / "part-1.csv"
    target.write_bytes(b"id,value\n2,21\n")  # the same size
    good, bad = sha(b"id,value\n2,20\n"), sha(b"id,value\n2,21\n")
    fault = check(detector)
    assert fault is not None and fault.type == DataCorruption(str(target)) and fault.detector == "outputs"
    assert fault.evidence == {
        "file": str(target),
        "problem": "changed",
        "expected_sha256": good,
        "actual_sha256": bad,
        "files": [str(target)],
    }
    assert fault.message == f"content changed: sha256 {bad[:12]}..., expected {good[:12]}..."

    target.write_bytes(b"id,value\n2,20\n")
    assert check(detector) is None


def test_a_truncated_file_is_found_by_its_size_without_hashing(tmp_path: Path) -> None:
    files = outputs(tmp_path / "out", **{"model.bin": b"x" * 5000})
    manifest = tmp_path / "out" / "manifest.json"
    write_manifest({str(files["model.bin"]): record_output(files["model.bin"])}, manifest)
    hasher = CountingHasher()
    detector = IntegrityDetector(name="model", manifest=manifest, hash_file=hasher)

    with open(files["model.bin"], "r+b") as f:
        f.truncate(1200)
    fault = check(detector)
    assert fault is not None and fault.type == DataCorruption(str(files["model.bin"]))
    assert fault.evidence == {
        "file": str(files["model.bin"]),
        "problem": "truncated",
        "expected_size": 5000,
        "actual_size": 1200,
        "files": [str(files["model.bin"])],
    }
    assert fault.message == "truncated: 1,200 bytes, expected 5,000"
    assert hasher.calls == []

    files["model.bin"].write_bytes(b"x" * 5001)
    fault = check(detector)
    assert fault is not None and fault.evidence["problem"] == "grown" and fault.evidence["actual_size"] == 5001

    files["model.bin"].write_bytes(b"x" * 5000)  # the right bytes, a new mtime: hashed, and good
    assert check(detector) is None
    assert hasher.calls == ["model.bin"]


def test_a_listed_file_that_is_missing_is_corrupt(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"a.parquet": b"aaa", "b.parquet": b"bbb"})
    (tmp_path / "b.parquet").unlink()
    detector = IntegrityDetector(name="lake", manifest=manifest)
    fault = check(detector)
    assert fault is not None and fault.type == DataCorruption(str(tmp_path / "b.parquet"))
    assert fault.message == "missing"  # the file is the target, not repeated in the message
    assert fault.evidence == {
        "file": str(tmp_path / "b.parquet"),
        "problem": "missing",
        "files": [str(tmp_path / "b.parquet")],
    }
    (tmp_path / "b.parquet").write_bytes(b"bbb")
    assert check(detector) is None


def test_several_corrupt_files_make_one_fault_about_the_first_in_path_order(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"c.txt": b"c", "a.txt": b"a", "b.txt": b"b", "d.txt": b"d"})
    (tmp_path / "d.txt").write_bytes(b"D")
    (tmp_path / "b.txt").unlink()
    (tmp_path / "c.txt").write_bytes(b"C")
    fault = check(IntegrityDetector(name="x", manifest=manifest))
    assert fault is not None and fault.target == str(tmp_path / "b.txt")
    assert fault.evidence["files"] == [str(tmp_path / n) for n in ("b.txt", "c.txt", "d.txt")]
    assert fault.message == f"missing; 2 more files corrupt: {tmp_path / 'c.txt'}, {tmp_path / 'd.txt'}"
    assert fault.evidence["problem"] == "missing"


# ---- the work saved --------------------------------------------------------------------------
def test_a_file_whose_size_and_mtime_match_the_manifest_is_not_hashed(tmp_path: Path) -> None:
    files = outputs(tmp_path, **{"a.bin": b"a" * 100, "b.bin": b"b" * 100})
    manifest = tmp_path / "manifest.json"
    write_manifest({str(p): record_output(p) for p in files.values()}, manifest)
    hasher = CountingHasher()
    detector = IntegrityDetector(name="x", manifest=manifest, hash_file=hasher)
    assert check(detector) is None
    assert hasher.calls == []

    # same size, same mtime, other bytes: the cheap check trusts it, as documented
    files["a.bin"].write_bytes(b"A" * 100)
    os.utime(files["a.bin"], (LONG_AGO, LONG_AGO))
    assert check(detector) is None and hasher.calls == []

    files["b.bin"].write_bytes(b"B" * 100)  # a new mtime: hashed
    fault = check(detector)
    assert fault is not None and fault.target == str(files["b.bin"])
    assert hasher.calls == ["b.bin"]


def test_an_unchanged_file_is_hashed_once_then_remembered(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"a.bin": b"a" * 100, "b.bin": b"b" * 100})
    hasher = CountingHasher()
    detector = IntegrityDetector(name="x", manifest=manifest, hash_file=hasher)
    assert check(detector) is None
    assert sorted(hasher.calls) == ["a.bin", "b.bin"]
    assert check(detector) is None and check(detector) is None
    assert len(hasher.calls) == 2

    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    os.utime(tmp_path / "a.bin", (LONG_AGO + 1, LONG_AGO + 1))
    fault = check(detector)
    assert fault is not None and fault.evidence["problem"] == "changed"
    assert hasher.calls[2:] == ["a.bin"]
    check(detector)  # a corrupt file's sum is kept too: it is not hashed again while unchanged
    assert hasher.calls[2:] == ["a.bin"]


def test_a_file_changed_within_the_last_seconds_is_hashed_at_every_check(tmp_path: Path) -> None:
    (tmp_path / "fresh.bin").write_bytes(b"f")
    (tmp_path / "SHA256SUMS").write_text(f"{sha(b'f')}  fresh.bin\n")
    hasher = CountingHasher()
    now = time.time()
    clock = [now]
    detector = IntegrityDetector(name="x", manifest=tmp_path / "SHA256SUMS", hash_file=hasher, clock=lambda: clock[0])
    check(detector)
    check(detector)
    assert hasher.calls == ["fresh.bin", "fresh.bin"]  # racily clean: a write in the same tick would not show
    clock[0] = now + RACY_SECONDS + 60
    check(detector)
    check(detector)
    assert len(hasher.calls) == 3


def test_files_over_large_are_hashed_in_a_thread(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"big.bin": b"b" * 2000, "small.bin": b"s" * 10})
    hasher = CountingHasher()
    assert check(IntegrityDetector(name="x", manifest=manifest, large=1000, hash_file=hasher)) is None
    assert dict(zip(hasher.calls, hasher.in_main)) == {"big.bin": False, "small.bin": True}


# ---- manifests -------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils' sha256sum")
def test_a_manifest_written_by_sha256sum_itself(tmp_path: Path) -> None:
    outputs(tmp_path / "d", **{"one.txt": b"1", "two words.txt": b"2", "back\\slash.txt": b"3"})
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "d" / "sub" / "three.txt").write_bytes(b"3")
    names = ["one.txt", "two words.txt", "back\\slash.txt", "sub/three.txt"]
    text = subprocess.run(["sha256sum", "-b", *names], cwd=tmp_path / "d", check=True, capture_output=True).stdout
    (tmp_path / "d" / "SHA256SUMS").write_bytes(text)
    entries = read_manifest(tmp_path / "d" / "SHA256SUMS")
    assert sorted(entries) == sorted(str(tmp_path / "d" / n) for n in names)
    assert check(IntegrityDetector(name="x", manifest=tmp_path / "d" / "SHA256SUMS")) is None


def test_write_manifest_is_read_back_and_checked_by_sha256sum(tmp_path: Path) -> None:
    files = outputs(tmp_path / "out", **{"a.txt": b"a", "new\nline.txt": b"n"})
    sub = outputs(tmp_path / "out" / "sub", **{"b.txt": b"b"})
    entries = {str(p): record_output(p) for p in [*files.values(), *sub.values()]}
    write_manifest(entries, tmp_path / "out" / "SHA256SUMS")
    assert sorted(os.listdir(tmp_path / "out")) == ["SHA256SUMS", "a.txt", "new\nline.txt", "sub"]  # no temp left
    back = read_manifest(tmp_path / "out" / "SHA256SUMS")
    assert back == {p: Expected(e.sha256) for p, e in entries.items()}
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path / "out", check=True)

    write_manifest(entries, tmp_path / "out" / "manifest.json")
    assert read_manifest(tmp_path / "out" / "manifest.json") == entries
    listed = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert listed[0]["path"] == "a.txt" and set(listed[0]) == {"path", "sha256", "size", "mtime"}


@pytest.mark.parametrize(
    "text",
    [
        '{"a.txt": "%s"}',
        '{"a.txt": {"sha256": "%s", "size": 1}}',
        '[{"path": "a.txt", "sha256": "%s"}]',
        "SHA256 (a.txt) = %s\n",
        "# made by hand\n\n%s *a.txt\n",
    ],
)
def test_manifest_formats(tmp_path: Path, text: str) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "m").write_text(text % sha(b"a").upper())
    assert read_manifest(tmp_path / "m") == {
        str(tmp_path / "a.txt"): Expected(sha(b"a"), *([1] if "size" in text else []))
    }
    assert check(IntegrityDetector(name="x", manifest=tmp_path / "m")) is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("abc  a.txt\n", r"line 1: expected '<sha256>  <path>'"),
        ('{"a.txt": "nothex"}', "entry 1: sha256 must be 64 hex digits"),
        ('[{"sha256": "%s"}]' % ("0" * 64), "entry 1: expected an object with path and sha256"),
        ('{"a.txt": ', "line 1, column 11: Expecting value"),
        ("42", "expected an object of path -> sha256 or a list of entries"),
    ],
)
def test_a_malformed_manifest_breaks_the_detector_saying_where(tmp_path: Path, text: str, error: str) -> None:
    name = "SHA256SUMS" if text.startswith("abc") else "m.json"
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=error):
        check(IntegrityDetector(name="x", manifest=tmp_path / name))


def test_a_changed_manifest_is_read_again(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"a.txt": b"a"})
    detector = IntegrityDetector(name="x", manifest=manifest)
    assert check(detector) is None
    (tmp_path / "a.txt").write_bytes(b"A")
    manifest.write_text(f"{sha(b'A')}  a.txt\n")  # a new version, recorded
    assert check(detector) is None
    manifest.write_text(f"{sha(b'A')}  a.txt\n{sha(b'b')}  b.txt\n")
    fault = check(detector)
    assert fault is not None and fault.target == str(tmp_path / "b.txt")


def test_a_missing_manifest_breaks_the_detector(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check(IntegrityDetector(name="x", manifest=tmp_path / "SHA256SUMS"))


# ---- paths and expected ----------------------------------------------------------------------
def test_paths_choose_files_and_folders_and_extra_files_are_no_concern(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"top.txt": b"t"})
    outputs(tmp_path / "raw", **{"r.txt": b"r"})
    outputs(tmp_path / "clean", **{"c.txt": b"c"})
    manifest.write_text(manifest.read_text() + f"{sha(b'r')}  raw/r.txt\n{sha(b'c')}  clean/c.txt\n")
    (tmp_path / "clean" / "extra.txt").write_bytes(b"not listed")
    (tmp_path / "raw" / "r.txt").write_bytes(b"R")

    hasher = CountingHasher()
    detector = IntegrityDetector(
        name="x", manifest=manifest, paths=[tmp_path / "clean", str(tmp_path / "top.txt")], hash_file=hasher
    )
    assert check(detector) is None
    assert sorted(hasher.calls) == ["c.txt", "top.txt"]

    (tmp_path / "clean" / "c.txt").unlink()
    fault = check(detector)
    assert fault is not None and fault.target == str(tmp_path / "clean" / "c.txt")

    fault = check(IntegrityDetector(name="x", manifest=manifest, paths=[tmp_path / "raw"]))
    assert fault is not None and fault.target == str(tmp_path / "raw" / "r.txt")


def test_a_file_in_paths_that_nothing_lists_breaks_the_detector(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"a.txt": b"a"})
    detector = IntegrityDetector(name="x", manifest=manifest, paths=[tmp_path / "b.txt"])
    with pytest.raises(ValueError, match="in paths, but neither the manifest nor expected lists it"):
        check(detector)


def test_expected_in_code_wins_over_the_manifest(tmp_path: Path) -> None:
    manifest = sums_manifest(tmp_path, **{"a.txt": b"a"})
    a = str(tmp_path / "a.txt")
    wrong = IntegrityDetector(name="x", manifest=manifest, expected={a: Expected(sha(b"other"), size=1)})
    fault = check(wrong)
    assert fault is not None and fault.evidence["expected_sha256"] == sha(b"other")
    assert check(IntegrityDetector(name="x", expected={a: sha(b"a")})) is None


def test_record_output_is_what_the_file_is(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"payload")
    st = path.stat()
    assert record_output(path) == Expected(sha(b"payload"), size=7, mtime=st.st_mtime)


def test_a_directory_where_a_file_was_listed_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "a.txt").mkdir()
    fault = check(IntegrityDetector(name="x", expected={str(tmp_path / "a.txt"): sha(b"a")}))
    assert fault is not None and fault.evidence["problem"] == "not a regular file"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, "needs manifest .* or registered = true"),
        ({"manifest": ""}, "manifest must be the path of a sha256sum or JSON file"),
        ({"manifest": "m", "paths": "data/"}, "paths must be a list of files or folders"),
        ({"expected": {"a": "xyz"}}, r"expected\['a'\]: sha256 must be 64 hex digits"),
        ({"expected": {"a": Expected("0" * 64)}, "large": -1}, "large must be a whole number of bytes"),
    ],
)
def test_options_are_checked_when_made(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        IntegrityDetector(name="x", **options)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("g" * 64,), "sha256 must be 64 hex digits"),
        (("0" * 64, -1), "size must be a whole number"),
        (("0" * 64, None, float("nan")), "mtime must be a number"),
    ],
)
def test_expected_refuses_what_cannot_be(args: tuple[Any, ...], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Expected(*args)
