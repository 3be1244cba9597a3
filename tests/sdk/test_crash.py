"""The crash test of issue 3: a producer sends 100,000 events through the SDK
while the server is ``kill -9``ed and restarted twice (same database file, same
port); at the end the store holds each of the 100,000 exactly once.

The producer is this process (a thread); the server is a real ``flowsight
serve`` subprocess. Each kill comes once the server has taken events since
the last one, and the producer cannot go past a third (two thirds) of its
events before the first (second) kill: each kill lands on a live stream
however the machine schedules the threads. While the server is down (until
the SDK has failed to reach it) the producer goes on, into the spool.
When a kill lands while a request is in flight, a batch the server had
committed but not yet acknowledged is sent again: it must come back as
duplicates, never as second copies (the printed figures say how many; that
path is also pinned deterministically in ``test_http``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from flowsight.sdk.client import Client, Run
from flowsight.sdk.http import HttpOptions, HttpSink
from tests.sdk.serving import ServerProcess, wait_until

TOTAL = 100_000
PACE = 1000  # events between pauses ...
PAUSE = 0.06  # ... so the 100,000 take about 6 s to produce on a quiet machine
KILLS = 2
WAIT = 60.0  # seconds for an outcome on a busy machine


def produce(c: Client, killed: list[threading.Event], done: threading.Event) -> None:
    run = Run("crash", run_id="crash-run", client=c).start()  # event 1
    part = (TOTAL - 2) // (KILLS + 1)
    for i in range(TOTAL - 2):  # events 2 .. 99,999
        if i and i % part == 0 and i // part <= KILLS:
            killed[i // part - 1].wait(WAIT)  # not past a third (two thirds) before the first (second) kill
        run.progress(i, TOTAL - 2)
        if i % PACE == PACE - 1:
            time.sleep(PAUSE)
    run.complete()  # event 100,000
    done.set()


def test_every_event_is_stored_exactly_once_across_two_kill_9s_of_the_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server.db", log_dir=tmp_path).start()
    c = Client(
        url=server.url,
        spool_dir=tmp_path / "spool",
        batch_size=500,
        http=HttpOptions(retry_base=0.05, retry_max_delay=0.5, rescan_every=0.2),
    )
    c.start()
    sink = c.writer.sink
    assert isinstance(sink, HttpSink)
    produced = threading.Event()
    killed = [threading.Event() for _ in range(KILLS)]
    producer = threading.Thread(target=produce, args=(c, killed, produced))
    began = time.monotonic()
    try:
        producer.start()
        accepted_before_kill = [0]
        for kill in killed:
            wait_until(lambda: sink.stats.accepted > accepted_before_kill[-1], WAIT, "events taken since the last kill")
            accepted_before_kill.append(sink.stats.accepted)
            retries = sink.stats.retries
            server.kill()
            kill.set()
            wait_until(lambda: sink.stats.retries > retries, WAIT, "the SDK to find the server gone")
            server.start()  # same file, same port
        producer.join(WAIT)
        assert produced.is_set()
        assert c.flush(timeout=WAIT) is True
        took = time.monotonic() - began
    finally:
        for kill in killed:
            kill.set()
        c.close()
        server.stop()

    [(count, distinct, progress, ones)] = server.rows(
        "SELECT COUNT(*), COUNT(DISTINCT id), COUNT(DISTINCT json_extract(attrs, '$.done')), "
        "SUM(kind IN ('started', 'completed')) FROM events WHERE run_id = 'crash-run'"
    )
    assert (count, distinct) == (TOTAL, TOTAL)
    assert (progress, ones) == (TOTAL - 2, 2)  # every progress value once, started and completed once
    assert server.rows("SELECT state FROM runs WHERE run_id = 'crash-run'") == [("completed",)]
    s = sink.stats
    assert 0 < accepted_before_kill[1] < accepted_before_kill[2] < TOTAL  # each kill hit a live stream
    assert s.retries >= 2 and s.failed == s.rejected == 0 and c.writer.dropped == 0
    # each event was acknowledged once in the end: accepted, or a duplicate when the server had
    # committed its batch but died before it could answer
    assert s.accepted + s.duplicates == TOTAL
    assert sink.spool.segments() == []
    print(
        f"\ncrash test: {TOTAL} events in {took:.1f}s, 2 kill -9s; {s.requests} requests, "
        f"{s.retries} retries, {s.duplicates} duplicates re-sent after a kill"
    )
