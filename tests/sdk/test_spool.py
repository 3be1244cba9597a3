"""The disk spool: segments whole and oldest first, locks that hold across
processes, the bound (oldest dropped, counted, reported), and — through real
processes and a real server — a spool left by one process delivered by the next."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowsight.errors import ConfigError
from flowsight.sdk.client import Client, Run
from flowsight.sdk.http import HttpSink
from flowsight.sdk.spool import Spool, count_of, spool_dir_for
from tests.sdk.conftest import FAST, MakeClient
from tests.sdk.serving import ServerProcess, wait_until


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", max_bytes=1000)


def test_segments_come_back_whole_and_oldest_first(spool: Spool) -> None:
    paths = [spool.put(f"batch {i}".encode(), i + 1) for i in range(3)]
    assert spool.segments() == paths
    assert [count_of(p.name) for p in spool.segments()] == [1, 2, 3]
    assert spool.pending() == 6 and spool.size() == 3 * len(b"batch 0")
    with spool.claim(spool.segments()[0]) as seg:
        assert seg is not None and (seg.body, seg.count) == (b"batch 0", 1)
        spool.remove(seg)
    assert spool.segments() == paths[1:]
    assert [p.name for p in spool.dir.iterdir() if p.name.startswith(".tmp")] == []  # written by rename


def test_a_claimed_segment_cannot_be_claimed_again_until_released(spool: Spool) -> None:
    path = spool.put(b"x", 1)
    assert path is not None
    with spool.claim(path) as first:
        with spool.claim(path) as second:  # another open file: flock says no, even in one process
            assert first is not None and second is None
    with spool.claim(path) as again:
        assert again is not None


def test_a_segment_gone_before_its_claim_is_skipped(spool: Spool) -> None:
    path = spool.put(b"x", 1)
    assert path is not None
    with spool.claim(path) as seg:
        assert seg is not None
        spool.remove(seg)
    with spool.claim(path) as late:
        assert late is None


LOCK_AND_WAIT = """
import fcntl, sys, time
f = open(sys.argv[1], "rb")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_segment_another_process_is_sending_is_neither_claimed_nor_dropped(spool: Spool) -> None:
    held = spool.put(b"a" * 400, 4)
    assert held is not None
    with subprocess.Popen([sys.executable, "-c", LOCK_AND_WAIT, str(held)], stdout=subprocess.PIPE, text=True) as other:
        try:
            assert other.stdout is not None and other.stdout.readline().strip() == "locked"
            with spool.claim(held) as seg:
                assert seg is None
            spool.put(b"b" * 400, 4)
            newest = spool.put(b"c" * 400, 4)  # over the bound: the oldest is in flight, the next one goes
            assert spool.segments() == [held, newest] and spool.dropped == 4
        finally:
            other.kill()
    with spool.claim(held) as seg:
        assert seg is not None and seg.count == 4


def test_the_bound_drops_the_oldest_segments_counts_and_reports_them(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowsight.sdk"):
        for i in range(5):
            spool.put(bytes([65 + i]) * 300, 10)  # 1000 bytes hold three
    assert spool.dropped == 20
    assert [p.read_bytes()[:1] for p in spool.segments()] == [b"C", b"D", b"E"]
    assert spool.size() <= spool.max_bytes
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"flowsight: dropped 10 events: the spool {str(spool.dir)!r} reached its bound of 1000 bytes while the "
        f"server could not take them (oldest events go first); {n} dropped by this process so far"
        for n in (10, 20)
    ]


