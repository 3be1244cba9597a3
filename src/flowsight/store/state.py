"""Small named documents a part of flowsight keeps across restarts (the log
analyzer's templates): :class:`StateMixin`, table ``kept_state`` (migration 5).

A document is JSON, written whole (upsert by name) in one transaction.

Raises (every method):
    StoreError: the database failed; nothing of the call was written.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import msgspec

_UPSERT = (
    "INSERT INTO kept_state (name, value, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


class StateMixin(ABC):
    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def _txn(self, what: str) -> AbstractContextManager[Any]: ...

    @abstractmethod
    def _sql(self, text: str) -> str: ...

    def save_state(self, name: str, value: Any) -> None:
        """Keep ``value`` (JSON-ready data) under ``name``, replacing what was there."""
        text = msgspec.json.encode(value).decode()
        with self._txn(f"save of {name}") as cur:
            cur.execute(self._sql(_UPSERT), (name, text, time.time()))

    def load_state(self, name: str) -> Any | None:
        """What :meth:`save_state` kept under ``name``; None when nothing is."""
        rows = self._read("SELECT value FROM kept_state WHERE name = ?", (name,))
        return msgspec.json.decode(rows[0][0]) if rows else None
