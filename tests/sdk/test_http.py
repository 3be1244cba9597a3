"""The SDK over HTTP, against a real ``flowsight serve`` subprocess on 127.0.0.1
(no mocked server): configure(url) round trip, FLOWSIGHT_URL, a server down
at the start, bad tokens, rejected events, gzip, batches split on 413; and the
two pure decisions (retry delay, verdict) in tables."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import flowsight
from flowsight.errors import ConfigError
from flowsight.sdk import client as sdk_client
from flowsight.sdk.client import Client, Run, get_client
from flowsight.sdk.http import HttpOptions, HttpSink, Verdict, normalize_url, retry_delay, verdict
from tests.sdk.conftest import FAST, MakeClient
from tests.sdk.serving import ServerProcess, free_port, wait_until


def sink_of(c: Client) -> HttpSink:
    assert isinstance(c.writer.sink, HttpSink)
    return c.writer.sink


def stored(server: ServerProcess, run_id: str) -> list[tuple[str, str | None]]:
    return [(k, s) for k, s in server.rows("SELECT kind, step FROM events WHERE run_id = ? ORDER BY seq", run_id)]


# ---- decisions: pure --------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.0, 0.125),  # half of base 0.25 fixed ...
        (1, 0.5, 0.1875),  # ... the other half jittered
        (2, 0.0, 0.25),  # doubling
        (3, 0.0, 0.5),
        (3, 1.0, 1.0),
        (6, 0.0, 4.0),  # 0.25 * 2**5 = 8 -> 4..8
        (6, 1.0, 8.0),
        (7, 0.0, 5.0),  # 16 is over the cap: 10 -> 5..10 from here on
        (7, 1.0, 10.0),
        (10_000, 0.999, 9.995),  # no overflow
        (0, 0.0, 0.125),  # attempt 0 counts as the first
    ],
)
def test_retry_delay_doubles_with_jitter_up_to_the_cap(attempt: int, rand: float, expected: float) -> None:
    assert retry_delay(attempt, rand, base=0.25, cap=10.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, 3.0, 3.0),  # the server asks for more: it gets it
        (1, 60.0, 10.0),  # ... up to the cap
        (5, 0.5, 2.0),  # asks for less than the backoff: the backoff stands
    ],
)
def test_retry_after_from_the_server_raises_the_delay_up_to_the_cap(
    attempt: int, retry_after: float, expected: float
) -> None:
    assert retry_delay(attempt, 0.0, base=0.25, cap=10.0, retry_after=retry_after) == pytest.approx(expected)


def test_retry_delay_never_shrinks_as_attempts_grow() -> None:
    for rand in (0.0, 0.3, 0.99):
        delays = [retry_delay(a, rand) for a in range(1, 40)]
        assert delays == sorted(delays) and max(delays) <= 10.0


@pytest.mark.parametrize(
    ("status", "count", "expected"),
    [
        (200, 10, Verdict.DELIVERED),
        (429, 10, Verdict.RETRY),
        (500, 10, Verdict.RETRY),
        (502, 10, Verdict.RETRY),
        (503, 10, Verdict.RETRY),
        (504, 10, Verdict.RETRY),
        (408, 10, Verdict.RETRY),
        (413, 10, Verdict.SPLIT),
        (413, 1, Verdict.PERMANENT),  # one event too big: halving cannot help
        (400, 10, Verdict.PERMANENT),
        (401, 10, Verdict.UNAUTHORIZED),
        (403, 10, Verdict.UNAUTHORIZED),
        (404, 10, Verdict.PERMANENT),
        (415, 10, Verdict.PERMANENT),
        (301, 10, Verdict.PERMANENT),  # httpx does not follow redirects for a POST: the URL is wrong
    ],
)
def test_verdict_of_each_status(status: int, count: int, expected: Verdict) -> None:
    assert verdict(status, count) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8640", "http://127.0.0.1:8640"),
        ("http://127.0.0.1:8640/", "http://127.0.0.1:8640"),
        ("  https://fs.example.com/flowsight/ ", "https://fs.example.com/flowsight"),
        ("http://h:1/api/v1/events", "http://h:1"),
    ],
)
def test_server_urls_are_normalised(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize("url", ["127.0.0.1:8640", "ftp://h/", "http://", "flowsight.db", ""])
def test_a_url_that_is_not_http_is_refused_with_an_example(url: str) -> None:
    with pytest.raises(ConfigError, match=r"write it as http://host:port .*e\.g\. http://127\.0\.0\.1:8640"):
        normalize_url(url)


# ---- against a real server ------------------------------------------------------


def test_configure_url_sends_runs_to_the_server(server: ServerProcess, tmp_path: Path, no_default: None) -> None:
    c = flowsight.configure(url=server.url, spool_dir=tmp_path / "spool", http=FAST)
    assert (c.url, c.db) == (server.url, None)
    with flowsight.workflow("etl", total_steps=2, owner="ana") as run:
        with run.step("extract"):
            pass
        with flowsight.step("load"):
            run.progress(1, 2)
    assert flowsight.flush(timeout=20) is True

    assert stored(server, run.run_id) == [
        ("started", None),
        ("step_started", "extract"),
        ("step_completed", "extract"),
        ("step_started", "load"),
        ("progress", "load"),
        ("step_completed", "load"),
        ("completed", None),
    ]
    detail = httpx.get(f"{server.url}/api/v1/runs/{run.run_id}", timeout=5).json()
    assert (detail["state"], detail["completed_steps"], detail["total_steps"]) == ("completed", 2, 2)
    assert detail["attrs"]["owner"] == "ana"
    sink = sink_of(c)
    assert (sink.stats.accepted, sink.stats.duplicates, sink.stats.failed, c.writer.dropped) == (7, 0, 0, 0)
    assert sink.spool.segments() == []  # removed once the server answered


def test_the_default_client_follows_flowsight_url_which_wins_over_the_database_variable(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    monkeypatch.setenv("FLOWSIGHT_URL", server.url)
    monkeypatch.setenv("FLOWSIGHT_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("FLOWSIGHT_DATABASE_URL", str(tmp_path / "local.db"))
    with flowsight.workflow("from-env") as run:
        pass
    assert get_client().url == server.url
    assert flowsight.flush(timeout=20) is True
    assert stored(server, run.run_id) == [("started", None), ("completed", None)]
    assert not (tmp_path / "local.db").exists()
    assert list((tmp_path / "spool").iterdir()) == [sink_of(get_client()).spool.dir]


def test_url_wins_over_db_and_db_alone_still_means_a_store(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default: None
) -> None:
    monkeypatch.setenv("FLOWSIGHT_URL", server.url)
    both = flowsight.configure(db=str(tmp_path / "local.db"), url=server.url, spool_dir=tmp_path / "spool")
    assert (both.url, both.db) == (server.url, None)
    store_only = flowsight.configure(db=str(tmp_path / "local.db"))  # an explicit db beats the environment
    assert (store_only.url, store_only.db) == (None, str(tmp_path / "local.db"))
    with flowsight.workflow("local") as run:
        pass
    assert flowsight.flush() is True
    assert (tmp_path / "local.db").exists()
    assert stored(server, run.run_id) == []


def test_events_made_while_the_server_is_down_are_spooled_and_delivered_when_it_starts(
    stopped_server: ServerProcess, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    c = make_client(stopped_server.url)
    run = Run("outage", client=c).start()
    for i in range(1000):
        run.progress(i, 1000)
    run.complete()
    with caplog.at_level(logging.WARNING, logger="flowsight.sdk"):
        assert c.flush(timeout=1.0) is False  # nobody to acknowledge them ...
        wait_until(lambda: c.writer.written == 1002, what="all spooled")
    sink = sink_of(c)
    assert sink.spool.pending() == 1002  # ... but every one is on disk
    assert sink.stats.retries >= 1
    assert sink.last_error is not None and "cannot reach" in sink.last_error
    outage = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(outage) == 1, outage  # once per outage, not once per retry
    assert str(sink.spool.dir) in outage[0]

    stopped_server.start()
    assert c.flush(timeout=20) is True
    assert stopped_server.rows("SELECT COUNT(*), COUNT(DISTINCT id) FROM events") == [(1002, 1002)]
    assert stopped_server.rows("SELECT state FROM runs WHERE run_id = ?", run.run_id) == [("completed",)]
    assert sink.spool.segments() == [] and sink.last_error is None


def test_a_bad_token_is_one_error_and_the_events_are_kept_for_a_good_one(
    server: ServerProcess, make_client: MakeClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = server.token("ingest", "ci")
    bad = make_client(server.url, token="not-a-token", spool_dir=tmp_path / "spool")
    with caplog.at_level(logging.WARNING, logger="flowsight.sdk"):
        with flowsight.workflow("guarded", client=bad) as run:
            pass
        sink = sink_of(bad)
        wait_until(lambda: sink.stats.requests >= 3, what="retries with the bad token")
        bad.close()
    assert sink.stats.failed == 0 and sink.stats.accepted == 0
    assert sink.last_error is not None and "401" in sink.last_error
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1, said  # one error for the outage, not one per retry or per close
    assert "refuses the token: 401 unknown or revoked token" in said[0] and "Nothing is dropped" in said[0]
    assert "FLOWSIGHT_TOKEN" in said[0] and f"flowsight spool send --url {server.url}" in said[0]
    assert len(sink.spool.segments()) == 1  # kept, not dropped
    assert server.rows("SELECT COUNT(*) FROM events") == [(0,)]

    # the token fixed: the next process reporting there sends them, each once
    good_client = make_client(server.url, token=good, spool_dir=tmp_path / "spool")
    assert good_client.flush(timeout=20) is True
    wait_until(
        lambda: stored(server, run.run_id) == [("started", None), ("completed", None)],
        what="the kept events delivered with the good token",
    )


def test_the_token_comes_from_flowsight_token(
    server: ServerProcess, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWSIGHT_TOKEN", server.token("ingest", "env"))
    c = make_client(server.url)
    with flowsight.workflow("env-token", client=c) as run:
        pass
    assert c.flush(timeout=20) is True
    assert sink_of(c).stats.accepted == 2
    assert stored(server, run.run_id) == [("started", None), ("completed", None)]


def test_events_the_server_rejects_one_by_one_are_logged_counted_and_not_resent(
    server: ServerProcess, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    c = make_client(server.url)
    with caplog.at_level(logging.WARNING, logger="flowsight.sdk"):
        with flowsight.workflow("partly-bad", client=c) as run:
            with run.step("x" * 600):  # the server allows 512 characters
                pass
            with run.step("fine"):
                pass
        assert c.flush(timeout=20) is True
    sink = sink_of(c)
    assert (sink.stats.requests, sink.stats.accepted, sink.stats.rejected) == (1, 4, 2)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "rejected 2 of 6 events; they are not sent again" in warning
    assert "field 'step': longer than 512 characters" in warning
    assert stored(server, run.run_id) == [
        ("started", None),
        ("step_started", "fine"),
        ("step_completed", "fine"),
        ("completed", None),
    ]


class Recording(httpx.HTTPTransport):
    """The real transport, keeping what it sent (a spy at the one chokepoint)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[httpx.Headers, bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.headers, request.read()))
        return super().handle_request(request)


