"""Persistence: SQLite or PostgreSQL behind one :class:`Store`, a repository per area."""

from __future__ import annotations

from flowsight.store.base import DEFAULT_PATH, ENV_URL, WriteResult, resolve_url
from flowsight.store.interface import Store
from flowsight.store.opener import open_store
from flowsight.store.runs import Page
from flowsight.store.sql import SqlStore

__all__ = ["DEFAULT_PATH", "ENV_URL", "Page", "SqlStore", "Store", "WriteResult", "open_store", "resolve_url"]
