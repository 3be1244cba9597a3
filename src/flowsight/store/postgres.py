"""PostgreSQL store, for teams and for several ``flowsight serve`` replicas."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from flowsight.errors import ConfigError, MigrationError, StoreError
from flowsight.store.migrations import PG_TEXT, migrate
from flowsight.store.sql import SqlStore, safe_url

_MIGRATION_LOCK = 0x666C6F77  # "flow": one migrator at a time across replicas
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_INSERT_EVENTS = (
    "INSERT INTO events (id, ts, kind, workflow, run_id, step, attrs) "
    "SELECT i, t, k, w, r, s, a::jsonb FROM unnest("
    "%s::text[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) AS u(i, t, k, w, r, s, a) "
    "ON CONFLICT (id) DO NOTHING RETURNING id, seq"
)


class PostgresStore(SqlStore):
    """PostgreSQL via psycopg 3. ``schema`` (optional) keeps the tables in
    their own schema, created if missing."""

    dialect = "postgresql"
    param = "%s"
    _text_match = (
        "(LOWER(run_id) LIKE ? ESCAPE '\\' OR LOWER(workflow) LIKE ? ESCAPE '\\' "
        "OR LOWER(current_step) LIKE ? ESCAPE '\\' OR LOWER(error) LIKE ? ESCAPE '\\')"
    )

    def __init__(
        self, dsn: str, *, schema: str | None = None, connect_timeout: float = 10.0, create: bool = True
    ) -> None:
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
                self._require_current(found is not None and found[0] is not None)
            except BaseException:
                self._conn.close()
                raise
        # migration 12 makes it where pg_trgm could be created
        self._text_index = bool(
            self._read("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'runs_text'")
        )

    def _text_condition(self, text: str) -> tuple[str, list[Any]]:
        exact, params = super()._text_condition(text)
        if not self._text_index or len(text) < 3:  # pg_trgm would read its whole index for less
            return exact, params
        # the joined columns hold every column's match: the index's candidates, then the exact match
        return f"({PG_TEXT} LIKE ? AND {exact})", [params[0], *params]

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, connect_timeout=self._connect_timeout, autocommit=True)
        if self.schema:
            if self._create:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            conn.execute(f"SET search_path TO {self.schema}")
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        return self._conn

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (psycopg.Error,)

    def _disk_full(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.DiskFull)

    @contextmanager
    def _write_txn(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    def _lock_runs(self, cur: psycopg.Cursor[Any], run_ids: list[str]) -> None:
        # Transaction-scoped advisory locks, taken in sorted order (no deadlock):
        # two replicas writing the same run, even one that has no row yet, take turns.
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(r, 0)) FROM unnest(%s::text[]) AS r ORDER BY r",
            (run_ids,),
        )

    def _insert_events(self, cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> dict[str, int]:
        columns = [list(col) for col in zip(*rows)]
        cur.execute(_INSERT_EVENTS, columns)
        return {r[0]: int(r[1]) for r in cur.fetchall()}

    def _migrate(self) -> None:
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                migrate(cur, "postgresql", "%s")
        except psycopg.Error as exc:
            raise MigrationError(f"postgresql store: migration failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._close_readers()
            self._conn.close()
