"""Event ids: unique (across calls, threads and a fork), sortable by creation
time, and carrying the millisecond they were made for."""

from __future__ import annotations

import os
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hypothesis import given
from hypothesis import strategies as st

from flowsight.model.runs import ids
from flowsight.model.runs.ids import id_time_ms, new_id, new_ids

_CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
_MAX_MS = 2**48 - 1


@contextmanager
def _forking() -> Iterator[None]:
    # Python 3.12+ warns when forking a process that has threads (another
    # test's leftover daemon, say); the child here only makes ids and exits.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
        yield


def _in_child(make: Callable[[], list[str]], *, wait: float = 10.0) -> list[str] | None:
    """Fork; the child sends ``make()`` through a pipe. None if it has not answered within ``wait``."""
    r, w = os.pipe()
    with _forking():
        pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            data = "\n".join(make()).encode()
            while data:
                data = data[os.write(w, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + wait
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(0.0, left))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                return None
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = b"".join(chunks).decode()
    return text.split("\n") if text else []


def test_an_id_is_26_crockford_base32_characters() -> None:
    for event_id in [new_id(), new_id(0), new_id(_MAX_MS * 1_000_000), *new_ids([1, 2, 3])]:
        assert len(event_id) == 26
        assert set(event_id) <= _CROCKFORD


def test_ids_are_unique_across_many_calls() -> None:
    made = [new_id() for _ in range(50_000)]
    made += new_ids([time.time_ns()] * 50_000)
    assert len(set(made)) == len(made)


def test_ids_made_for_the_same_nanosecond_are_still_unique() -> None:
    ts = 1_700_000_000_000_000_000
    made = [new_id(ts) for _ in range(10_000)] + new_ids([ts] * 10_000)
    assert len(set(made)) == 20_000


def test_ids_are_unique_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(8)]
    ts = time.time_ns()

    def work(i: int) -> None:
        for _ in range(200):
            out[i].extend(new_ids([ts] * 25))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [x for chunk in out for x in chunk]
    assert len(made) == 8 * 200 * 25
    assert len(set(made)) == len(made)


def test_ids_are_unique_across_a_fork() -> None:
    # Same nanosecond on both sides: only the per-process part keeps them apart.
    ts = time.time_ns()
    before = new_ids([ts] * 1000)
    child = _in_child(lambda: new_ids([ts] * 5000))
    parent = new_ids([ts] * 5000)
    assert child is not None
    assert len(child) == 5000
    made = before + child + parent
    assert len(set(made)) == len(made)
    # the child re-seeded its random per-process prefix (characters 10-17)
    assert {c[10:18] for c in child} != {p[10:18] for p in parent}


def test_ids_sort_in_creation_order_within_a_process() -> None:
    made = [new_id() for _ in range(20_000)]
    assert sorted(made) == made


def test_ids_for_one_millisecond_sort_in_creation_order() -> None:
    ts = 1_700_000_000_123_000_000
    made = [new_id(ts + i) for i in range(1000)] + new_ids([ts + 999_999] * 1000)
    assert sorted(made) == made


def test_ids_sort_by_the_time_they_were_made_for_before_creation_order() -> None:
    late = new_id(1_700_000_001_000_000_000)
    early = new_id(1_700_000_000_000_000_000)
    assert early < late


@given(st.integers(0, _MAX_MS), st.integers(0, 999_999))
def test_id_time_ms_returns_the_millisecond_the_id_was_made_for(ms: int, sub_ms_ns: int) -> None:
    ts_ns = ms * 1_000_000 + sub_ms_ns
    assert id_time_ms(new_id(ts_ns)) == ms
    assert [id_time_ms(x) for x in new_ids([ts_ns, ts_ns])] == [ms, ms]


def test_id_time_ms_of_a_default_id_is_now() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= id_time_ms(made) <= after


def test_a_child_forked_while_another_thread_makes_ids_can_make_ids() -> None:
    # Holding the factory's lock across the fork stands in, deterministically,
    # for the SDK writer thread being inside new_ids() at that moment.
    lock = ids._factory._lock
    lock.acquire()
    try:
        r, w = os.pipe()
        with _forking():
            pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.write(w, new_id().encode())
            finally:
                os._exit(0)
    finally:
        lock.release()
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], 1.5)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        answer = os.read(r, 64) if ready else b""
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert len(answer) == 26
