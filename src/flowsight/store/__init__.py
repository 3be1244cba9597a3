"""Persistence: one interface, SQLite and PostgreSQL behind it."""

from __future__ import annotations

from flowsight.store.base import DEFAULT_PATH, ENV_URL, WriteResult, open_store, resolve_url
from flowsight.store.sql import Page, SqlStore

Store = SqlStore

__all__ = ["DEFAULT_PATH", "ENV_URL", "Page", "SqlStore", "Store", "WriteResult", "open_store", "resolve_url"]
