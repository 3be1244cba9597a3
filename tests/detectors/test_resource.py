"""The resource detector on the real filesystem and /proc, and on a fake proc
tree for the thresholds this machine cannot be made to breach."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from flowsight.detectors.resource import ResourceDetector, format_bytes, mountpoint, parse_open_files_limit
from flowsight.model.faults import Fault, ResourceExhaustion
from tests.helpers import run

LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            {soft}                 {hard}                 files
Max locked memory         8388608              8388608              bytes
"""


def check(detector: ResourceDetector) -> Fault | None:
    return run(detector.detect)


def fake_proc(root: Path, **files: str) -> str:
    """A proc tree under ``root``: ``meminfo="..."``, ``pid_fd=3`` (a
    ``4242/fd`` with that many entries), ``limits="..."`` (``4242/limits``)."""
    for name, text in files.items():
        if name == "pid_fd":
            fd = root / "4242" / "fd"
            fd.mkdir(parents=True)
            for i in range(int(text)):
                (fd / str(i)).touch()
        else:
            path = root / ("4242/limits" if name == "limits" else name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return str(root)


def meminfo(total_kb: int, available_kb: int, swap_total_kb: int = 0, swap_free_kb: int = 0) -> str:
    return (
        f"MemTotal:       {total_kb} kB\nMemFree:        {available_kb // 2} kB\n"
        f"MemAvailable:   {available_kb} kB\nSwapTotal:      {swap_total_kb} kB\n"
        f"SwapFree:       {swap_free_kb} kB\nHugePages_Total:       0\n"
    )


# ---- disk and inodes, on a real temporary folder -----------------------------------------
def test_a_disk_below_its_free_percentage_is_exhausted_and_resolves_with_a_sane_threshold(tmp_path: Path) -> None:
    mount = mountpoint(str(tmp_path))
    assert os.path.ismount(mount) and str(tmp_path.resolve()).startswith(mount)

    fault = check(ResourceDetector(name="scratch", resource="disk", path=tmp_path, min_free_percent=100))
    assert fault is not None and fault.type == ResourceExhaustion(f"disk:{mount}") and fault.detector == "scratch"
    ev = fault.evidence
    assert set(ev) == {"free_bytes", "total_bytes", "free_percent", "threshold", "threshold_option"}
    assert 0 < ev["free_bytes"] <= ev["total_bytes"] and 0 < ev["free_percent"] < 100
    assert ev["threshold"] == 100 and ev["threshold_option"] == "min_free_percent"
    st = os.statvfs(tmp_path)
    # what is free for unprivileged writers (f_bavail), of this file system; other processes may
    # have written or deleted meanwhile (a busy machine: a test suite beside this one)
    assert abs(ev["free_bytes"] - st.f_bavail * st.f_frsize) <= 256 * 2**20
    assert ev["total_bytes"] == st.f_blocks * st.f_frsize
    # the message rounds the percentage the evidence keeps to two places (72.149 reads 72.1 there, 72.15 here)
    said = re.fullmatch(rf"disk {re.escape(mount)}: (.+) free \((\d+\.\d)%\), below 100%", fault.message)
    assert said is not None and said[1] == format_bytes(ev["free_bytes"]), fault.message
    assert abs(float(said[2]) - ev["free_percent"]) <= 0.051

    assert check(ResourceDetector(name="scratch", resource="disk", path=tmp_path, min_free_percent=0.0001)) is None


def test_a_disk_with_less_than_min_free_bytes_is_exhausted(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    fault = check(
        ResourceDetector(
            name="d", resource="disk", path=str(tmp_path), min_free_bytes=free * 2 + 2**40, min_free_percent=0
        )
    )
    assert fault is not None and fault.target.startswith("disk:")
    assert fault.evidence["threshold_option"] == "min_free_bytes"
    assert fault.message.endswith(f"below {format_bytes(free * 2 + 2**40)}")
    assert check(ResourceDetector(name="d", resource="disk", path=str(tmp_path), min_free_bytes=1)) is None


def test_inodes_below_their_free_percentage(tmp_path: Path) -> None:
    if os.statvfs(tmp_path).f_files == 0:
        pytest.skip("this filesystem does not count inodes")
    fault = check(ResourceDetector(name="i", resource="inodes", path=tmp_path, min_free_percent=100))
    assert fault is not None and fault.type == ResourceExhaustion(f"inodes:{mountpoint(str(tmp_path))}")
    assert {"free_inodes", "total_inodes", "free_percent"} <= set(fault.evidence)
    assert " inodes free (" in fault.message
    assert check(ResourceDetector(name="i", resource="inodes", path=tmp_path, min_free_percent=0)) is None


def test_a_path_that_is_not_there_breaks_the_detector(tmp_path: Path) -> None:
    detector = ResourceDetector(name="d", resource="disk", path=tmp_path / "gone", min_free_bytes=1)
    with pytest.raises(FileNotFoundError):
        check(detector)


def test_a_hung_statvfs_times_out_and_later_checks_do_not_pile_up_threads(tmp_path: Path) -> None:
    release = threading.Event()
    calls: list[str] = []

    def hung(path: str) -> os.statvfs_result:
        calls.append(path)
        release.wait(30)
        return os.statvfs(path)

    detector = ResourceDetector(
        name="nfs", resource="disk", path=tmp_path, min_free_bytes=1, timeout=0.05, statvfs=hung
    )

    async def main() -> Fault | None:
        with pytest.raises(TimeoutError, match=r"statvfs\(.*\): no answer within 0.05 s"):
            await detector.detect()
        with pytest.raises(TimeoutError, match="has still not returned"):
            await detector.detect()
        release.set()
        assert detector._look_task is not None
        await detector._look_task  # the stuck look ends with its thread
        return await detector.detect()

    assert run(main) is None
    assert len(calls) == 2  # the refused check started no look of its own


# ---- memory and swap -------------------------------------------------------------------
def test_memory_of_this_machine_against_real_proc() -> None:
    fault = check(ResourceDetector(name="m", resource="memory", min_free_percent=100))
    assert fault is not None and fault.type == ResourceExhaustion("memory")
    assert fault.message.startswith("memory: ") and " available (" in fault.message
    assert 0 < fault.evidence["free_bytes"] < fault.evidence["total_bytes"]
    assert check(ResourceDetector(name="m", resource="memory", min_free_bytes=1)) is None


def test_memory_low_in_a_fake_proc(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, meminfo=meminfo(total_kb=10 * 1024 * 1024, available_kb=100 * 1024))
    fault = check(ResourceDetector(name="m", resource="memory", min_free_percent=5, proc=proc))
    assert fault is not None
    assert fault.message == "memory: 100.0 MiB available (1.0%), below 5%"
    assert fault.evidence == {
        "free_bytes": 100 * 2**20,
        "total_bytes": 10 * 2**30,
        "free_percent": 0.98,
        "threshold": 5,
        "threshold_option": "min_free_percent",
    }
    fault = check(ResourceDetector(name="m", resource="memory", min_free_bytes=2**30, proc=proc))
    assert fault is not None and fault.message == "memory: 100.0 MiB available (1.0%), below 1.0 GiB"
    assert check(ResourceDetector(name="m", resource="memory", min_free_percent=0.5, proc=proc)) is None


@pytest.mark.parametrize(
    ("swap_total_kb", "swap_free_kb", "fires"),
    [
        (0, 0, False),  # no swap configured: nothing to run out of
        (4 * 1024 * 1024, 100 * 1024, True),
        (4 * 1024 * 1024, 4 * 1024 * 1024, False),
    ],
)
def test_swap(tmp_path: Path, swap_total_kb: int, swap_free_kb: int, fires: bool) -> None:
    proc = fake_proc(tmp_path, meminfo=meminfo(8 * 2**20, 4 * 2**20, swap_total_kb, swap_free_kb))
    fault = check(ResourceDetector(name="s", resource="swap", min_free_percent=10, proc=proc))
    assert (fault is not None) == fires
    if fault is not None:
        assert fault.type == ResourceExhaustion("swap")
        assert fault.message == "swap: 100.0 MiB free (2.4%), below 10%"


# ---- file descriptors --------------------------------------------------------------------
def test_descriptors_of_this_process_against_real_proc() -> None:
    fault = check(ResourceDetector(name="fds", resource="fds", max_used_percent=0))
    assert fault is not None and fault.type == ResourceExhaustion("fds:self")
    assert fault.evidence["used"] >= 3 and fault.evidence["limit"] > 0
    assert check(ResourceDetector(name="fds", resource="fds", pid=os.getpid(), max_used_percent=100)) is None


def test_descriptors_near_the_soft_limit_in_a_fake_proc(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, pid_fd="19", limits=LIMITS.format(soft=20, hard=4096))
    fault = check(ResourceDetector(name="fds", resource="fds", pid=4242, max_used_percent=90, proc=proc))
    assert fault is not None and fault.type == ResourceExhaustion("fds:4242")
    assert fault.message == "fds of process 4242: 19 of 20 open (95.0%), above 90%"
    assert fault.evidence == {
        "used": 19,
        "limit": 20,
        "used_percent": 95.0,
        "threshold": 90,
        "threshold_option": "max_used_percent",
    }
    assert check(ResourceDetector(name="fds", resource="fds", pid=4242, max_used_percent=95, proc=proc)) is None


def test_descriptors_without_a_limit_are_never_exhausted(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, pid_fd="50", limits=LIMITS.format(soft="unlimited", hard="unlimited"))
    assert check(ResourceDetector(name="fds", resource="fds", pid=4242, max_used_percent=1, proc=proc)) is None


@pytest.mark.parametrize(
    ("text", "soft"),
    [
        (LIMITS.format(soft=1024, hard=4096), 1024),
        (LIMITS.format(soft="unlimited", hard="unlimited"), None),
        ("Limit  Soft Limit  Hard Limit  Units\n", None),
    ],
)
def test_parse_open_files_limit(text: str, soft: int | None) -> None:
    assert parse_open_files_limit(text) == soft


# ---- cpu ---------------------------------------------------------------------------------
def test_load_per_core_from_a_fake_proc(tmp_path: Path) -> None:
    stat = "cpu  1 2 3 4\ncpu0 1 1 1 1\ncpu1 1 1 1 1\nintr 12345\n"
    proc = fake_proc(tmp_path, loadavg="7.90 3.10 1.00 3/456 7890\n", stat=stat)
    fault = check(ResourceDetector(name="cpu", resource="cpu", max_load_per_core=2, proc=proc))
    assert fault is not None and fault.type == ResourceExhaustion("cpu")
    assert fault.message == "cpu: load 7.90 on 2 cores (3.95 per core), above 2"
    assert fault.evidence["cores"] == 2 and fault.evidence["load5"] == 3.1
    assert check(ResourceDetector(name="cpu", resource="cpu", max_load_per_core=4, proc=proc)) is None


def test_load_of_this_machine_against_real_proc() -> None:
    assert check(ResourceDetector(name="cpu", resource="cpu", max_load_per_core=10_000)) is None


# ---- options -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"resource": "gpu", "min_free_percent": 5}, "resource must be one of disk, inodes, memory, swap, fds, cpu"),
        ({"resource": "memory"}, "resource 'memory' needs a threshold: min_free_bytes or min_free_percent"),
        (
            {"resource": "cpu", "max_load_per_core": 2, "min_free_bytes": 10},
            "resource 'cpu' takes max_load_per_core, not min_free_bytes",
        ),
        ({"resource": "inodes", "path": "/", "min_free_bytes": 10}, "takes min_free_percent, not min_free_bytes"),
        ({"resource": "disk", "min_free_percent": 5}, "resource 'disk' needs path"),
        ({"resource": "memory", "path": "/", "min_free_percent": 5}, "path is only for resource 'disk' or 'inodes'"),
        ({"resource": "cpu", "pid": 1, "max_load_per_core": 2}, "pid is only for resource 'fds'"),
        ({"resource": "fds", "pid": "init", "max_used_percent": 90}, "pid must be a process id"),
        ({"resource": "fds", "pid": True, "max_used_percent": 90}, "pid must be a process id"),
        ({"resource": "memory", "min_free_percent": 101}, "min_free_percent must be a percentage from 0 to 100"),
        ({"resource": "memory", "min_free_percent": "5%"}, "min_free_percent must be a number, got '5%'"),
        ({"resource": "memory", "min_free_bytes": 1.5}, "min_free_bytes must be a whole number of bytes"),
        ({"resource": "cpu", "max_load_per_core": 0}, "max_load_per_core must be above 0"),
        ({"resource": "cpu", "max_load_per_core": 2, "timeout": 0}, "timeout must be a number of seconds above 0"),
    ],
)
def test_options_are_checked_when_made(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")) as caught:
        ResourceDetector(name="r", **options)
    if "resource must be" not in error:
        assert str(caught.value).startswith("detector 'r': ")


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (int(1.25 * 2**30), "1.2 GiB"), (3 * 2**50, "3.0 PiB")],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_the_look_runs_in_a_thread(tmp_path: Path) -> None:
    seen: list[bool] = []

    def statvfs(path: str) -> os.statvfs_result:
        seen.append(threading.current_thread() is threading.main_thread())
        return os.statvfs(path)

    detector = ResourceDetector(name="d", resource="disk", path=tmp_path, min_free_bytes=1, statvfs=statvfs)
    assert check(detector) is None and seen == [False]