def test_a_batch_bigger_than_the_whole_bound_is_dropped_itself_and_counted(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    kept = spool.put(b"small", 1)
    with caplog.at_level(logging.WARNING, logger="flowsight.sdk"):
        assert spool.put(b"x" * 1001, 7) is None
    assert spool.segments() == [kept] and spool.dropped == 7
    assert "the batch alone (1001 bytes) is larger than the spool's bound" in caplog.records[0].getMessage()


def test_halves_of_a_split_segment_keep_its_place_in_the_order(spool: Spool) -> None:
    first = spool.put(b"first", 4)
    last = spool.put(b"last", 1)
    assert first is not None and last is not None
    with spool.claim(first) as seg:
        assert seg is not None
        halves = spool.split(seg, ((b"f1", 2), (b"f2", 2)))
    assert spool.segments() == [*halves, last]
    assert [p.read_bytes() for p in spool.segments()] == [b"f1", b"f2", b"last"]
    assert spool.pending() == 5


def test_half_written_segments_of_dead_processes_are_cleared_at_open(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    d = tmp_path / "spool"
    d.mkdir()
    (d / f".tmp-{dead.stdout.strip()}-3").write_bytes(b"half")
    (d / f".tmp-{os.getpid()}-3").write_bytes(b"being written")
    Spool(d)
    assert sorted(p.name for p in d.iterdir()) == [f".tmp-{os.getpid()}-3"]


@pytest.mark.parametrize(
    ("env", "root"),
    [
        ({"FLOWSIGHT_SPOOL_DIR": "/var/spool/fs"}, "/var/spool/fs"),
        ({"XDG_CACHE_HOME": "/cache"}, "/cache/flowsight/spool"),
        ({"FLOWSIGHT_SPOOL_DIR": "/var/spool/fs", "XDG_CACHE_HOME": "/cache"}, "/var/spool/fs"),
        ({}, os.path.expanduser("~/.cache/flowsight/spool")),
    ],
)
def test_each_server_url_has_its_own_spool_directory_under_the_root(env: dict[str, str], root: str) -> None:
    a = spool_dir_for("http://a:8640", environ=env)
    assert a.parent == Path(root) and len(a.name) == 16
    assert spool_dir_for("http://a:8640", environ=env) == a
    assert spool_dir_for("http://b:8640", environ=env) != a
    assert spool_dir_for("http://a:8640", "/explicit", environ=env) == Path("/explicit") / a.name


def test_a_spool_directory_that_cannot_be_made_is_a_config_error_saying_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot use .*file/x.* as the SDK's spool .*set FLOWSIGHT_SPOOL_DIR"):
        Spool(blocker / "x")


# ---- through the client ------------------------------------------------------


def test_a_full_spool_keeps_the_newest_events_and_counts_every_dropped_one(
    stopped_server: ServerProcess, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    c = make_client(stopped_server.url, batch_size=100, linger=0.0, spool_max_bytes=30_000)
    total = 10_000
    with caplog.at_level(logging.WARNING, logger="flowsight.sdk"):
        run = Run("flood", client=c).start()
        for i in range(total - 1):
            run.progress(i)
        assert c.flush(timeout=1.0) is False  # the server is down
        wait_until(lambda: c.writer.written == total, what="all spooled or dropped")
    sink = c.writer.sink
    assert isinstance(sink, HttpSink)
    # the writer cuts a batch at 100 events or whenever it has caught up with the queue: segments hold up
    # to 100 events, however many the scheduling gave each
    dropped = c.writer.dropped
    assert dropped > 0 and sink.spool.pending() == total - dropped
    assert any("reached its bound of 30000 bytes" in r.getMessage() for r in caplog.records)

    stopped_server.start()
    assert c.flush(timeout=30) is True
    assert stopped_server.rows("SELECT COUNT(*) FROM events") == [(total - dropped,)]  # every drop counted
    assert sink.stats.accepted + dropped == total
    done = [
        d
        for (d,) in stopped_server.rows(
            "SELECT json_extract(attrs, '$.done') FROM events WHERE kind = 'progress' ORDER BY 1"
        )
    ]
    # the newest survived, the oldest went first: one run up to the last progress, but for the one
    # segment (the oldest) that the sender may have been holding, trying the server, when room was made
    *held, newest = runs(done)
    assert newest.stop == total - 1 and len(held) <= 1 and all(len(r) <= 100 for r in held)


def runs(values: list[int]) -> list[range]:
    """Sorted, distinct ``values`` as runs of consecutive integers."""
    out: list[range] = []
    for v in values:
        if out and v == out[-1].stop:
            out[-1] = range(out[-1].start, v + 1)
        else:
            out.append(range(v, v + 1))
    return out


CHILD = textwrap.dedent("""
    import sys, time, flowsight
    from flowsight.sdk.http import HttpOptions
    flowsight.configure(url=sys.argv[1], http=HttpOptions(retry_base=0.05, retry_max_delay=0.3))
    with flowsight.workflow(sys.argv[2], run_id=sys.argv[2]) as run:
        for i in range(int(sys.argv[3])):
            with run.step("s"):
                pass
    if sys.argv[4] == "flush":
        assert flowsight.flush(timeout=30), "not delivered"
    elif sys.argv[4] == "hang":
        flowsight.flush(timeout=0.5)  # the server is down: returns once all is spooled
        print("spooled", flush=True)
        time.sleep(60)  # until kill -9: no atexit, no flush
    # "exit": atexit sends what it can while the server answers; the rest stays spooled
""")


def child_env(spool_root: Path) -> dict[str, str]:
    env = {**os.environ, "FLOWSIGHT_SPOOL_DIR": str(spool_root)}
    env.pop("FLOWSIGHT_URL", None)
    return env


def child(url: str, run_id: str, steps: int, then: str, spool_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, url, run_id, str(steps), then],
        env=child_env(spool_root),
        capture_output=True,
        text=True,
        timeout=60,
    )


def killed_child(url: str, run_id: str, steps: int, spool_root: Path) -> None:
    """A producer that spools while the server is down and is then killed with SIGKILL."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, url, run_id, str(steps), "hang"],
        env=child_env(spool_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "spooled", proc.stderr
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("end", ["exit", "kill -9"])
def test_a_spool_left_by_a_process_that_ended_while_the_server_was_down_is_delivered_by_the_next_one(
    end: str, stopped_server: ServerProcess, tmp_path: Path
) -> None:
    root = tmp_path / "spools"
    if end == "exit":
        first = child(stopped_server.url, "first", 500, "exit", root)
        assert first.returncode == 0, first.stderr
        assert "1002 events not yet delivered" in first.stderr and "stay in the spool" in first.stderr
    else:
        killed_child(stopped_server.url, "first", 500, root)
    spool = Spool(spool_dir_for(stopped_server.url, root))
    assert spool.pending() == 1002

    stopped_server.start()
    second = child(stopped_server.url, "second", 10, "flush", root)
    assert second.returncode == 0, second.stderr
    # oldest first: the first process's events went before the second's own, which it waited for
    assert stopped_server.rows(
        "SELECT run_id, COUNT(*), COUNT(DISTINCT id) FROM events GROUP BY run_id ORDER BY run_id"
    ) == [("first", 1002, 1002), ("second", 22, 22)]
    assert stopped_server.rows("SELECT run_id, state FROM runs ORDER BY run_id") == [
        ("first", "completed"),
        ("second", "completed"),
    ]
    assert spool.segments() == []


def test_two_live_clients_of_one_url_share_the_spool_and_send_each_event_once(
    stopped_server: ServerProcess, tmp_path: Path
) -> None:
    a = Client(url=stopped_server.url, spool_dir=tmp_path / "shared", http=FAST, batch_size=50, linger=0.0)
    b = Client(url=stopped_server.url, spool_dir=tmp_path / "shared", http=FAST, batch_size=50, linger=0.0)
    try:
        for c, name in ((a, "a"), (b, "b")):
            run = Run(name, run_id=name, client=c).start()
            for i in range(2000):
                run.progress(i)
        assert a.flush(timeout=1.0) is False
        wait_until(lambda: a.writer.written == b.writer.written == 2001, what="all spooled")
        assert a.writer.dropped == b.writer.dropped == 0
        stopped_server.start()
        assert a.flush(timeout=30) is True and b.flush(timeout=30) is True
        assert stopped_server.rows("SELECT COUNT(*), COUNT(DISTINCT id) FROM events") == [(4002, 4002)]
        sa, sb = a.writer.sink, b.writer.sink
        assert isinstance(sa, HttpSink) and isinstance(sb, HttpSink)
        assert sa.stats.duplicates + sb.stats.duplicates == 0  # the locks kept them apart
        assert sa.stats.accepted + sb.stats.accepted == 4002
    finally:
        a.close()
        b.close()
