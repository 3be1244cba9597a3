"""PostgreSQL, for teams and for several ``flowsight serve`` replicas."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from flowsight.errors import ConfigError, MigrationError, StoreError
from flowsight.store.database import Database, safe_url
from flowsight.store.dialect import Dialect, Read, Rows
from flowsight.store.leases import check_fence
from flowsight.store.logs import LOG_COLUMNS
from flowsight.store.migrations import PG_TEXT, migrate
from flowsight.store.perf import FOLD, ROLLUP_COLUMNS
from flowsight.store.sql import SqlStore

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x666C6F77  # "flow": one migrator at a time across replicas
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# one statement per table whatever the batch: arrays, one per column
_INSERT_EVENTS = (
    "INSERT INTO events (id, ts, kind, workflow, run_id, step, attrs) "
    "SELECT i, t, k, w, r, s, a::jsonb FROM unnest("
    "%s::text[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) AS u(i, t, k, w, r, s, a) "
    "ON CONFLICT (id) DO NOTHING RETURNING id, seq"
)
_INSERT_LOGS = (
    f"INSERT INTO logs ({LOG_COLUMNS}) "
    "SELECT * FROM unnest(%s::text[], %s::float8[], %s::int2[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::text[]) ON CONFLICT (id) DO NOTHING RETURNING id, seq"
)
_LOGS_LOCK = 0x6C6F6773  # "logs": writers of logs take turns, so seqs commit in order
_LOG_TEMPLATES = (
    "UPDATE logs SET template_id = u.t FROM unnest(%s::bigint[], %s::text[]) AS u(s, t) WHERE logs.seq = u.s"
)
_INSERT_SAMPLES = (
    "INSERT INTO perf_samples (ts, scope_kind, scope_id, metric, value) "
    "SELECT * FROM unnest(%s::float8[], %s::text[], %s::text[], %s::text[], %s::float8[])"
)
_INSERT_ROLLUPS = (
    f"INSERT INTO perf_rollups ({ROLLUP_COLUMNS}) SELECT * FROM unnest(%s::int8[], %s::text[], "
    "%s::text[], %s::text[], %s::int8[], %s::float8[], %s::float8[], %s::float8[]) "
    + FOLD.format(lo="LEAST", hi="GREATEST")
)


def _columns(rows: Rows) -> list[list[Any]]:
    """Rows as one list per column (the arrays an ``unnest`` insert takes)."""
    return [list(col) for col in zip(*rows)]


class PostgresDialect(Dialect):
    name = "postgresql"
    param = "%s"
    ilike = "ILIKE"
    tells_other_writers = False
    # writers of events and transitions take turns (seq_turn), so seqs commit in seq order as on SQLite:
    # a reader going forward by seq (the live stream, the rules, the exporters) never skips a commit
    commits_in_seq_order = True
    lock_row = " FOR SHARE"  # a row read so is not changed by another transaction until this one ends
    text_match = (
        "(LOWER(run_id) LIKE ? ESCAPE '\\' OR LOWER(workflow) LIKE ? ESCAPE '\\' "
        "OR LOWER(current_step) LIKE ? ESCAPE '\\' OR LOWER(error) LIKE ? ESCAPE '\\')"
    )
    # raw samples have no key: the row's physical id picks a batch
    purge_samples = (
        "DELETE FROM perf_samples WHERE ctid = ANY(ARRAY(SELECT ctid FROM perf_samples WHERE ts < %s LIMIT %s))"
    )

    def text_condition(self, text: str, read: Read) -> tuple[str, list[Any]]:
        exact, params = super().text_condition(text, read)
        if not self.text_index or len(text) < 3:  # pg_trgm would read its whole index for less
            return exact, params
        # the joined columns hold every column's match: the index's candidates, then the exact match
        return f"({PG_TEXT} LIKE ? AND {exact})", [params[0], *params]

    def take_turn(self, cur: Any, key: int) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    def lock_table(self, cur: Any, table: str) -> None:
        cur.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")

    def lock_runs(self, cur: Any, run_ids: list[str]) -> None:
        # Transaction-scoped advisory locks, taken in sorted order (no deadlock):
        # two replicas writing the same run, even one that has no row yet, take turns.
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(r, 0)) FROM unnest(%s::text[]) AS r ORDER BY r",
            (run_ids,),
        )

    def insert_events(self, cur: Any, rows: Rows) -> dict[str, int]:
        # seqs are drawn at insert: without turns, a later seq could commit first (another replica's,
        # the SDK's) and a reader going forward by seq would skip the earlier one for good
        self.seq_turn(cur)
        cur.execute(_INSERT_EVENTS, _columns(rows))
        return {r[0]: int(r[1]) for r in cur.fetchall()}

    def insert_logs(self, cur: Any, rows: Rows) -> dict[str, int]:
        # ids come from an identity: without turns, a later seq could commit
        # first and a reader going forward by seq would skip the earlier one
        self.take_turn(cur, _LOGS_LOCK)
        cur.execute(_INSERT_LOGS, _columns(rows))
        return {r[0]: int(r[1]) for r in cur.fetchall()}

    def set_log_templates(self, cur: Any, pairs: Sequence[tuple[int, str]]) -> None:
        cur.execute(_LOG_TEMPLATES, ([int(s) for s, _ in pairs], [t for _, t in pairs]))

    def insert_samples(self, cur: Any, raw: Rows, rollups: Rows) -> None:
        cur.execute(_INSERT_SAMPLES, _columns(raw))
        cur.execute(_INSERT_ROLLUPS, _columns(rollups))


class PostgresDatabase(Database):
    """PostgreSQL via psycopg 3. ``schema`` (optional) keeps the tables in
    their own schema, created if missing."""

    def __init__(
        self, dsn: str, *, schema: str | None = None, connect_timeout: float = 10.0, create: bool = True
    ) -> None:
        self.dialect = PostgresDialect()
        super().__init__()
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"PostgreSQL schema {schema!r}: use lower-case letters, digits and _")
        self.dsn = dsn
        self.url = dsn
        self.schema = schema
        self._connect_timeout = int(connect_timeout)
        self._create = create
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"postgresql store: cannot connect to {safe_url(dsn)}: {exc}") from exc
        if create:
            self._migrate()
        else:
            try:
                found = self._conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
                self.require_current(found is not None and found[0] is not None)
            except BaseException:
                self._conn.close()
                raise
        # migration 12 makes it where pg_trgm could be created
        self.dialect.text_index = bool(
            self.read("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'runs_text'")
        )

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, connect_timeout=self._connect_timeout, autocommit=True)
        # No server-side prepared statements (psycopg prepares a query run 5 times): behind a pooler in
        # transaction mode (PgBouncer before 1.21, the default since) the next transaction may be on
        # another server connection, where the statement was never prepared. No measurable cost here.
        conn.prepare_threshold = None
        if self.schema:
            if self._create:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            conn.execute(f"SET search_path TO {self.schema}")
        return conn

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (psycopg.Error,)

    def _disk_full(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.DiskFull)

    @contextmanager
    def write_txn(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            check_fence(self, cur)
            yield cur

    def _migrate(self) -> None:
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                migrate(cur, "postgresql", "%s")
        except psycopg.Error as exc:
            raise MigrationError(f"postgresql store: migration failed: {exc}") from exc

    def notify_commit(self, cur: Any, seq: int) -> None:
        # a wake-up, not a carrier: listeners read the events table (a payload is capped at 8000
        # bytes, and one lost, behind a pooler in transaction mode say, costs a poll's delay only)
        cur.execute("SELECT pg_notify(%s, %s)", (self._channel(), str(seq)))

    def _channel(self) -> str:
        # a channel's name is an identifier (63 bytes at most): a schema's name hashed into it
        if not self.schema:
            return "flowsight_events"
        return f"flowsight_events_{hashlib.sha256(self.schema.encode()).hexdigest()[:16]}"

    def listen_commits(self, on_commit: Callable[[], None]) -> Callable[[], None] | None:
        stop = threading.Event()
        thread = threading.Thread(target=self._listen, args=(on_commit, stop), name="flowsight-listen", daemon=True)
        thread.start()

        def close() -> None:
            stop.set()
            thread.join(5)

        return close

    def _listen(self, on_commit: Callable[[], None], stop: threading.Event) -> None:
        """LISTEN on a connection of its own, reconnecting after a failure; on_commit for each NOTIFY."""
        while not stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {self._channel()}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            on_commit()
            except psycopg.Error as exc:
                log.debug("listening for commits: %s (polling meanwhile)", exc)
                stop.wait(5.0)

    def close(self) -> None:
        with self.lock:
            self._close_readers()
            self._conn.close()


class PostgresStore(SqlStore):
    """A store on a PostgreSQL database (:class:`PostgresDatabase`)."""

    def __init__(
        self, dsn: str, *, schema: str | None = None, connect_timeout: float = 10.0, create: bool = True
    ) -> None:
        super().__init__(PostgresDatabase(dsn, schema=schema, connect_timeout=connect_timeout, create=create))
        self.dsn = dsn
        self.schema = schema
