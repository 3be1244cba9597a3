"""One database under a store: its connections, reads, writes and errors.

Writers take turns on the one write connection (``lock``); reads use a
connection per thread, never behind a write. Every driver error comes out as
:class:`~flowsight.errors.StoreError` (:class:`~flowsight.errors.StoreFullError`
for a full disk, said once per episode). The repositories of
:class:`flowsight.store.sql.SqlStore` share one :class:`Database`;
:class:`flowsight.store.sqlite.SqliteDatabase` and
:class:`flowsight.store.postgres.PostgresDatabase` are the two.
"""

from __future__ import annotations

import re
import shlex
import threading
from pathlib import Path
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flowsight.errors import NoStoreError, StoreError, StoreFullError
from flowsight.redact import redact_url
from flowsight.store.dialect import Dialect
from flowsight.store.diskfull import DiskFull
from flowsight.store.migrations import LATEST


def safe_url(url: str) -> str:
    """A store URL fit to print: a PostgreSQL password masked."""
    return re.sub(r"://([^:@/]+):[^@/]*@", r"://\1:***@", url)


def no_store_message(url: str) -> str:
    """What a command that only reads says where there is no store."""
    shown = safe_url(url)
    return (
        f"no flowsight store at {shown} (create one with: flowsight --db {shlex.quote(shown)} init; "
        "or check --db and $FLOWSIGHT_DATABASE_URL)"
    )


class Database(ABC):
    """Connections to one database and the helpers every repository uses."""

    dialect: Dialect
    url: str = ""  # what open_store() takes to open this store again
    file: Path | None = None  # the database's file, when it is one (SQLite)
    writes_inline: bool = False  # True: a write is CPU work (no network wait); see Hub

    def __init__(self) -> None:
        self.lock = threading.RLock()  # writers take turns on the one write connection
        self._readers = threading.local()  # reads: a connection per thread, never behind a write
        self._all_readers: list[Any] = []
        self._full = DiskFull(lambda: f"{self.dialect.name} store {redact_url(self.url)}")

    # ---- what each database supplies -------------------------------------
    @abstractmethod
    def _connect(self) -> Any:
        """A new connection to the same database, configured for reading."""

    @abstractmethod
    @contextmanager
    def write_txn(self) -> Iterator[Any]:
        """A cursor inside a write transaction that commits on exit (no
        lock, no error translation: :meth:`txn` adds both)."""

    @abstractmethod
    def _errors(self) -> tuple[type[BaseException], ...]: ...

    def _disk_full(self, exc: BaseException) -> bool:
        """Whether the driver's ``exc`` says there is no room left to write."""
        return False

    def _end_read(self, conn: Any) -> None:
        """Finish the implicit read transaction, if the driver opened one."""

    def others_wrote(self, cur: Any) -> bool:
        """Inside a write transaction: whether another connection may have
        written since this one last did (see ``Dialect.tells_other_writers``)."""
        return True

    def notify_commit(self, cur: Any, seq: int) -> None:
        """Inside a write transaction that stored events up to ``seq``: tell
        the listeners of other processes once it commits (PostgreSQL)."""

    def listen_commits(self, on_commit: Callable[[], None]) -> Callable[[], None] | None:
        """Call ``on_commit`` (from a thread of its own) when another process
        commits events; returns what stops listening, or None where the
        database tells nobody (SQLite: followers poll)."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    # ---- shared ------------------------------------------------------------
    def _reader(self) -> Any:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = self._connect()
            with self.lock:
                self._all_readers.append(conn)
        return conn

    def _close_readers(self) -> None:
        with self.lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()

    def sql(self, text: str) -> str:
        return self.dialect.sql(text)

    @contextmanager
    def guard(self, what: str, *, write: bool = True) -> Iterator[None]:
        """Driver errors as :class:`StoreError` (:class:`StoreFullError` for a
        full disk, said once per episode); a ``write`` that succeeds ends one."""
        try:
            yield
        except self._errors() as exc:
            if self._disk_full(exc):
                self._full.failed(what, exc)
                raise StoreFullError(f"{self.dialect.name} store: {what} failed: {exc}") from exc
            raise StoreError(f"{self.dialect.name} store: {what} failed: {exc}") from exc
        if write:
            self._full.wrote()

    @contextmanager
    def txn(self, what: str) -> Iterator[Any]:
        """A cursor in a write transaction, the writers' turn held and errors translated."""
        with self.lock, self.guard(what), self.write_txn() as cur:
            yield cur

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.guard("query", write=False):
            conn = self._reader()
            cur = conn.cursor()
            try:
                cur.execute(self.sql(sql), tuple(params))
                rows: list[Any] = cur.fetchall()
            finally:
                cur.close()
            self._end_read(conn)
            return rows

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; the rows it changed."""
        with self.txn("write") as cur:
            cur.execute(self.sql(sql), tuple(params))
            return int(cur.rowcount or 0)

    def schema_version(self) -> int:
        """The newest migration applied to this database."""
        return int(self.read("SELECT MAX(version) FROM schema_migrations")[0][0])

    def require_current(self, has_migrations: bool) -> None:
        """For a store opened only to read: it must be there and up to date
        (migrating it would be a write).

        Raises:
            NoStoreError: no flowsight store there, or one this code would have to migrate.
        """
        if not has_migrations:
            raise NoStoreError(no_store_message(self.url))
        version = self.schema_version()
        if version < LATEST:
            raise NoStoreError(
                f"the flowsight store at {safe_url(self.url)} was made by an older flowsight (schema "
                f"version {version}; this one needs {LATEST}); `flowsight init` or any command that "
                "writes to it (flowsight serve, flowsight run) brings it up to date"
            )
