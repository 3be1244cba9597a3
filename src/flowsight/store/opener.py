"""A store from a URL, a path or the environment: :func:`open_store`.

SQLite (the embedded default, ``./flowsight.db``) or PostgreSQL (for teams).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flowsight.errors import ConfigError
from flowsight.store.base import resolve_url

if TYPE_CHECKING:
    from flowsight.store.sql import SqlStore


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
