"""LogHandler: Python logging into flowsight with the run and step attached.

Into a real store (SQLite and PostgreSQL), read back with a store of the
test's own; and over HTTP to a real receiver on 127.0.0.1 that answers like
``POST /api/v1/logs`` (gzip JSON array in, accepted/duplicates/rejected out),
which can be down, refuse with 503, and come back: spooled entries survive a
process that exits while it is down.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import flowsight
from flowsight.logs.records import StoredLog
from flowsight.logs.entries import LogEntry, LogLevel
from flowsight.sdk.client import Client, workflow
from flowsight.sdk.http import HttpSink
from flowsight.sdk.logs import LogHandler, build_log_records, encode_logs, level_of
from flowsight.sdk.spool import log_spool_dir
from flowsight.sdk.transport import sdk_thread
from flowsight.store import SqlStore
from tests.sdk.conftest import FAST, MakeClient
from tests.sdk.serving import ServerProcess, free_port, wait_until


@pytest.fixture
def client(store_url: str) -> Iterator[Client]:
    c = Client(db=store_url)
    yield c
    c.close()


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of its own (not propagating to root), at DEBUG, handlers removed after."""
    log = logging.getLogger(f"test.{request.node.name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)


def attach(log: logging.Logger, client: Client | None = None) -> LogHandler:
    handler = LogHandler(client=client)
    log.addHandler(handler)
    return handler


def stored(store: SqlStore, **filters: Any) -> list[StoredLog]:
    return store.logs.query_logs(limit=10_000, **filters)


# ---- pure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("levelno", "level"),
    [
        (0, LogLevel.TRACE),
        (5, LogLevel.TRACE),
        (logging.DEBUG, LogLevel.DEBUG),
        (15, LogLevel.DEBUG),
        (logging.INFO, LogLevel.INFO),
        (25, LogLevel.INFO),
        (logging.WARNING, LogLevel.WARN),
        (logging.ERROR, LogLevel.ERROR),
        (45, LogLevel.ERROR),
        (logging.CRITICAL, LogLevel.FATAL),
        (60, LogLevel.FATAL),
    ],
)
def test_logging_levels_map_to_flowsight_levels(levelno: int, level: LogLevel) -> None:
    assert level_of(levelno) is level


def test_records_get_time_sortable_unique_ids_from_their_time() -> None:
    entries = [LogEntry(1_700_000_000.0 + i, LogLevel.INFO, f"m{i}", "logging") for i in (2, 0, 1)]
    records = build_log_records(entries + [LogEntry(-5.0, LogLevel.INFO, "bad clock", "logging")])
    ids = [r.id for r in records]
    assert len(set(ids)) == 4
    assert sorted(ids[:3]) == [ids[1], ids[2], ids[0]]  # sorted by time, not by arrival
    assert [r.entry for r in records[:3]] == entries


def test_the_wire_form_is_what_post_api_v1_logs_takes() -> None:
    [rec] = build_log_records([LogEntry(1.5, LogLevel.WARN, "disk", "logging", "etl", "r1", None, {"n": 3})])
    [item] = json.loads(encode_logs([rec]))
    assert item == {
        "id": rec.id,
        "ts": 1.5,
        "level": "warn",
        "message": "disk",
        "source": "logging",
        "workflow": "etl",
        "run_id": "r1",
        "fields": {"n": 3},
    }


def test_text_utf8_cannot_carry_is_replaced_not_the_batch_lost() -> None:
    bad = "file-\udcff.csv"  # os.fsdecode() of a non-UTF-8 name
    records = build_log_records(
        [
            LogEntry(1.0, LogLevel.INFO, f"read {bad}", "logging", step=bad, fields={"path": bad, bad: 1}),
            LogEntry(2.0, LogLevel.INFO, "fine", "logging"),
        ]
    )
    first, second = json.loads(encode_logs(records))
    assert (first["message"], first["step"]) == ("read file-\ufffd.csv", "file-\ufffd.csv")
    assert first["fields"] == {"path": "file-\ufffd.csv", "file-\ufffd.csv": 1}
    assert second["message"] == "fine"