def test_bodies_are_gzip_compressed_json_arrays(server: ServerProcess, make_client: MakeClient) -> None:
    spy = Recording()
    c = make_client(server.url, http_transport=spy)
    with flowsight.workflow("zipped", client=c) as run:
        for _ in range(200):
            with run.step("s"):
                pass
    assert c.flush(timeout=20) is True
    assert spy.sent
    for headers, body in spy.sent:
        assert headers["content-encoding"] == "gzip"
        assert headers["content-type"] == "application/json"
        events = json.loads(gzip.decompress(body))
        assert isinstance(events, list) and {"id", "ts", "kind", "workflow", "run_id"} <= set(events[0])
    sent = [ev for _, body in spy.sent for ev in json.loads(gzip.decompress(body))]
    assert len(sent) == 402 == len({ev["id"] for ev in sent})
    raw = sum(len(gzip.decompress(b)) for _, b in spy.sent)
    assert sum(len(b) for _, b in spy.sent) < raw / 5  # repetitive JSON compresses well
    assert server.rows("SELECT COUNT(*) FROM events WHERE run_id = ?", run.run_id) == [(402,)]


def test_a_batch_sent_again_after_a_crash_is_a_duplicate_on_the_server_never_a_second_copy(
    server: ServerProcess, make_client: MakeClient
) -> None:
    spy = Recording()
    c = make_client(server.url, http_transport=spy)
    with flowsight.workflow("twice", client=c) as run:
        with run.step("s"):
            pass
    assert c.flush(timeout=20) is True
    [(_, body)] = spy.sent
    # a producer killed after the server answered but before it deleted the segment: the same bytes again
    sink = sink_of(c)
    again = sink.spool.put(body, 4)
    assert again is not None
    # the sender finds it at its next look at the spool
    wait_until(lambda: not again.exists(), what="the segment sent again")
    assert (sink.stats.accepted, sink.stats.duplicates) == (4, 4)
    assert server.rows("SELECT COUNT(*) FROM events WHERE run_id = ?", run.run_id) == [(4,)]
    assert server.rows("SELECT completed_steps FROM runs WHERE run_id = ?", run.run_id) == [(1,)]


