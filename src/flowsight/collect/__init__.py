"""Collectors: sources of log lines and samples that feed the hub.

A log source is anything with ``__aiter__`` yielding `RawLine` s
(`LogSource`): `FileTail` (files, ``tail -F``), `ProcessOutput` (a program's
stdout and stderr), `StreamSource` (stdin, a pipe). Parsing a line into a log
entry happens downstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from flowsight.collect.lines import LineSplitter
from flowsight.collect.process import ProcessOutput
from flowsight.collect.stream import StreamSource
from flowsight.collect.tail import FileTail, RawLine

__all__ = ["FileTail", "LineSplitter", "LogSource", "ProcessOutput", "RawLine", "StreamSource"]


@runtime_checkable
class LogSource(Protocol):
    """A stream of raw log lines (a file tail, a process's output, ...)."""

    def __aiter__(self) -> AsyncIterator[RawLine]: ...
