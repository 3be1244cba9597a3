"""Versioned schema migrations, applied at start, never destructive.

Each migration is a list of statements per dialect. A migration is applied
once, inside one transaction, and recorded in ``schema_migrations``; a new
version of flowsight only ever appends to :data:`MIGRATIONS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

_SQLITE_V1: Final = [
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        workflow TEXT NOT NULL,
        run_id TEXT NOT NULL,
        step TEXT,
        attrs TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS events_run ON events (run_id, seq)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        start_time REAL,
        end_time REAL,
        current_step TEXT,
        total_steps INTEGER,
        completed_steps INTEGER NOT NULL DEFAULT 0,
        failed_steps INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        last_activity REAL NOT NULL,
        progress_done REAL,
        progress_total REAL,
        error TEXT,
        attrs TEXT NOT NULL DEFAULT '{}',
        step_state TEXT NOT NULL DEFAULT '{}',
        version INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at, run_id)",
    "CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_state ON runs (state, created_at)",
    """CREATE TABLE IF NOT EXISTS transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        ts REAL NOT NULL,
        old_state TEXT NOT NULL,
        new_state TEXT NOT NULL,
        reason TEXT,
        source TEXT,
        applied INTEGER NOT NULL,
        event_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS transitions_run ON transitions (run_id, id)",
]

