"""A store: one database, and a repository per area over it.

``store.runs`` (runs, their events, steps and transitions), ``store.stats``
(overview figures and workflow histories), ``store.alerts`` (alerts,
silences, the outbox, the notification log), ``store.logs``,
``store.faults`` (the fault history and registered outputs), ``store.perf``
(performance samples), ``store.tokens`` and ``store.kept`` (named documents
kept across restarts) share one :class:`~flowsight.store.database.Database`,
whose :class:`~flowsight.store.dialect.Dialect` holds what differs between
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flowsight.store.alerting import Alerts
from flowsight.store.database import Database
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
from flowsight.store.tokens import Tokens


class SqlStore:
    """The repositories over one database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.stats = RunStats(db)
        self.runs = Runs(db, self.stats)
        self.alerts = Alerts(db)
        self.logs = Logs(db)
        self.faults = Faults(db)
        self.perf = PerfSamples(db)
        self.tokens = Tokens(db)
        self.kept = KeptState(db)
        self.schedules = Schedules(db)
        self.spans = SpanLinks(db)
        self.exports = Exports(db)
        self.leases = Leases(db)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.db.dialect.name

    @property
    def url(self) -> str:
        """What :func:`~flowsight.store.opener.open_store` takes to open this store again."""
        return self.db.url

    @property
    def file(self) -> Path | None:
        """The database's file, when it is one (SQLite); None for a server's database."""
        return self.db.file

    @property
    def commits_in_seq_order(self) -> bool:
        """Whether rows commit in the order of their seqs (see the dialect)."""
        return self.db.dialect.commits_in_seq_order

    @property
    def writes_inline(self) -> bool:
        """Whether a write is CPU work, with no network wait (see Hub)."""
        return self.db.writes_inline

    def listen_commits(self, on_commit: Callable[[], None]) -> Callable[[], None] | None:
        """``on_commit`` called when events are committed (see ``Database.listen_commits``)."""
        return self.db.listen_commits(on_commit)

    def schema_version(self) -> int:
        """The newest migration applied to the database."""
        return self.db.schema_version()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