# ---- into a store -----------------------------------------------------------------


def test_logging_inside_a_step_is_stored_with_the_run_and_step(
    client: Client, store: SqlStore, logger: logging.Logger
) -> None:
    attach(logger, client)
    logger.info("before any run")
    with workflow("etl", client=client) as run:
        logger.debug("in the run, between steps")
        with run.step("extract"):
            logger.warning("3 rows skipped", extra={"rows": 3, "table": "orders", "ratio": 0.5, "obj": object()})
            with run.step("inner"):
                logger.info("nested")
            logger.info("back in extract")
    logger.info("after the run")
    assert client.flush()

    got = [(s.entry.message, s.entry.workflow, s.entry.run_id, s.entry.step, s.entry.level) for s in stored(store)]
    assert got == [
        ("before any run", None, None, None, LogLevel.INFO),
        ("in the run, between steps", "etl", run.run_id, None, LogLevel.DEBUG),
        ("3 rows skipped", "etl", run.run_id, "extract", LogLevel.WARN),
        ("nested", "etl", run.run_id, "inner", LogLevel.INFO),
        ("back in extract", "etl", run.run_id, "extract", LogLevel.INFO),
        ("after the run", None, None, None, LogLevel.INFO),
    ]
    warned = stored(store, min_level=LogLevel.WARN)[0].entry
    assert warned.source == "logging"
    fields = dict(warned.fields)
    assert fields["logger"] == logger.name and fields["module"] == "test_logs"
    assert fields["function"] == "test_logging_inside_a_step_is_stored_with_the_run_and_step"
    assert fields["thread"] == threading.current_thread().name and fields["pid"] == os.getpid()
    assert isinstance(fields["line"], int)
    assert (fields["rows"], fields["table"], fields["ratio"]) == (3, "orders", 0.5)
    assert "obj" not in fields  # not a JSON scalar
    assert [s.entry.message for s in stored(store, run_id=run.run_id, step="extract")] == [
        "3 rows skipped",
        "back in extract",
    ]


def test_an_exception_is_stored_with_its_traceback(client: Client, store: SqlStore, logger: logging.Logger) -> None:
    attach(logger, client)
    with pytest.raises(ValueError):
        with workflow("etl", client=client) as run:
            with run.step("load"):
                try:
                    {}["missing"]
                except KeyError:
                    logger.exception("lookup failed")
                logger.critical("giving up", stack_info=True)
                raise ValueError("boom")
    assert client.flush()
    failed, fatal = stored(store, run_id=run.run_id)
    e = failed.entry
    assert (e.level, e.step) == (LogLevel.ERROR, "load")
    assert e.message.startswith("lookup failed\nTraceback (most recent call last):")
    assert e.message.endswith("KeyError: 'missing'")
    assert e.fields["error_type"] == "KeyError"
    assert fatal.entry.level is LogLevel.FATAL and "Stack (most recent call last):" in fatal.entry.message


def test_a_formatter_on_the_handler_shapes_the_message(client: Client, store: SqlStore, logger: logging.Logger) -> None:
    attach(logger, client).setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger.info("hello %s", "world")
    assert client.flush()
    assert stored(store)[0].entry.message == f"[{logger.name}] hello world"


def test_an_async_run_attaches_to_logs_of_its_tasks(client: Client, store: SqlStore, logger: logging.Logger) -> None:
    attach(logger, client)

    async def one(name: str) -> str:
        async with workflow(name, client=client) as run:
            async with run.step("work"):
                await asyncio.sleep(0)
                logger.info(f"from {name}")
            return run.run_id

    async def main() -> list[str]:
        return list(await asyncio.gather(one("a"), one("b")))

    ids = asyncio.run(main())
    assert client.flush()
    got = {s.entry.message: (s.entry.workflow, s.entry.run_id, s.entry.step) for s in stored(store)}
    assert got == {"from a": ("a", ids[0], "work"), "from b": ("b", ids[1], "work")}


