"""``GET /api/v1/stream``: Server-Sent Events from a real server, parsed line
by line as a browser's EventSource does; resumed with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from starlette.types import Message

from flowsight.hub import Hub
from flowsight.model.runs.events import Event, make_event
from flowsight.monitors.channel import EventFilter
from flowsight.server.stream import EventStreamResponse, Streams, event_stream
from flowsight.store import SqlStore
from tests.helpers import run
from tests.server.conftest import Serve, Server, event, post, sql_rows, start_server
from tests.server.test_metrics import samples, value


@dataclass(frozen=True)
class Sse:
    id: int
    event: str
    data: dict[str, Any]


class Reader:
    """Frames of an open stream: ``retry``, comments and events."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        self.frames: list[dict[str, str]] = []

    def frame(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for line in self.lines:
            if line == "":
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                fields.setdefault("comment", line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError(f"the stream ended; frames so far: {self.frames[-3:]}")

    def events(self, n: int) -> list[Sse]:
        """The next ``n`` events (a read timeout fails the test if they never come)."""
        out: list[Sse] = []
        while len(out) < n:
            f = self.frame()
            self.frames.append(f)
            if "id" in f:
                out.append(Sse(int(f["id"]), f["event"], json.loads(f["data"])))
        return out


@contextmanager
def stream(server: Server, last_id: int | str | bytes | None = None, **params: str) -> Iterator[Reader]:
    value = last_id if isinstance(last_id, bytes) else str(last_id).encode()
    headers = [] if last_id is None else [(b"Last-Event-ID", value)]
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(10.0)) as c:
        with c.stream("GET", "/api/v1/stream", params=params, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-cache"
            reader = Reader(r)
            assert reader.frame() == {"retry": "2000"}  # sent once the client is subscribed
            yield reader


@dataclass
class Api:
    """The module's server, as one test sees it: ids tagged for this test,
    and only the events stored since it began."""

    server: Server
    db: str
    tag: str
    baseline: int

    @property
    def client(self) -> httpx.Client:
        return self.server.clients[0]

    def id(self, name: str) -> str:
        return f"{self.tag}{name}"

    def batch(self, prefix: str, n: int, workflow: str = "etl", run_id: str = "a") -> list[dict[str, Any]]:
        return [event("heartbeat", workflow, run_id, id=self.id(f"{prefix}-{i:05d}"), i=i) for i in range(n)]

    def stored(self) -> list[tuple[int, str, str, str]]:
        """(seq, id, workflow, run_id) of the events stored since the test began, in store order."""
        return [
            (int(r[0]), *r[1:])
            for r in sql_rows(
                self.db, f"SELECT seq, id, workflow, run_id FROM events WHERE seq > {self.baseline} ORDER BY seq"
            )
        ]


@pytest.fixture(scope="module")
def shared(module_store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(module_store_url, log_dir=tmp_path_factory.mktemp("logs"))
    server.client()
    yield server
    assert server.stop() == 0, server.output()


@pytest.fixture
def api(shared: Server, module_store_url: str) -> Api:
    last = sql_rows(module_store_url, "SELECT COALESCE(MAX(seq), 0) FROM events")[0][0]
    return Api(shared, module_store_url, f"{uuid.uuid4().hex[:8]}-", int(last))


def test_a_client_gets_the_events_posted_after_it_connected(api: Api) -> None:
    c = api.client
    post(c, api.batch("before", 3))
    with stream(api.server) as s:
        post(c, event("started", "etl", "b", id=api.id("one"), total_steps=2))  # one object
        post(
            c,
            [
                event("step_started", "etl", "b", "extract", id=api.id("two")),
                event("progress", "etl", "b", id=api.id("three"), done=1, total=2),
            ],
        )
        got = s.events(3)
    assert [e.data["id"] for e in got] == [api.id("one"), api.id("two"), api.id("three")]  # none from before
    assert [e.event for e in got] == ["started", "step_started", "progress"]
    assert [e.data["seq"] for e in got] == [e.id for e in got]
    first = got[0].data
    assert (first["workflow"], first["run_id"], first["attrs"]) == ("etl", "b", {"total_steps": 2})
    assert got[1].data["step"] == "extract"
    assert [e.id for e in got] == [seq for seq, *_ in api.stored()][3:]


def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(api: Api) -> None:
    c = api.client
    post(c, api.batch("early", 10))
    seqs = [seq for seq, *_ in api.stored()]
    with stream(api.server, last_id=seqs[3]) as s:
        backlog = s.events(6)
        assert [e.id for e in backlog] == seqs[4:]
        post(c, api.batch("live", 3))
        live = s.events(3)
    assert [e.data["id"] for e in live] == [api.id(f"live-{i:05d}") for i in range(3)]
    last = live[-1].id
    post(c, api.batch("missed", 5))  # while disconnected
    with stream(api.server, last_id=last) as s:
        again = s.events(5)
        post(c, api.batch("after", 1))
        again += s.events(1)
    assert [e.data["id"] for e in again] == [api.id(f"missed-{i:05d}") for i in range(5)] + [api.id("after-00000")]
    every = [e.id for e in backlog + live + again]
    assert every == [seq for seq, *_ in api.stored()][4:]  # nothing missed, nothing twice


@pytest.mark.parametrize(
    ("params", "wanted", "count"),
    [
        ({"workflow": "etl"}, lambda wf, run: wf == "etl", 11),
        ({"run_id": "b"}, lambda wf, run: run == "b", 7),
        ({"workflow": "etl", "run_id": "a"}, lambda wf, run: wf == "etl" and run == "a", 7),
        ({"workflow": "nope"}, lambda wf, run: wf == "nope", 1),
    ],
)
def test_filters_apply_to_the_backlog_and_the_live_feed(
    api: Api, params: dict[str, str], wanted: Any, count: int
) -> None:
    c = api.client

    def mixed(prefix: str) -> list[dict[str, Any]]:
        return (
            api.batch(f"{prefix}-ea", 3, "etl", "a")
            + api.batch(f"{prefix}-eb", 2, "etl", "b")
            + api.batch(f"{prefix}-rc", 2, "report", "c")
            + api.batch(f"{prefix}-rb", 1, "report", "b")
        )

    post(c, mixed("old"))
    with stream(api.server, last_id=api.baseline, **params) as s:
        post(c, mixed("new"))
        # the last event, and one the filter lets through: nothing else may come before it
        marker = api.id("marker")
        post(c, event("heartbeat", params.get("workflow", "etl"), params.get("run_id", "a"), id=marker))
        want = [(seq, i) for seq, i, wf, run in api.stored() if wanted(wf, run)]
        got = s.events(len(want))
    assert [(e.id, e.data["id"]) for e in got] == want and want[-1][1] == marker
    assert len(want) == count


@pytest.mark.parametrize(
    "header",
    [
        "yesterday",
        "\u00b2".encode("latin-1"),
        "-5",
        "1e3",
        "99999999999999999999999",
        "",  # '²' is a digit to isdigit()
    ],
)
def test_a_last_event_id_that_is_no_seq_starts_live(api: Api, header: str | bytes) -> None:
    post(api.client, api.batch("old", 2))
    with stream(api.server, last_id=header) as s:
        post(api.client, api.batch("new", 1))
        assert [e.data["id"] for e in s.events(1)] == [api.id("new-00000")]


@pytest.mark.parametrize("params", [{"workflow": "a\x00"}, {"run_id": "\x00"}])
def test_a_filter_with_a_nul_is_refused_before_the_stream_starts(api: Api, params: dict[str, str]) -> None:
    r = api.client.get("/api/v1/stream", params=params)
    assert r.status_code == 400 and "contains a NUL character" in r.json()["error"]


def test_a_backlog_longer_than_a_page_arrives_whole_while_events_keep_coming(api: Api) -> None:
    for k in range(5):
        post(api.client, api.batch(f"old{k}", 500))
    done = threading.Event()

    def keep_posting() -> None:
        with httpx.Client(base_url=api.server.url, timeout=10) as pc:
            for k in range(40):
                post(pc, api.batch(f"new{k:02d}", 25, run_id=f"r{k % 3}"))
        done.set()

    poster = threading.Thread(target=keep_posting)
    with stream(api.server, last_id=api.baseline) as s:
        poster.start()
        got = s.events(2500 + 40 * 25)
    poster.join(30)
    assert done.is_set()
    assert [(e.id, e.data["id"]) for e in got] == [(seq, i) for seq, i, *_ in api.stored()]


# ---- the stream generator itself, driven step by step over a real store ----
class StoreThatWritesBehindTheLastPage:
    """The store's runs, except that right after the backlog's last page is read,
    ``n`` more events are committed and published: the moment between the
    read and the stream resuming, while its live queue is already full."""

    def __init__(self, store: SqlStore, hub: Hub, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.store, self.hub, self.loop, self.n = store, hub, loop, n
        self.sent: list[str] = []

    def last_seq(self) -> int:
        return self.store.runs.last_seq()

    def events_after(self, seq: int, **kw: Any) -> list[tuple[int, Event]]:
        page = self.store.runs.events_after(seq, **kw)
        if self.n and len(page) < kw.get("limit", 1000):
            events = [make_event("heartbeat", "etl", "late", event_id=f"late-{i}", ts=1.0) for i in range(self.n)]
            self.n = 0
            result = self.store.runs.write_events(events)
            self.sent += [ev.id for ev in events]
            for ev in events:  # published on the loop before the stream hears its page
                self.loop.call_soon_threadsafe(self.hub.stream.publish, (result.seqs[ev.id], ev))
        return page


def test_events_dropped_while_the_backlog_is_read_are_read_back_from_the_store(store: SqlStore) -> None:
    async def main() -> list[bytes]:
        hub = Hub(store, track=False)
        early = [make_event("heartbeat", "etl", "early", event_id=f"early-{i}", ts=1.0) for i in range(3)]
        await hub.publish(early)
        proxy = StoreThatWritesBehindTheLastPage(store, hub, asyncio.get_running_loop(), n=5)
        view = SimpleNamespace(store=SimpleNamespace(runs=proxy), stream=hub.stream)
        frames_of = event_stream(view, EventFilter(), 0, queue_size=2)  # type: ignore[arg-type]
        gen = cast(AsyncGenerator[bytes, None], frames_of)
        frames: list[bytes] = []
        try:
            while sum(f.startswith(b"id:") for f in frames) < 8:
                frames.append(await asyncio.wait_for(gen.__anext__(), 5))
        finally:
            await gen.aclose()
        return frames

    frames = run(main)
    ids = [json.loads(f.split(b"data: ")[1])["id"] for f in frames if f.startswith(b"id:")]
    assert ids == [f"early-{i}" for i in range(3)] + [f"late-{i}" for i in range(5)]
    assert b"event: overflow\ndata: {}\n\n" in frames


def test_closing_the_streams_ends_one_waiting_for_live_events(store: SqlStore) -> None:
    async def main() -> list[bytes]:
        hub, streams = Hub(store, track=False), Streams()
        gen = event_stream(hub, EventFilter(), None, streams=streams)
        frames = [await gen.__anext__()]
        asyncio.get_running_loop().call_later(0.1, streams.close_all)
        async for frame in gen:
            frames.append(frame)
        assert hub.stream.subscribers == 0
        return frames

    assert run(main) == [b"retry: 2000\n\n"]


def test_events_written_straight_to_the_store_by_another_process_reach_the_stream_once(api: Api) -> None:
    """``flowsight run --db`` beside the server (the demo, a cron line): its
    events reach a live client from the store; the server's own ingest is
    not sent twice."""
    run_id = api.id("local")
    with stream(api.server, workflow="outside") as s:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowsight",
                "--db",
                api.db,
                "run",
                "-w",
                "outside",
                "--run-id",
                run_id,
                "--",
                "bash",
                "-c",
                "echo '::step only::'; echo hi",
            ],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        post(api.client, event("heartbeat", "outside", run_id, id=api.id("posted")))
        got = s.events(5)  # started, step_started, step_completed, completed -- and the posted one
    kinds = [e.event for e in got if e.data["id"] != api.id("posted")]
    assert kinds == ["started", "step_started", "step_completed", "completed"]
    assert [e.data["id"] for e in got].count(api.id("posted")) == 1
    assert len({e.id for e in got}) == len(got)


# ---- clients that do not read, clients that leave ---------------------------------
def silent_client(server: Server) -> socket.socket:
    """A stream client that never reads: a raw socket, its receive buffer small."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window it offers
    s.connect(("127.0.0.1", server.port))
    s.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    return s


def stream_metrics(c: httpx.Client) -> dict[str, float]:
    ss = samples(c.get("/metrics").text)
    out = {
        "subscribers": value(ss, "flowsight_stream_subscribers"),
        "dropped": value(ss, "flowsight_stream_dropped_total"),
    }
    for reason in ("client", "slow", "shutdown"):
        out[reason] = value(ss, "flowsight_stream_disconnects_total", reason=reason)
    return out


def wait_for_metrics(
    c: httpx.Client, what: str, check: Callable[[dict[str, float]], bool], deadline: float = 60.0
) -> dict[str, float]:
    end = time.monotonic() + deadline
    while not check(got := stream_metrics(c)):
        assert time.monotonic() < end, f"{what}: not within {deadline:g}s; /metrics says {got}"
        time.sleep(0.1)
    return got


def closed_by_the_server(s: socket.socket) -> bool:
    """Read until the server's end (EOF, or a reset: it dropped what it held for us)."""
    s.settimeout(30)  # a server that keeps the connection open fails the test with a timeout
    try:
        while s.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass
    return True


SILENT = 20


def test_clients_that_never_read_are_dropped_as_slow_and_counted_while_the_server_keeps_answering(serve: Serve) -> None:
    server = serve()
    c = server.client(timeout=60)
    silent = [silent_client(server) for _ in range(SILENT)]
    try:
        wait_for_metrics(c, "the silent clients subscribed", lambda m: m["subscribers"] == SILENT)
        pad = "x" * 4000
        for k in range(100):  # 1 MB a batch: enough to fill what the kernel and the server buffer for them
            post(c, [event("heartbeat", "flood", f"r{k}", pad=pad) for _ in range(250)])
            assert c.get("/api/v1/runs", params={"workflow": "flood"}).status_code == 200
            if stream_metrics(c)["slow"] == SILENT:
                break
        got = wait_for_metrics(c, "every silent client dropped", lambda m: m["subscribers"] == 0)
        assert (got["slow"], got["client"], got["shutdown"]) == (SILENT, 0, 0)
        assert got["dropped"] > 0
        assert all(closed_by_the_server(s) for s in silent)
        with stream(server) as reader:  # a client that reads is served as ever
            post(c, event("heartbeat", "after", "a", id="after-the-flood"))
            assert reader.events(1)[0].data["id"] == "after-the-flood"
    finally:
        for s in silent:
            s.close()


def test_clients_that_leave_are_unsubscribed_and_counted(serve: Serve) -> None:
    server = serve()
    c = server.client(timeout=60)
    silent = [silent_client(server) for _ in range(5)]
    wait_for_metrics(c, "the clients subscribed", lambda m: m["subscribers"] == 5)
    post(c, [event("heartbeat", "some", "r", pad="x" * 4000) for _ in range(100)])  # some of it unread
    for s in silent:
        s.close()
    got = wait_for_metrics(c, "the clients that left unsubscribed", lambda m: m["subscribers"] == 0)
    assert (got["client"], got["slow"]) == (5, 0)


def test_a_stream_paused_on_a_frame_its_client_never_took_ends_its_subscription_when_the_client_leaves(
    store: SqlStore,
) -> None:
    """Starlette cancels the response of a client that left; the frames'
    generator, paused at the ``yield`` of a frame being written, must not be
    left for the garbage collector to close."""

    async def main() -> tuple[int, dict[str, int]]:
        hub = Hub(store, track=False)
        response = EventStreamResponse(event_stream(hub, EventFilter(), None), media_type="text/event-stream")
        written = asyncio.Event()
        left = asyncio.Event()

        async def send(message: Message) -> None:
            if message.get("body"):
                written.set()
                await asyncio.Event().wait()  # the client takes nothing: the write never ends

        async def receive() -> Message:
            await left.wait()
            return {"type": "http.disconnect"}

        task = asyncio.create_task(response({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send))
        await asyncio.wait_for(written.wait(), 10)
        assert hub.stream.subscribers == 1
        left.set()
        await asyncio.wait_for(task, 10)
        return hub.stream.subscribers, hub.stream.closed

    assert run(main) == (0, {"client": 1})