_PG_V1: Final = [
    """CREATE TABLE IF NOT EXISTS events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        ts DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        workflow TEXT NOT NULL,
        run_id TEXT NOT NULL,
        step TEXT,
        attrs JSONB NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS events_run ON events (run_id, seq)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        start_time DOUBLE PRECISION,
        end_time DOUBLE PRECISION,
        current_step TEXT,
        total_steps INTEGER,
        completed_steps INTEGER NOT NULL DEFAULT 0,
        failed_steps INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        last_activity DOUBLE PRECISION NOT NULL,
        progress_done DOUBLE PRECISION,
        progress_total DOUBLE PRECISION,
        error TEXT,
        attrs JSONB NOT NULL DEFAULT '{}',
        step_state TEXT NOT NULL DEFAULT '{}',
        version BIGINT NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at, run_id)",
    "CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_state ON runs (state, created_at)",
    """CREATE TABLE IF NOT EXISTS transitions (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        old_state TEXT NOT NULL,
        new_state TEXT NOT NULL,
        reason TEXT,
        source TEXT,
        applied BOOLEAN NOT NULL,
        event_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS transitions_run ON transitions (run_id, id)",
]

_V2_TOKENS: Final = [
    """CREATE TABLE IF NOT EXISTS tokens (
        name TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL,
        last_used_at DOUBLE PRECISION
    )""",
]


def _v3_alerting(serial: str, bigint: str) -> list[str]:
    """Alerting: the manager's alerts (with who is owed "resolved"), silences,
    the outbox, the log of delivery attempts, broken receivers. ``serial``:
    an id that only grows and is never reused (per receiver, outbox order is
    id order; log rows point at outbox ids)."""
    return [
        """CREATE TABLE IF NOT EXISTS alerts (
            fingerprint TEXT PRIMARY KEY,
            labels TEXT NOT NULL,
            annotations TEXT NOT NULL,
            severity TEXT NOT NULL,
            source TEXT NOT NULL,
            status TEXT NOT NULL,
            starts_at DOUBLE PRECISION NOT NULL,
            ends_at DOUBLE PRECISION,
            link TEXT,
            told TEXT NOT NULL DEFAULT '[]',
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS silences (
            id TEXT PRIMARY KEY,
            matchers TEXT NOT NULL,
            starts_at DOUBLE PRECISION NOT NULL,
            ends_at DOUBLE PRECISION NOT NULL,
            created_by TEXT NOT NULL,
            comment TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS silences_updated ON silences (updated_at)",
        f"""CREATE TABLE IF NOT EXISTS outbox (
            id {serial},
            receiver TEXT NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            body TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
            last_error TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, receiver, id)",
        f"""CREATE TABLE IF NOT EXISTS notification_log (
            id {serial},
            outbox_id {bigint} NOT NULL,
            receiver TEXT NOT NULL,
            group_key TEXT NOT NULL,
            fingerprints TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            attempt INTEGER NOT NULL,
            result TEXT NOT NULL CHECK (result IN ('ok', 'temporary', 'permanent')),
            error TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS notification_log_receiver ON notification_log (receiver, id)",
        """CREATE TABLE IF NOT EXISTS receivers (
            name TEXT PRIMARY KEY,
            broken_since DOUBLE PRECISION NOT NULL,
            broken_reason TEXT NOT NULL
        )""",
    ]


def _v4_logs(seq: str, real: str, small: str) -> list[str]:
    """Log entries (see :mod:`flowsight.store.logs`). ``seq`` only grows and
    is never reused, even after every row was purged: it is the cursor of
    readers that come back later. ``level`` is the level's rank (0 trace ..
    5 fatal), so "at least warn" is a range on a small integer. The run and
    template indexes are partial: lines from no run, and lines not yet
    given a template, cost no entry in them."""
    return [
        f"""CREATE TABLE IF NOT EXISTS logs (
            seq {seq},
            id TEXT NOT NULL UNIQUE,
            ts {real} NOT NULL,
            level {small} NOT NULL,
            message TEXT NOT NULL,
            source TEXT NOT NULL,
            workflow TEXT,
            run_id TEXT,
            step TEXT,
            template_id TEXT,
            fields TEXT NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX IF NOT EXISTS logs_run ON logs (run_id, seq) WHERE run_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS logs_ts ON logs (ts)",
        "CREATE INDEX IF NOT EXISTS logs_level ON logs (level, ts)",
        "CREATE INDEX IF NOT EXISTS logs_template ON logs (template_id, seq) WHERE template_id IS NOT NULL",
        # what the server's analyzer has still to read: small, it only holds the newest lines
        "CREATE INDEX IF NOT EXISTS logs_untemplated ON logs (seq) WHERE template_id IS NULL",
    ]


_V5_STATE = [
    """CREATE TABLE IF NOT EXISTS kept_state (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
]


def _v6_faults(serial: str, real: str) -> list[str]:
    """The fault history: one row per fault from its declaration to its
    resolution; at most one open row per fault (``fault_key``: detector,
    kind, target), which the partial unique index settles. ``fault_runs``:
    the runs each fault hurt."""
    return [
        f"""CREATE TABLE IF NOT EXISTS faults (
            id {serial},
            fault_key TEXT NOT NULL,
            detector TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            message TEXT NOT NULL,
            evidence TEXT NOT NULL DEFAULT '{{}}',
            workflows TEXT NOT NULL DEFAULT '[]',
            runs TEXT NOT NULL DEFAULT '[]',
            severity TEXT NOT NULL,
            opened_at {real} NOT NULL,
            last_seen_at {real} NOT NULL,
            resolved_at {real}
        )""",
        "CREATE UNIQUE INDEX IF NOT EXISTS faults_open ON faults (fault_key) WHERE resolved_at IS NULL",
        "CREATE INDEX IF NOT EXISTS faults_opened ON faults (opened_at)",
        "CREATE INDEX IF NOT EXISTS faults_key ON faults (fault_key, opened_at)",
        """CREATE TABLE IF NOT EXISTS fault_runs (
            fault_id BIGINT NOT NULL,
            run_id TEXT NOT NULL,
            PRIMARY KEY (fault_id, run_id)
        )""",
        "CREATE INDEX IF NOT EXISTS fault_runs_run ON fault_runs (run_id)",
    ]


def _v7_outputs(real: str) -> list[str]:
    """Files runs registered as their outputs (``output`` events), the last
    registration of each path: what the integrity detector checks them
    against (``registered = true``)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS outputs (
            path TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            size BIGINT,
            mtime {real},
            workflow TEXT NOT NULL,
            run_id TEXT NOT NULL,
            step TEXT,
            recorded_at {real} NOT NULL,
            event_id TEXT NOT NULL
        )""",
    ]


def _v8_perf(real: str) -> list[str]:
    """Performance samples (see :mod:`flowsight.store.perf`): the raw samples
    of each scope's metrics, and their 1-minute rollups (``minute``: the
    minute's start, whole seconds since the epoch). The ``ts`` and ``minute``
    indexes serve retention (and the scopes listing): without them a purge
    scans the table."""
    return [
        f"""CREATE TABLE IF NOT EXISTS perf_samples (
            ts {real} NOT NULL,
            scope_kind TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            metric TEXT NOT NULL,
            value {real} NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS perf_samples_series ON perf_samples (scope_kind, scope_id, metric, ts)",
        "CREATE INDEX IF NOT EXISTS perf_samples_ts ON perf_samples (ts)",
        f"""CREATE TABLE IF NOT EXISTS perf_rollups (
            minute BIGINT NOT NULL,
            scope_kind TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            metric TEXT NOT NULL,
            count BIGINT NOT NULL,
            sum {real} NOT NULL,
            min {real} NOT NULL,
            max {real} NOT NULL,
            PRIMARY KEY (scope_kind, scope_id, metric, minute)
        )""",
        "CREATE INDEX IF NOT EXISTS perf_rollups_minute ON perf_rollups (minute)",
    ]


_V9_RUN_READS: Final = [
    # the overview's reads (see flowsight.store.runstats): runs counted by
    # workflow and state, and a workflow's latest completed runs, from this
    # index alone
    "CREATE INDEX IF NOT EXISTS runs_workflow_state_end ON runs (workflow, state, end_time, start_time, run_id)",
]
# SQLite: the runs list's search (list_runs' text) scans this index instead
# of the rows; it serves the newest-first order as runs_created did, which it
# replaces. (Not on PostgreSQL: a long error would not fit a btree entry.)
_SQLITE_V9: Final = [
    *_V9_RUN_READS,
    "CREATE INDEX IF NOT EXISTS runs_search ON runs (created_at, run_id, workflow, current_step, error)",
    "DROP INDEX IF EXISTS runs_created",
]


_V10_RUN_COUNTS: Final = [
    # runs per workflow and state, kept by the transactions that write the
    # runs (flowsight.store.sql): the overview reads it instead of counting
    """CREATE TABLE IF NOT EXISTS run_counts (
        workflow TEXT NOT NULL,
        state TEXT NOT NULL,
        runs BIGINT NOT NULL,
        PRIMARY KEY (workflow, state)
    )""",
    "INSERT INTO run_counts (workflow, state, runs) SELECT workflow, state, COUNT(*) FROM runs GROUP BY workflow, state",
]


_V11_RUN_CHANGES: Final = [
    # grows with every transaction that changes which runs of a workflow are
    # in a state, or writes to an ended run: what the overview, the trends and
    # the workflow histories computed from those runs are cached against
    # (flowsight.store.runstats)
    "ALTER TABLE run_counts ADD COLUMN changes BIGINT NOT NULL DEFAULT 0",
]

# SQLite: the runs list's search (list_runs' text) finds its candidates in a
# trigram index (FTS5, SQLite >= 3.34) of the searched columns, kept by
# triggers that fire only when a searched column really changes; the rows are
# then checked with the exact match. runs_search, scanned by the search
# before and rewritten at every write of a run, goes; runs_created (whose
# columns never change) serves the newest-first order again.
_SQLITE_V12_TEXT: Final = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS runs_text USING fts5(run_id, workflow, current_step, error, "
    "content='runs', content_rowid='rowid', tokenize='trigram')",
    """CREATE TRIGGER IF NOT EXISTS runs_text_insert AFTER INSERT ON runs BEGIN
        INSERT INTO runs_text (rowid, run_id, workflow, current_step, error)
        VALUES (new.rowid, new.run_id, new.workflow, new.current_step, new.error);
    END""",
    """CREATE TRIGGER IF NOT EXISTS runs_text_delete AFTER DELETE ON runs BEGIN
        INSERT INTO runs_text (runs_text, rowid, run_id, workflow, current_step, error)
        VALUES ('delete', old.rowid, old.run_id, old.workflow, old.current_step, old.error);
    END""",
    """CREATE TRIGGER IF NOT EXISTS runs_text_update AFTER UPDATE OF current_step, error ON runs
    WHEN old.current_step IS NOT new.current_step OR old.error IS NOT new.error BEGIN
        INSERT INTO runs_text (runs_text, rowid, run_id, workflow, current_step, error)
        VALUES ('delete', old.rowid, old.run_id, old.workflow, old.current_step, old.error);
        INSERT INTO runs_text (rowid, run_id, workflow, current_step, error)
        VALUES (new.rowid, new.run_id, new.workflow, new.current_step, new.error);
    END""",
    "INSERT INTO runs_text (runs_text) VALUES ('rebuild')",
    "DROP INDEX IF EXISTS runs_search",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at, run_id)",
]


def sqlite_has_trigram(cur: Any) -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer (3.34 and newer)."""
    try:
        cur.execute("CREATE VIRTUAL TABLE temp.flowsight_probe USING fts5(x, tokenize='trigram')")
        cur.execute("DROP TABLE temp.flowsight_probe")
    except Exception:  # noqa: BLE001 - sqlite3.OperationalError: no fts5, or no trigram tokenizer
        return False
    return True


def _sqlite_v12(cur: Any) -> None:
    """Without FTS5's trigram tokenizer the search keeps scanning (runs_search stays)."""
    if sqlite_has_trigram(cur):
        for stmt in _SQLITE_V12_TEXT:
            cur.execute(stmt)


#: PostgreSQL: the searched columns, lower-cased and joined, in a pg_trgm GIN
#: index; list_runs' text adds ``PG_TEXT LIKE pattern`` so the index finds the
#: candidates (the concatenation holds every column's match)
PG_TEXT = "LOWER(run_id || chr(1) || workflow || chr(1) || COALESCE(current_step, '') || chr(1) || COALESCE(error, ''))"


def _pg_v12(cur: Any) -> None:
    """pg_trgm is a trusted extension (PostgreSQL 13+: a database owner may
    create it); where it cannot be created, the search keeps scanning."""
    cur.execute("SAVEPOINT flowsight_trgm")
    try:
        cur.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
        row = cur.fetchone()
        if row is None:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
            schema = "public"
        else:
            schema = row[0]
        cur.execute(f'CREATE INDEX IF NOT EXISTS runs_text ON runs USING gin ({PG_TEXT} "{schema}".gin_trgm_ops)')
    except Exception:  # noqa: BLE001 - psycopg.Error: not available or not allowed
        cur.execute("ROLLBACK TO SAVEPOINT flowsight_trgm")
    cur.execute("RELEASE SAVEPOINT flowsight_trgm")


Statement: TypeAlias = str | Callable[[Any], None]

#: (version, name, {dialect: statements}); a statement is SQL, or a function
#: of the cursor for what depends on the database's features
_V13_ALERTS_UPDATED = ["CREATE INDEX IF NOT EXISTS alerts_updated ON alerts (updated_at)"]
_V14_SCHEDULES = [
    # a workflow's expectations set through the API, the SDK or flowsight.toml (source)
    """CREATE TABLE IF NOT EXISTS schedules (
        workflow TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        source TEXT NOT NULL,
        since DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    # each expected slot's judgement (ok, late, missed, ...), as last judged
    """CREATE TABLE IF NOT EXISTS schedule_slots (
        workflow TEXT NOT NULL,
        slot_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        doc TEXT NOT NULL,
        judged_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (workflow, slot_at)
    )""",
    # when a server was watching (its heartbeat): a slot nobody watched is unknown, not missed
    """CREATE TABLE IF NOT EXISTS watch_spans (
        process TEXT PRIMARY KEY,
        started_at DOUBLE PRECISION NOT NULL,
        until DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS watch_spans_until ON watch_spans (until)",
]

_V15_SPAN_LINKS = [
    # each mapped OpenTelemetry span's run and step (step NULL: the run's own span)
    """CREATE TABLE IF NOT EXISTS otel_spans (
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        workflow TEXT NOT NULL,
        run_id TEXT NOT NULL,
        step TEXT,
        ts DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (trace_id, span_id)
    )""",
    # OTLP log records whose span was not linked yet when they came
    """CREATE TABLE IF NOT EXISTS otel_pending (
        log_id TEXT PRIMARY KEY,
        trace_id TEXT NOT NULL,
        span_id TEXT,
        ts DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS otel_pending_trace ON otel_pending (trace_id)",
]

_V16_EXPORTED_RUNS = [
    # the ended runs each exporter ([export.otlp]) was handed, through the outbox
    """CREATE TABLE IF NOT EXISTS exported_runs (
        exporter TEXT NOT NULL,
        run_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (exporter, run_id)
    )""",
    "CREATE INDEX IF NOT EXISTS exported_runs_at ON exported_runs (at)",
]

_V17_LEASES = [
    # who leads each singleton duty of a group of servers on one database, and since which epoch
    # (the fencing token: one more at every change of holder); times are the database's clock
    """CREATE TABLE IF NOT EXISTS leases (
        duty TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        since DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    # the servers on the database (a row per process: token), as their heartbeats last said
    """CREATE TABLE IF NOT EXISTS replicas (
        token TEXT PRIMARY KEY,
        replica_id TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        version TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL,
        stopped_at DOUBLE PRECISION
    )""",
]

MIGRATIONS: Final[list[tuple[int, str, dict[str, Sequence[Statement]]]]] = [
    (1, "events, runs, transitions", {"sqlite": _SQLITE_V1, "postgresql": _PG_V1}),
    (2, "API tokens", {"sqlite": _V2_TOKENS, "postgresql": _V2_TOKENS}),
    (
        3,
        "alerts, silences, outbox, notification log, receivers",
        {
            "sqlite": _v3_alerting("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
            "postgresql": _v3_alerting("BIGSERIAL PRIMARY KEY", "BIGINT"),
        },
    ),
    (
        4,
        "log entries",
        {
            "sqlite": _v4_logs("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "INTEGER"),
            "postgresql": _v4_logs("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "DOUBLE PRECISION", "SMALLINT"),
        },
    ),
    (5, "kept state (the log analyzer's templates)", {"sqlite": _V5_STATE, "postgresql": _V5_STATE}),
    (
        6,
        "fault history",
        {
            "sqlite": _v6_faults("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL"),
            "postgresql": _v6_faults("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "DOUBLE PRECISION"),
        },
    ),
    (7, "registered outputs", {"sqlite": _v7_outputs("REAL"), "postgresql": _v7_outputs("DOUBLE PRECISION")}),
    (8, "performance samples", {"sqlite": _v8_perf("REAL"), "postgresql": _v8_perf("DOUBLE PRECISION")}),
    (9, "indexes for the overview's reads", {"sqlite": _SQLITE_V9, "postgresql": _V9_RUN_READS}),
    (10, "runs counted per workflow and state", {"sqlite": _V10_RUN_COUNTS, "postgresql": _V10_RUN_COUNTS}),
    (11, "changes of the runs counted", {"sqlite": _V11_RUN_CHANGES, "postgresql": _V11_RUN_CHANGES}),
    (12, "trigram index of the runs' searched text", {"sqlite": [_sqlite_v12], "postgresql": [_pg_v12]}),
    (
        13,
        "alerts by when they were stored (a server takes in what other processes stored)",
        {"sqlite": _V13_ALERTS_UPDATED, "postgresql": _V13_ALERTS_UPDATED},
    ),
    (
        14,
        "schedules: expectations, slot judgements, watch spans",
        {"sqlite": _V14_SCHEDULES, "postgresql": _V14_SCHEDULES},
    ),
    (
        15,
        "OpenTelemetry spans' runs and steps, log records waiting for theirs",
        {"sqlite": _V15_SPAN_LINKS, "postgresql": _V15_SPAN_LINKS},
    ),
    (16, "ended runs handed to exporters", {"sqlite": _V16_EXPORTED_RUNS, "postgresql": _V16_EXPORTED_RUNS}),
    (17, "leases of the singleton duties, the replicas", {"sqlite": _V17_LEASES, "postgresql": _V17_LEASES}),
]

LATEST: Final = MIGRATIONS[-1][0]


def migrate(cur: Any, dialect: str, param: str) -> list[int]:
    """Apply, inside the caller's transaction, every migration not yet applied;
    returns the versions applied. The caller holds whatever lock keeps two
    migrators apart."""
    cur.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    )
    cur.execute("SELECT version FROM schema_migrations")
    have = {row[0] for row in cur.fetchall()}
    applied = []
    for version, name, stmts in MIGRATIONS:
        if version in have:
            continue
        for stmt in stmts[dialect]:
            if callable(stmt):
                stmt(cur)
            else:
                cur.execute(stmt)
        cur.execute(f"INSERT INTO schema_migrations VALUES ({param}, {param}, {param})", (version, name, time.time()))
        applied.append(version)
    return applied
