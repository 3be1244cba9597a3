"""Small named documents a part of flowsight keeps across restarts (the log
analyzer's templates): :class:`KeptState`, table ``kept_state`` (migration 5).

A document is JSON, written whole (upsert by name) in one transaction.

Raises (every method):
    StoreError: the database failed; nothing of the call was written.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from flowsight.store.database import Database

_UPSERT = (
    "INSERT INTO kept_state (name, value, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


class KeptState:
    """Named documents kept across restarts (``store.kept``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, name: str, value: Any) -> None:
        """Keep ``value`` (JSON-ready data) under ``name``, replacing what was there."""
        text = msgspec.json.encode(value).decode()
        with self._db.txn(f"save of {name}") as cur:
            cur.execute(self._db.sql(_UPSERT), (name, text, time.time()))

    def load(self, name: str) -> Any | None:
        """What :meth:`save` kept under ``name``; None when nothing is."""
        rows = self._db.read("SELECT value FROM kept_state WHERE name = ?", (name,))
        return msgspec.json.decode(rows[0][0]) if rows else None