def test_a_batch_too_big_for_the_server_is_split_until_it_fits(tmp_path: Path, make_client: MakeClient) -> None:
    server = ServerProcess(tmp_path / "server.db", log_dir=tmp_path, flags=("--max-events", "10")).start()
    try:
        spy = Recording()
        c = make_client(server.url, batch_size=50, http_transport=spy)
        run = Run("split", client=c).start()
        for i in range(48):
            run.progress(i)
        run.complete()
        assert c.flush(timeout=20) is True
        sink = sink_of(c)
        assert (sink.stats.accepted, sink.stats.failed) == (50, 0)
        sizes = [len(json.loads(gzip.decompress(b))) for _, b in spy.sent]
        assert sizes[:3] == [50, 25, 12]  # halved until it fits: 50 -> 25 -> 12 + 13 -> 6 + 6 ...
        assert sum(s for s in sizes if s <= 10) == 50
        done = [
            d
            for (d,) in server.rows(
                "SELECT json_extract(attrs, '$.done') FROM events WHERE kind = 'progress' ORDER BY seq"
            )
        ]
        assert done == list(range(48))  # the halves went in their place in the order
    finally:
        server.stop()


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A URL whose port accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_the_workflow_never_waits_on_a_server_that_does_not_answer(blackhole: str, tmp_path: Path) -> None:
    c = Client(url=blackhole, spool_dir=tmp_path / "spool", http=HttpOptions(timeout=30.0, exit_timeout=1.0))
    run = Run("hot", client=c).start()
    for _ in range(10_000):
        with run.step("s"):
            pass
    run.complete()
    assert c.flush(timeout=0.5) is False
    wait_until(lambda: c.writer.written == 20_002, what="all spooled")
    c.close()  # the request hangs for 30 s; the exit must not
    sink = sink_of(c)
    # neither the workflow nor the exit waited for the request: it has not even timed out yet
    assert sink.last_error is None and sink.stats.retries == 0
    assert sink.spool.pending() == 20_002  # all kept for the next process


def test_closing_with_the_server_down_returns_at_once_and_leaves_the_events_spooled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    # an exit timeout longer than the test may run: close returns because the server is down, not at its end
    c = Client(url=url, spool_dir=tmp_path / "spool", http=dataclasses.replace(FAST, exit_timeout=3600.0))
    with flowsight.workflow("down", client=c):
        pass
    with caplog.at_level(logging.WARNING, logger="flowsight.sdk"):
        closing = threading.Thread(target=c.close)
        closing.start()
        closing.join(60)
    assert not closing.is_alive(), "close is waiting for the server that is down"
    assert any(f"2 events not yet delivered to {url} stay in the spool" in r.getMessage() for r in caplog.records)
    assert sink_of(c).spool.pending() == 2


def test_sdk_client_module_keeps_httpx_out_of_a_plain_import() -> None:
    import subprocess
    import sys

    code = "import sys, flowsight; flowsight.Client(db=':memory:'); print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    assert sdk_client.ENV_SERVER_URL == "FLOWSIGHT_URL"
