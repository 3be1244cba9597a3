"""Collectors: sources of log lines and samples that feed the hub.

A log source is anything with ``__aiter__`` yielding `RawLine` s
(`LogSource`); parsing a line into a log entry happens downstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from flowsight.collect.tail import FileTail, RawLine

__all__ = ["FileTail", "LogSource", "RawLine"]


@runtime_checkable
class LogSource(Protocol):
    """A stream of raw log lines (a file tail, a process's output, ...)."""

    def __aiter__(self) -> AsyncIterator[RawLine]: ...
