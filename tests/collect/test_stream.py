"""StreamSource over real pipes: os.pipe() in this process, and the stdin of
a child process reading ``sys.stdin.buffer`` like ``flowsight logs watch -``."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowsight.collect import LogSource, RawLine, StreamSource
from tests.helpers import run


class Problems(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


@contextlib.contextmanager
def pipe() -> Iterator[tuple[io.BufferedReader, int]]:
    """A real pipe: the read end as a binary file object, the write end's fd."""
    r, w = os.pipe()
    reader = os.fdopen(r, "rb")
    try:
        yield reader, w
    finally:
        reader.close()
        with contextlib.suppress(OSError):
            os.close(w)


def writer(fd: int, data: bytes) -> threading.Thread:
    """Write ``data`` to ``fd`` from a thread (a pipe holds only 64 KiB), then close it."""

    def write() -> None:
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def read_all(source: StreamSource) -> list[RawLine]:
    async def take() -> list[RawLine]:
        return [line async for line in source]

    return run(lambda: asyncio.wait_for(take(), 60))


def test_stream_source_is_a_log_source() -> None:
    assert isinstance(StreamSource(io.BytesIO()), LogSource)


def test_lines_from_a_pipe_with_the_last_one_unterminated() -> None:
    with pipe() as (reader, w):
        writer(w, b"one\r\ntwo\nthree")
        lines = read_all(StreamSource(reader, multiline=False))
    assert [(x.path, x.text, x.offset) for x in lines] == [
        ("stdin", "one", 0),
        ("stdin", "two", 5),
        ("stdin", "three", 9),
    ]


def test_bad_input_on_a_pipe_is_replaced_said_once_and_reading_goes_on() -> None:
    problems = Problems()
    data = b"\xff\xfe\n" * 3 + os.urandom(3000).replace(b"\n", b"") + b"\n" + b"x" * 10_000_000 + b"\nend\n"
    with pipe() as (reader, w):
        t = writer(w, data)
        lines = read_all(StreamSource(reader, source="stdin", on_problem=problems, multiline=False))
        t.join()
    texts = [x.text for x in lines]
    assert texts[:3] == ["\ufffd\ufffd"] * 3 and texts[-1] == "end"
    assert "".join(texts[4:-1]) == "x" * 10_000_000
    assert len([p for p in problems if "invalid UTF-8" in p]) == 1
    assert len([p for p in problems if "longer than max_line" in p]) == 1
    assert all(p.startswith("stdin: ") for p in problems)


def test_a_traceback_on_stdin_is_one_entry() -> None:
    with pipe() as (reader, w):
        writer(
            w, b"ERROR failed\nTraceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'x'\nINFO ok\n"
        )
        lines = read_all(StreamSource(reader, multiline_idle=0.05))
    assert [x.text.splitlines()[-1] for x in lines] == ["KeyError: 'x'", "INFO ok"]


def test_waiting_for_input_does_not_block_the_event_loop() -> None:
    with pipe() as (reader, w):

        async def main() -> tuple[int, list[str]]:
            ticks = 0
            got: list[str] = []

            async def consume() -> None:
                async for line in StreamSource(reader, multiline=False):
                    got.append(line.text)

            task = asyncio.create_task(consume())
            while ticks < 50:  # the reader waits on an empty pipe meanwhile
                await asyncio.sleep(0)
                ticks += 1
            os.write(w, b"hello\n")
            os.close(w)
            await asyncio.wait_for(task, 30)
            return ticks, got

        assert run(main) == (50, ["hello"])


def test_an_asyncio_stream_reader_is_read_too() -> None:
    with pipe() as (reader, w):

        async def main() -> list[str]:
            loop = asyncio.get_running_loop()
            stream = asyncio.StreamReader()
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), reader)
            writer(w, b"a\nb\n\xff")
            try:
                return [line.text async for line in StreamSource(stream, source="pipe", multiline=False)]
            finally:
                transport.close()

        assert run(lambda: asyncio.wait_for(main(), 30)) == ["a", "b", "\ufffd"]


def test_a_text_stream_is_read_through_its_binary_buffer() -> None:
    text = io.TextIOWrapper(io.BytesIO(b"x\ny\n"))
    assert [x.text for x in read_all(StreamSource(text))] == ["x", "y"]


def test_a_text_stream_without_a_buffer_is_refused() -> None:
    with pytest.raises(TypeError, match="sys.stdin.buffer"):
        StreamSource(io.StringIO("x"))  # type: ignore[arg-type]


def test_a_stream_is_read_once() -> None:
    source = StreamSource(io.BytesIO())
    source.__aiter__()
    with pytest.raises(RuntimeError, match="read once"):
        source.__aiter__()


CHILD = textwrap.dedent("""
    import asyncio, json, sys
    from flowsight.collect import StreamSource

    async def main():
        async for line in StreamSource(multiline_idle=0.05):
            print(json.dumps([line.path, line.text]), flush=True)

    asyncio.run(main())
""")


def test_the_stdin_of_a_process_line_by_line_as_it_comes() -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(b"first\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline()) == ["stdin", "first"]  # before stdin ends
            proc.stdin.write(b"second\nunterminated")
            proc.stdin.close()
            rest = [json.loads(x) for x in proc.stdout.read().splitlines()]
            assert rest == [["stdin", "second"], ["stdin", "unterminated"]]
            assert proc.wait(30) == 0
        finally:
            proc.kill()


def test_a_process_stops_reading_stdin_and_exits_while_stdin_stays_open() -> None:
    code = textwrap.dedent("""
        import asyncio, sys
        from flowsight.collect import StreamSource

        async def main():
            async for line in StreamSource():
                return line.text

        print(asyncio.run(main()), flush=True)
    """)
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(b"only\n")
            proc.stdin.flush()  # and stdin stays open: the reading thread is still inside a read
            code = proc.wait(30)
            out, err = proc.stdout.read(), proc.stderr.read()
        finally:
            proc.kill()
    assert code == 0, err
    assert out == b"only\n" and b"Fatal" not in err


def test_a_regular_file_as_stdin_is_read_to_its_end(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(5000)) + b"tail")
    with log.open("rb") as stdin:
        out = subprocess.run([sys.executable, "-c", CHILD], stdin=stdin, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    texts = [json.loads(x)[1] for x in out.stdout.splitlines()]
    assert texts == [f"line {i}" for i in range(5000)] + ["tail"]
