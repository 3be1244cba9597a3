"""What consumers of a store depend on: :class:`Store` (its repositories,
its kind, where it is), and narrower protocols for those that need less.

:class:`flowsight.store.sql.SqlStore` is the one implementation, over SQLite
or PostgreSQL; a test may hand a consumer anything of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from flowsight.store.alerting import Alerts
from flowsight.store.faults import Faults
from flowsight.store.logs import Logs
from flowsight.store.perf import PerfSamples
from flowsight.store.runs import Runs
from flowsight.store.runstats import RunStats
from flowsight.store.kept import KeptState
from flowsight.store.leases import Leases
from flowsight.store.schedules import Schedules
from flowsight.store.spans import SpanLinks
from flowsight.store.exports import Exports
from flowsight.store.tokens import TokenInfo, Tokens


class Store(Protocol):
    runs: Runs
    stats: RunStats
    alerts: Alerts
    logs: Logs
    faults: Faults
    perf: PerfSamples
    tokens: Tokens
    kept: KeptState
    leases: Leases
    schedules: Schedules
    spans: SpanLinks
    exports: Exports

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""

    @property
    def url(self) -> str:
        """What :func:`~flowsight.store.opener.open_store` takes to open this store again."""

    @property
    def file(self) -> Path | None:
        """The database's file, when it is one (SQLite); None for a server's database."""

    @property
    def commits_in_seq_order(self) -> bool:
        """Whether rows commit in the order of their seqs (SQLite); else a
        reader waits a moment before taking a stretch of seqs as complete."""

    @property
    def writes_inline(self) -> bool:
        """Whether a write is CPU work, with no network wait."""

    def listen_commits(self, on_commit: Callable[[], None]) -> Callable[[], None] | None:
        """``on_commit`` called (from a thread) when another process commits
        events; what stops it, or None where nobody is told (SQLite)."""

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


class TokenLookup(Protocol):
    """What the server's authenticator asks of the tokens (``store.tokens``)."""

    def verify_token(self, token: str) -> TokenInfo | None: ...

    def has_tokens(self) -> bool: ...
