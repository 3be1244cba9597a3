"""SQLite: the embedded default store (WAL, one file, no server)."""

from __future__ import annotations

import functools
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowsight.errors import MigrationError, NoStoreError, StoreError
from flowsight.store.database import Database, no_store_message
from flowsight.store.dialect import Dialect, Read, Rows
from flowsight.store.leases import check_fence
from flowsight.store.logs import LOG_COLUMNS
from flowsight.store.migrations import migrate, sqlite_has_trigram
from flowsight.store.perf import FOLD, ROLLUP_COLUMNS
from flowsight.store.sql import SqlStore

#: a search with up to this many candidates reads them; with more it walks the runs newest first
_DRIVE = 2000
_INSERT_EVENT = "INSERT INTO events (id, ts, kind, workflow, run_id, step, attrs) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
_INSERT_LOGS = f"INSERT INTO logs ({LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
_INSERT_SAMPLES = "INSERT INTO perf_samples (ts, scope_kind, scope_id, metric, value) VALUES (?, ?, ?, ?, ?)"
_INSERT_ROLLUPS = f"INSERT INTO perf_rollups ({ROLLUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) " + FOLD.format(
    lo="MIN", hi="MAX"
)


def is_locked(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code): another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)


def retry_locked(
    statement: Callable[[], object],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run ``statement`` again while it fails with "database is locked", for up
    to ``timeout`` seconds, sleeping a few milliseconds (jittered, growing to
    50 ms) in between.

    ``busy_timeout`` does not cover every lock: SQLite answers BUSY at once,
    without waiting, to a connection that must upgrade its lock while another
    is upgrading (a deadlock otherwise) -- as ``PRAGMA journal_mode=WAL`` does
    when several processes open a new file together.

    Raises:
        sqlite3.Error: the last error, once ``timeout`` has passed, or at once
            when it is not about a lock.
    """
    deadline = clock() + timeout
    delay = 0.002
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or clock() >= deadline:
                raise
        # jitter: processes that collided should not retry in step
        sleep(min(delay * random.uniform(0.5, 1.0), max(0.0, deadline - clock())))
        delay = min(delay * 2, 0.05)


def _insert_with_seqs(cur: sqlite3.Cursor, table: str, highest: str, insert: str, rows: Rows) -> dict[str, int]:
    """Insert ``rows`` (ids first), skipping ids stored before; the inserted
    ids with their seq. Inside BEGIN IMMEDIATE new rows take the seqs after
    the highest given (``highest`` reads it), in order: when every row went
    in, those are theirs; when some were duplicates, the new rows are those
    above it."""
    before = int(cur.execute(highest).fetchone()[0])
    cur.executemany(insert, rows)
    if cur.rowcount == len(rows):
        return {row[0]: before + 1 + i for i, row in enumerate(rows)}
    return {r[0]: int(r[1]) for r in cur.execute(f"SELECT id, seq FROM {table} WHERE seq > ?", (before,))}


class SqliteDialect(Dialect):
    name = "sqlite"
    param = "?"
    ilike = "LIKE"
    tells_other_writers = True
    commits_in_seq_order = True
    lock_row = ""  # BEGIN IMMEDIATE already keeps every other writer out
    # SQLite's LIKE ignores ASCII case, as its LOWER() folds only ASCII: LOWER() would only cost time
    text_match = (
        "(run_id LIKE ? ESCAPE '\\' OR workflow LIKE ? ESCAPE '\\' OR current_step LIKE ? ESCAPE '\\' "
        "OR error LIKE ? ESCAPE '\\')"
    )
    # raw samples have no key: the row's physical id picks a batch
    purge_samples = "DELETE FROM perf_samples WHERE rowid IN (SELECT rowid FROM perf_samples WHERE ts < ? LIMIT ?)"

    def text_condition(self, text: str, read: Read) -> tuple[str, list[Any]]:
        exact, params = super().text_condition(text, read)
        if not self.text_index or len(text) < 3:  # a trigram index finds nothing shorter than 3 characters
            return exact, params
        # the runs whose text holds the phrase (FTS5 folds case beyond ASCII,
        # so these are at least the exact matches), then the exact match
        phrase = '"' + text.replace('"', '""') + '"'
        found = read(
            "SELECT COUNT(*) FROM (SELECT rowid FROM runs_text WHERE runs_text MATCH ? LIMIT ?)", (phrase, _DRIVE + 1)
        )[0][0]
        # few: the query reads those runs and sorts them; many (a common
        # text): it walks the runs newest first and keeps those in the set
        # ('+' keeps the set from driving), stopping when the page is full
        column = "rowid" if found <= _DRIVE else "+rowid"
        return (f"({column} IN (SELECT rowid FROM runs_text WHERE runs_text MATCH ?) AND {exact})", [phrase, *params])

    # one writer at a time: BEGIN IMMEDIATE takes the database's write lock
    def take_turn(self, cur: Any, key: int) -> None:
        pass

    def lock_table(self, cur: Any, table: str) -> None:
        pass

    def lock_runs(self, cur: Any, run_ids: list[str]) -> None:
        pass

    def insert_events(self, cur: sqlite3.Cursor, rows: Rows) -> dict[str, int]:
        # no AUTOINCREMENT: the highest seq stored is the highest given
        return _insert_with_seqs(cur, "events", "SELECT COALESCE(MAX(seq), 0) FROM events", _INSERT_EVENT, rows)

    def insert_logs(self, cur: sqlite3.Cursor, rows: Rows) -> dict[str, int]:
        # AUTOINCREMENT: the highest seq ever given may be gone (purged); sqlite_sequence keeps it
        highest = (
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'logs'), 0), "
            "COALESCE((SELECT MAX(seq) FROM logs), 0))"
        )
        return _insert_with_seqs(cur, "logs", highest, _INSERT_LOGS, rows)

    def set_log_templates(self, cur: sqlite3.Cursor, pairs: Sequence[tuple[int, str]]) -> None:
        cur.executemany("UPDATE logs SET template_id = ? WHERE seq = ?", [(t, int(s)) for s, t in pairs])

    def insert_samples(self, cur: sqlite3.Cursor, raw: Rows, rollups: Rows) -> None:
        cur.executemany(_INSERT_SAMPLES, raw)
        cur.executemany(_INSERT_ROLLUPS, rollups)


class SqliteDatabase(Database):
    """A SQLite file in WAL mode; several processes may write to it at once
    (each write waits up to ``busy_timeout`` seconds for the others)."""

    writes_inline = True

    def __init__(
        self, path: Path | str, *, busy_timeout: float = 30.0, synchronous: str = "NORMAL", create: bool = True
    ) -> None:
        self.dialect = SqliteDialect()
        super().__init__()
        if not create and str(path) != ":memory:" and not Path(path).is_file():
            raise NoStoreError(no_store_message(str(path)))
        self.path = path
        self.url = str(path)
        self.file = None if str(path) == ":memory:" else Path(path)
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._data_version: int | None = None
        try:
            self._conn = conn = self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store: cannot open {path}: {exc}") from exc
        try:
            # busy_timeout does not wait here (see retry_locked): several processes
            # opening a new file at once would otherwise fail with "database is locked"
            retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchall(), busy_timeout)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"sqlite store: cannot open {path}: {exc}") from exc
        if create:
            self._migrate()
        else:
            try:
                self.require_current(
                    bool(
                        conn.execute(
                            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
                        ).fetchall()
                    )
                )
            except (NoStoreError, sqlite3.Error) as exc:
                conn.close()
                if isinstance(exc, NoStoreError):
                    raise
                raise StoreError(f"sqlite store: cannot read {path}: {exc}") from exc
        # migration 12 makes it where SQLite has FTS5's trigram tokenizer
        self.dialect.text_index = bool(
            conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs_text'").fetchall()
        )
        if self.dialect.text_index and not sqlite_has_trigram(conn.cursor()):
            # its triggers would fail every write of a run: say so now, plainly
            conn.close()
            raise StoreError(
                f"sqlite store: {path} was made by a SQLite with FTS5's trigram tokenizer (3.34 or "
                f"newer); this Python's SQLite is {sqlite3.sqlite_version} and cannot write to it. "
                "Use a Python whose SQLite is 3.34 or newer"
            )

    def _connect(self) -> sqlite3.Connection:
        if str(self.path) == ":memory:" and hasattr(self, "_conn"):
            return self._conn  # one in-memory database: reads share the write connection
        conn = sqlite3.connect(
            str(self.path), timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        setup = (
            f"PRAGMA synchronous={self._synchronous}",
            # a 64 MiB page cache keeps the id and run indexes' hot pages in memory
            "PRAGMA cache_size=-65536",
            # checkpoint the WAL every ~40 MiB rather than every 4 MiB: fewer stalls under bursts
            "PRAGMA wal_autocheckpoint=10000",
        )
        try:
            for sql in setup:  # cache_size reads the schema (a shared lock): a file being set up may be busy
                retry_locked(functools.partial(conn.execute, sql), self._busy_timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def _disk_full(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL

    @contextmanager
    def write_txn(self) -> Iterator[sqlite3.Cursor]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            check_fence(self, cur)
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    def others_wrote(self, cur: sqlite3.Cursor) -> bool:
        # data_version changes when another connection (another process, the
        # CLI) commits, never for this connection's own commits
        version = int(cur.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._data_version
        self._data_version = version
        return changed

    def _migrate(self) -> None:
        try:
            with self.write_txn() as cur:
                migrate(cur, "sqlite", "?")
        except sqlite3.Error as exc:
            raise MigrationError(f"sqlite store {self.path}: migration failed: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            self._close_readers()
            self._conn.close()


class SqliteStore(SqlStore):
    """A store on a SQLite file (:class:`SqliteDatabase`)."""

    def __init__(
        self, path: Path | str, *, busy_timeout: float = 30.0, synchronous: str = "NORMAL", create: bool = True
    ) -> None:
        super().__init__(SqliteDatabase(path, busy_timeout=busy_timeout, synchronous=synchronous, create=create))
        self.path = path