def test_a_thread_the_run_did_not_start_names_its_run_with_extra(
    client: Client, store: SqlStore, logger: logging.Logger
) -> None:
    attach(logger, client)
    with workflow("etl", client=client) as run:

        def work() -> None:
            logger.info("no context here")
            logger.info("named", extra={"workflow": run.workflow, "run_id": run.run_id, "step": "pool"})

        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert client.flush()
    got = [(s.entry.message, s.entry.run_id, s.entry.step) for s in stored(store)]
    assert got == [("no context here", None, None), ("named", run.run_id, "pool")]


def test_the_default_client_is_the_one_configured_when_the_record_comes(
    store_url: str, store: SqlStore, logger: logging.Logger, no_default: None
) -> None:
    attach(logger)  # before configure()
    flowsight.configure(store_url)
    with flowsight.workflow("etl") as run:
        with flowsight.step("load"):
            logger.error("bad row")
    assert flowsight.flush() is True  # logs too
    [s] = stored(store)
    assert (s.entry.message, s.entry.run_id, s.entry.step) == ("bad row", run.run_id, "load")


def test_no_log_writer_until_the_first_entry(client: Client) -> None:
    with workflow("etl", client=client):
        pass
    assert client._logs is None
    assert client.flush()


# ---- never raises, never feeds itself ------------------------------------------------


class Broken(Client):
    def emit_log(self, entry: LogEntry) -> None:
        raise OSError("disk on fire")


def test_a_failure_inside_the_handler_goes_to_handle_error_not_to_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled: list[logging.LogRecord] = []
    handler = LogHandler(client=Broken(db=str(tmp_path / "x.db")))
    monkeypatch.setattr(handler, "handleError", handled.append)
    handler.handle(logging.makeLogRecord({"msg": "fine"}))  # the client raises
    handler.handle(logging.makeLogRecord({"msg": "bad %d", "args": ("format",)}))  # formatting raises
    assert [r.msg for r in handled] == ["fine", "bad %d"]


class Chatty(Client):
    """A client that logs while it takes an entry (as a driver might)."""

    def emit_log(self, entry: LogEntry) -> None:
        logging.getLogger("chatty.driver").warning("taking %s", entry.message)
        super().emit_log(entry)


def test_a_record_logged_while_the_handler_runs_is_not_shipped(tmp_path: Path, store_url: str, store: SqlStore) -> None:
    root = logging.getLogger()
    c = Chatty(db=store_url)
    handler = LogHandler(client=c)
    root.addHandler(handler)
    try:
        logging.getLogger("chatty.app").warning("one")
        assert c.flush()
    finally:
        root.removeHandler(handler)
        c.close()
    assert [s.entry.message for s in stored(store)] == ["one"]


def test_the_sdks_own_loggers_and_threads_are_not_shipped(
    client: Client, store: SqlStore, logger: logging.Logger
) -> None:
    handler = attach(logger, client)
    handler.handle(logging.makeLogRecord({"name": "flowsight.sdk", "msg": "spool full", "levelno": 30}))
    handler.handle(logging.makeLogRecord({"name": "flowsight.sdk.http", "msg": "retrying", "levelno": 30}))

    def on_a_writer_thread() -> None:
        sdk_thread.active = True
        logger.warning("from the sender")  # httpx and drivers log here

    t = threading.Thread(target=on_a_writer_thread)
    t.start()
    t.join()
    handler.handle(logging.makeLogRecord({"name": "flowsight.sdkfoo", "msg": "not ours", "levelno": 30}))
    assert client.flush()
    assert [s.entry.message for s in stored(store)] == ["not ours"]


# ---- over HTTP ---------------------------------------------------------------------


