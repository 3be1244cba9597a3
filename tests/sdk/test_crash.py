"""The crash test of issue 3: a producer sends 100,000 events through the SDK
while the server is ``kill -9``ed and restarted twice (same database file, same
port); at the end the store holds each of the 100,000 exactly once.

The producer is this process (a thread, paced so that it is still producing
when the server dies); the server is a real ``flowsight serve`` subprocess.
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
from tests.sdk.serving import ServerProcess

TOTAL = 100_000
PACE = 1000            # events between pauses ...
PAUSE = 0.06           # ... so the 100,000 take about 6 s to produce


def produce(c: Client, done: threading.Event) -> None:
    run = Run("crash", run_id="crash-run", client=c).start()  # event 1
    for i in range(TOTAL - 2):                                  # events 2 .. 99,999
        run.progress(i, TOTAL - 2)
        if i % PACE == PACE - 1:
            time.sleep(PAUSE)
    run.complete()                                              # event 100,000
    done.set()


def test_every_event_is_stored_exactly_once_across_two_kill_9s_of_the_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server.db", log_dir=tmp_path).start()
    c = Client(url=server.url, spool_dir=tmp_path / "spool", batch_size=500,
               http=HttpOptions(retry_base=0.05, retry_max_delay=0.5, rescan_every=0.2))
    c.start()
    sink = c.writer.sink
    assert isinstance(sink, HttpSink)
    produced = threading.Event()
    producer = threading.Thread(target=produce, args=(c, produced))
    began = time.monotonic()
    try:
        producer.start()
        accepted_before_kill = []
        for _ in range(2):
            time.sleep(1.5)
            assert not produced.is_set(), "the producer finished before the kill: make it slower"
            accepted_before_kill.append(sink.stats.accepted)
            server.kill()
            time.sleep(0.5)  # down for a while: the producer goes on, into the spool
            server.start()   # same file, same port
        producer.join(60)
        assert produced.is_set()
        assert c.flush(timeout=60) is True
        took = time.monotonic() - began
    finally:
        c.close()
        server.stop()

    [(count, distinct, progress, ones)] = server.rows(
        "SELECT COUNT(*), COUNT(DISTINCT id), COUNT(DISTINCT json_extract(attrs, '$.done')), "
        "SUM(kind IN ('started', 'completed')) FROM events WHERE run_id = 'crash-run'")
    assert (count, distinct) == (TOTAL, TOTAL)
    assert (progress, ones) == (TOTAL - 2, 2)  # every progress value once, started and completed once
    assert server.rows("SELECT state FROM runs WHERE run_id = 'crash-run'") == [("completed",)]
    s = sink.stats
    assert 0 < accepted_before_kill[0] < accepted_before_kill[1] < TOTAL  # each kill hit a live stream
    assert s.retries >= 2 and s.failed == s.rejected == 0 and c.writer.dropped == 0
    # each event was acknowledged once in the end: accepted, or a duplicate when the server had
    # committed its batch but died before it could answer
    assert s.accepted + s.duplicates == TOTAL
    assert sink.spool.segments() == []
    print(f"\ncrash test: {TOTAL} events in {took:.1f}s, 2 kill -9s; {s.requests} requests, "
          f"{s.retries} retries, {s.duplicates} duplicates re-sent after a kill")
