"""The one ``Store`` interface and the values it returns.

Two implementations share one SQL core (:mod:`flowsight.store.sql`): SQLite
(the embedded default, ``./flowsight.db``) and PostgreSQL (for teams).
:func:`open_store` picks one from a URL, a path or the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flowsight.errors import ConfigError
from flowsight.model.state import StateTransition

if TYPE_CHECKING:
    from flowsight.store.sql import SqlStore

DEFAULT_PATH = "flowsight.db"
ENV_URL = "FLOWSIGHT_DATABASE_URL"


@dataclass(slots=True)
class WriteResult:
    """What a batch write did, per event id."""

    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    transitions: list[StateTransition] = field(default_factory=list)
    #: accepted id -> its place in the store's global order (the stream's resume point)
    seqs: dict[str, int] = field(default_factory=dict)
    #: (workflow, step, seconds) of every step attempt these events completed
    step_durations: list[tuple[str, str, float]] = field(default_factory=list)
    #: (workflow, final state, seconds) of every run these events ended
    run_durations: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def refused_transitions(self) -> list[StateTransition]:
        return [t for t in self.transitions if not t.applied]


def resolve_url(url: str | None = None) -> str:
    """The store URL from an argument, ``FLOWSIGHT_DATABASE_URL``, or the default file."""
    return url or os.environ.get(ENV_URL) or DEFAULT_PATH


def open_store(url: str | None = None, **options: object) -> SqlStore:
    """Open (and migrate) the store named by ``url``.

    ``postgresql://...`` or ``postgres://...`` opens PostgreSQL; ``sqlite:///path``
    or a plain file path opens SQLite.

    Raises:
        ConfigError: the URL names no supported store.
        StoreError: the database could not be opened or migrated.
    """
    target = resolve_url(url)
    if target.startswith(("postgresql://", "postgres://")):
        from flowsight.store.postgres import PostgresStore

        return PostgresStore(target, **options)  # type: ignore[arg-type]
    if "://" in target and not target.startswith("sqlite:"):
        scheme = target.split("://", 1)[0]
        raise ConfigError(
            f"store URL {target!r}: unknown scheme {scheme!r}; use a file path, "
            "sqlite:///path/to/file.db or postgresql://user@host:port/dbname"
        )
    from flowsight.store.sqlite import SqliteStore

    # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db
    if target.startswith("sqlite:") and not target.startswith("sqlite:///"):
        raise ConfigError(
            f"store URL {target!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(three slashes, or four for an absolute path), or just the file path"
        )
    path = target.removeprefix("sqlite:///")
    return SqliteStore(Path(path) if path != ":memory:" else path, **options)  # type: ignore[arg-type]