class LogsReceiver(ThreadingHTTPServer):
    """Answers ``POST /api/v1/logs`` (and ``/api/v1/events``) like the ingest
    endpoints; ``statuses`` are answered to the first log posts (one each),
    then 200."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.items: dict[str, dict[str, Any]] = {}  # log entries by id
        self.events: dict[str, dict[str, Any]] = {}
        self.paths: list[str] = []
        self.headers_seen: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: LogsReceiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv = self.server
        with srv.lock:
            srv.paths.append(self.path)
            srv.headers_seen.append(dict(self.headers))
            status = srv.statuses.pop(0) if srv.statuses and self.path == "/api/v1/logs" else 200
            answer: dict[str, Any] = {"error": "busy"}
            if status == 200:
                items = json.loads(gzip.decompress(body))
                seen = srv.items if self.path == "/api/v1/logs" else srv.events
                new = [i for i in items if i["id"] not in seen]
                seen.update((i["id"], i) for i in new)
                answer = {
                    "accepted": len(new),
                    "duplicates": len(items) - len(new),
                    "rejected": 0,
                    "results": [{"status": "accepted"}] * len(new),
                }
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[LogsReceiver]:
    srv = LogsReceiver(0)
    t = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def http_client(url: str, tmp_path: Path, **kw: Any) -> Client:
    kw.setdefault("http", FAST)
    c = Client(url=url, spool_dir=tmp_path / "spool", **kw)
    c.start()
    return c


def test_entries_go_to_post_api_v1_logs_gzipped_with_the_token(
    receiver: LogsReceiver, tmp_path: Path, logger: logging.Logger
) -> None:
    c = http_client(receiver.url, tmp_path, token="s3cret")
    try:
        attach(logger, c)
        with workflow("etl", client=c) as run:
            with run.step("load"):
                logger.warning("slow", extra={"ms": 1200})
        assert c.flush(30)
    finally:
        c.close()
    [item] = receiver.items.values()
    assert {k: item[k] for k in ("level", "message", "source", "workflow", "run_id", "step")} == {
        "level": "warn",
        "message": "slow",
        "source": "logging",
        "workflow": "etl",
        "run_id": run.run_id,
        "step": "load",
    }
    assert item["fields"]["ms"] == 1200
    logs_posts = [h for p, h in zip(receiver.paths, receiver.headers_seen) if p == "/api/v1/logs"]
    assert logs_posts and all(
        h["Content-Encoding"] == "gzip" and h["Authorization"] == "Bearer s3cret" for h in logs_posts
    )
    assert set(receiver.paths) == {"/api/v1/logs", "/api/v1/events"}


def test_a_real_server_stores_the_entries_with_their_run_and_step_once(
    server: ServerProcess, make_client: MakeClient, logger: logging.Logger
) -> None:
    c = make_client(server.url)
    attach(logger, c)
    with workflow("etl", client=c) as run:
        with run.step("load"):
            try:
                raise KeyError("k")
            except KeyError:
                logger.exception("lookup failed")
            logger.warning("bad bytes \x00 and \udcff kept", extra={"n": 2})
    logger.info("outside")
    assert c.flush(30)
    sink = c.log_writer.sink
    assert isinstance(sink, HttpSink) and sink.stats.accepted == 3 and sink.stats.rejected == 0
    rows = server.rows("SELECT level, message, source, workflow, run_id, step, fields FROM logs ORDER BY seq")
    assert [(r[3], r[4], r[5]) for r in rows] == [("etl", run.run_id, "load")] * 2 + [(None, None, None)]
    assert rows[0][1].startswith("lookup failed\nTraceback") and rows[0][1].endswith("KeyError: 'k'")
    assert rows[1][1] == "bad bytes \ufffd and \ufffd kept" and json.loads(rows[1][6])["n"] == 2
    assert {r[2] for r in rows} == {"logging"}

    # the same batch again (a retry after a lost answer): duplicates, not stored twice
    body = gzip.compress(encode_logs(build_log_records([LogEntry(1.0, LogLevel.INFO, "once", "logging")])), mtime=0)
    for expected in ("accepted", "duplicates"):
        answer = httpx.post(
            f"{server.url}/api/v1/logs",
            content=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ).json()
        assert answer[expected] == 1


def test_what_httpx_logs_on_the_sender_thread_is_not_shipped_back(receiver: LogsReceiver, tmp_path: Path) -> None:
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.DEBUG)  # httpx logs every request at INFO, httpcore at DEBUG
    c = http_client(receiver.url, tmp_path)
    handler = LogHandler(client=c)
    root.addHandler(handler)
    try:
        for i in range(3):
            logging.getLogger("app").info("entry %d", i)
            assert c.flush(30)
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        c.close()
    assert sorted(i["message"] for i in receiver.items.values()) == ["entry 0", "entry 1", "entry 2"]


def test_a_busy_server_gets_the_batch_again_after_backoff(
    receiver: LogsReceiver, tmp_path: Path, logger: logging.Logger
) -> None:
    receiver.statuses = [503, 503]
    c = http_client(receiver.url, tmp_path)
    try:
        attach(logger, c)
        logger.info("eventually")
        assert c.flush(30)
        sink = c.log_writer.sink
        assert isinstance(sink, HttpSink)
        assert sink.stats.retries == 2 and sink.stats.accepted == 1
    finally:
        c.close()
    assert [i["message"] for i in receiver.items.values()] == ["eventually"]


def test_entries_spooled_while_the_server_is_down_are_sent_by_the_next_process(
    stopped_server: ServerProcess, tmp_path: Path
) -> None:
    url = stopped_server.url
    child = textwrap.dedent("""
        import logging, sys
        import flowsight
        # basicConfig's "LEVEL:name:message" format is for the StreamHandler only
        logging.basicConfig(level=logging.INFO, handlers=[flowsight.LogHandler(), logging.StreamHandler()])
        with flowsight.workflow("etl") as run:
            with run.step("load"):
                for i in range(100):
                    logging.getLogger("job").info("line %d", i)
        print(run.run_id)
    """)
    env = {**os.environ, "FLOWSIGHT_URL": url, "FLOWSIGHT_SPOOL_DIR": str(tmp_path / "spool")}
    out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    assert out.stderr.count("log entries are kept in the spool") == 1  # said once, with where they are
    assert "INFO:job:line 0" in out.stderr  # the StreamHandler beside it
    spooled = log_spool_dir(url, tmp_path / "spool")
    assert sum(int(p.name.rsplit("_", 1)[1].split(".")[0]) for p in spooled.glob("*.json.gz")) == 100

    stopped_server.start()
    c = http_client(url, tmp_path)  # logs nothing itself: starting is enough to send what waits
    try:
        wait_until(lambda: not list(spooled.glob("*.json.gz")), what="spool emptied")
    finally:
        c.close()
    rows = stopped_server.rows("SELECT message, run_id, step FROM logs ORDER BY id")  # ids sort by time
    assert [r[0] for r in rows] == [f"line {i}" for i in range(100)]
    assert {(r[1], r[2]) for r in rows} == {(run_id, "load")}


def test_a_full_log_spool_drops_the_oldest_entries_with_a_counted_warning_and_keeps_events(
    tmp_path: Path, logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody there
    c = http_client(url, tmp_path, spool_max_bytes=30_000, batch_size=50)
    try:
        attach(logger, c)
        with caplog.at_level(logging.WARNING, logger="flowsight.sdk"):
            with workflow("etl", client=c):
                for i in range(3000):
                    logger.info("entry %d %s", i, os.urandom(16).hex())
            wait_until(lambda: c.log_writer.written == 3000, what="all spooled or dropped")
        dropped = c.log_writer.dropped
        assert dropped > 0
        assert any("dropped" in r.getMessage() and "log entries" in r.getMessage() for r in caplog.records)
        assert c.writer.dropped == 0  # the events' spool is its own
        assert c.log_writer.sink.spool.size() <= 30_000  # type: ignore[attr-defined]
    finally:
        c.close()
