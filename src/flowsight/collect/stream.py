"""Log lines from a byte stream: stdin (``flowsight logs watch -``), a pipe, a socket.

`StreamSource` reads a binary file object (``sys.stdin.buffer`` by default)
or an ``asyncio.StreamReader`` and hands out `RawLine` s with the rules of
`flowsight.collect.lines.LineSplitter`: partial last line at the end, long
lines cut, invalid UTF-8 and NUL bytes replaced (each said once), multi-line
entries joined.

A file object is read by a daemon thread, so a read that blocks (a terminal,
a pipe nobody writes to) never blocks the event loop, and a read that never
returns does not hold up the interpreter's exit. At most a few chunks are
read ahead of the consumer. A file object with a descriptor is read with
``os.read`` on it, not through the object: a thread blocked inside a
buffered object's ``read`` holds its lock, and the interpreter aborts at exit
when it finds ``sys.stdin``'s lock held. So bytes an earlier read through the
object took into its buffer (``sys.stdin.readline()`` before) are not seen.
``loop.connect_read_pipe`` is not used: it cannot read a regular file
(``watch - < app.log``) and leaves a terminal shared with the shell in
non-blocking mode. `pump` is the loop shared with
`flowsight.collect.process.ProcessOutput`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, BinaryIO

from flowsight.collect.lines import LineSplitter
from flowsight.collect.tail import RawLine

__all__ = ["StreamSource", "pump", "read_stream"]

_log = logging.getLogger(__name__)

CHUNK = 1 << 16
READ_AHEAD = 8  # chunks a reader may hold before the consumer takes them

#: (index of the stream, bytes); ``b""`` says that stream ended
Chunk = tuple[int, bytes]


async def pump(
    get: Callable[[], Awaitable[Chunk]],
    splitters: Sequence[LineSplitter],
    *,
    idle: float,
    clock: Callable[[], float],
    group: Callable[[int], int] | None = None,
) -> AsyncGenerator[RawLine, None]:
    """Lines of several streams, each in its own order, as their chunks come
    from ``get``; ends once every stream has sent its ``b""``. An entry held
    for joining goes out after ``idle`` seconds without a new line.
    ``group``, asked at each chunk with its size: split it into groups of
    that many lines (`LineSplitter.feed`), 0 for line by line."""
    open_streams = len(splitters)
    while open_streams:
        holding = any(s.holding for s in splitters)
        try:
            async with asyncio.timeout(idle if holding else None):
                index, data = await get()
        except TimeoutError:
            now = clock()
            for s in splitters:
                for line in s.flush_idle(now):
                    yield line
            continue
        now = clock()
        if data:
            lines = splitters[index].feed(data, now, group=group(len(data)) if group is not None else 0)
        else:
            lines = splitters[index].finish(now)
            open_streams -= 1
        if holding:
            for s in splitters:
                lines += s.flush_idle(now)
        for line in lines:
            yield line


async def read_stream(
    reader: asyncio.StreamReader,
    index: int,
    queue: asyncio.Queue[Chunk],
    problem: Callable[[str], None],
    label: str,
    copy: Callable[[bytes], None] | None = None,
    *,
    size: int = CHUNK,
    pause: Callable[[], float] | None = None,
    transport: asyncio.ReadTransport | None = None,
) -> None:
    """Copy ``reader`` into ``queue`` as ``(index, chunk)`` (up to ``size``
    bytes each) until its end, then ``(index, b"")``; each chunk goes to
    ``copy`` too, as it is read. ``pause``, asked after each chunk: seconds
    for which ``transport`` (the reader's) stops reading, so that the output
    gathers in the pipe meanwhile and a flood costs fewer, bigger chunks."""
    try:
        while data := await reader.read(size):
            if copy is not None:
                copy(data)
            await queue.put((index, data))
            if pause is not None and transport is not None and (wait := pause()) > 0:
                transport.pause_reading()
                try:
                    await asyncio.sleep(wait)
                finally:
                    transport.resume_reading()
    except OSError as exc:
        problem(f"{label}: read failed ({exc.strerror or exc}); taking it as the end of the stream")
    await queue.put((index, b""))


class StreamSource:
    """Lines read from ``stream``: a binary file object (default: this
    process's stdin, ``sys.stdin.buffer``) or an ``asyncio.StreamReader``.

    ``source`` labels the lines (`RawLine.path`). ``max_line``, ``multiline``
    and ``multiline_idle`` are `FileTail` 's. ``on_problem`` receives one
    readable sentence per problem (logged as a warning by default);
    ``clock`` (monotonic seconds) times the multi-line flush. The stream is
    not closed at the end; iterate once.
    """

    def __init__(
        self,
        stream: BinaryIO | io.RawIOBase | io.BufferedIOBase | asyncio.StreamReader | None = None,
        *,
        source: str = "stdin",
        max_line: int = 1 << 20,
        multiline: bool = True,
        multiline_idle: float = 1.0,
        on_problem: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(stream, io.TextIOBase):
            buffer = getattr(stream, "buffer", None)
            if buffer is None:
                raise TypeError(
                    f"StreamSource reads bytes; {stream!r} is a text stream without a binary buffer "
                    "(pass a binary file object, e.g. sys.stdin.buffer)"
                )
            stream = buffer
        self._stream = stream
        self.source = source
        self._problem = on_problem if on_problem is not None else _log.warning
        self._splitter = LineSplitter(
            source, max_line=max_line, multiline=multiline, idle=multiline_idle, on_problem=self._problem
        )
        self._idle = multiline_idle
        self._clock = clock
        self._used = False

    def __aiter__(self) -> AsyncGenerator[RawLine, None]:
        if self._used:
            raise RuntimeError(f"StreamSource({self.source!r}) was iterated already; a stream is read once")
        self._used = True
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        if isinstance(stream, asyncio.StreamReader):
            return self._from_reader(stream)
        return self._from_file(stream)

    async def _from_reader(self, reader: asyncio.StreamReader) -> AsyncGenerator[RawLine, None]:
        queue: asyncio.Queue[Chunk] = asyncio.Queue(READ_AHEAD)
        task = asyncio.create_task(read_stream(reader, 0, queue, self._problem, self.source))
        try:
            async for line in pump(queue.get, [self._splitter], idle=self._idle, clock=self._clock):
                yield line
        finally:
            task.cancel()

    async def _from_file(self, stream: Any) -> AsyncGenerator[RawLine, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk] = asyncio.Queue()
        slots = threading.Semaphore(READ_AHEAD)  # bounds the queue: the thread waits for a free slot
        stop = threading.Event()
        read: Callable[[int], bytes | None]
        try:
            read = functools.partial(os.read, stream.fileno())
        except (AttributeError, OSError, ValueError):  # no file descriptor (BytesIO...): its own read
            read = getattr(stream, "read1", None) or stream.read
        thread = threading.Thread(
            target=self._read_thread,
            args=(read, loop, queue, slots, stop),
            name=f"flowsight-read-{self.source}",
            daemon=True,
        )
        thread.start()

        async def get() -> Chunk:
            item = await queue.get()
            slots.release()
            return item

        try:
            async for line in pump(get, [self._splitter], idle=self._idle, clock=self._clock):
                yield line
        finally:
            stop.set()  # a thread inside a blocking read ends after it returns

    def _read_thread(
        self,
        read: Callable[[int], bytes | None],
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Chunk],
        slots: threading.Semaphore,
        stop: threading.Event,
    ) -> None:
        while not stop.is_set():
            try:
                data = read(CHUNK)
            except OSError as exc:
                what = f"{self.source}: read failed ({exc.strerror or exc}); taking it as the end of the stream"
                with contextlib.suppress(RuntimeError):  # told on the loop's thread, like every other problem
                    loop.call_soon_threadsafe(self._problem, what)
                data = b""
            except ValueError:  # closed under us
                data = b""
            if data is None:  # a non-blocking file with nothing to read yet
                stop.wait(0.05)
                continue
            while not slots.acquire(timeout=0.2):
                if stop.is_set():
                    return
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (0, bytes(data)))
            except RuntimeError:  # the loop is closed: nobody reads any more
                return
            if not data:
                return
