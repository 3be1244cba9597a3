"""The one exception tree of flowsight.

Every error a user can cause says what was wrong and what to do about it.
Driver exceptions (``sqlite3``, ``psycopg``) are translated at the store's
boundary, so callers only ever catch these::

    FlowsightError
     ├── ConfigError              bad option, DSN, environment variable
     ├── EventError               an event refused by the schema (names the field)
     │    ├── LogEntryError       a log entry refused (names the field)
     │    └── AlertError          an alert sent from outside refused (names the field)
     ├── NoSuchRun                a command named a run the store does not have
     ├── TransitionError          a state change the state machine forbids
     ├── StoreError               the database could not do what was asked
     │    ├── MigrationError      the schema could not be brought up to date
     │    ├── NoStoreError        a command that only reads found no store there
     │    └── StoreFullError      no room left to write (a full disk)
     ├── DeliveryError            a notification could not be delivered
     │                            (permanent=True: retrying will not help)
     └── HttpError                a request refused with an HTTP status (a body too
                                  big or not JSON, no token or the wrong scope)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self


class FlowsightError(Exception):
    """Root of every exception flowsight raises on purpose."""


class ConfigError(FlowsightError):
    """A configuration value (flag, environment variable, file) is invalid."""


class EventError(FlowsightError, ValueError):
    """An event was refused. ``field`` names the offending field, ``index`` its
    position in a batch when it came in one. ``rule``: refused by a rule the
    API's schema cannot state (a relation to the server's clock, a nesting
    depth, a number JSON writes but no float holds), where the item is
    otherwise as the OpenAPI document describes it: the HTTP API answers such
    an item sent alone with 422, any other refused one with 400."""

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None, rule: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.index = index
        self.rule = rule

    def in_batch(self, noun: str, index: int) -> Self:
        """The same refusal as item ``index`` of a batch ("event 3: ...")."""
        return type(self)(f"{noun} {index}: {self}", field=self.field, index=index, rule=self.rule)


class LogEntryError(EventError):
    """A log entry sent to ``POST /api/v1/logs`` was refused; ``field`` and
    ``index`` as for :class:`EventError` (the ingest code treats both alike)."""


class AlertError(EventError):
    """An alert sent to ``POST /api/v1/alerts`` was refused; ``field`` and
    ``index`` as for :class:`EventError` (the ingest code treats all alike)."""


class NoSuchRun(FlowsightError):
    """A command named a run that is not in the store (the CLI exits 1)."""


class TransitionError(FlowsightError):
    """A state change that the table of allowed transitions forbids.
    ``allowed``: the states the table allows from ``old`` (given by whoever
    checked the table, :mod:`flowsight.model.runs.state`, which this module does
    not import)."""

    def __init__(self, run_id: str, old: str, new: str, *, allowed: Iterable[str]) -> None:
        nexts = sorted(allowed)
        super().__init__(
            f"run {run_id!r}: illegal transition {old} -> {new}; "
            f"allowed from {old}: {', '.join(nexts) if nexts else 'nothing (terminal state)'}"
        )
        self.run_id = run_id
        self.old_state = old
        self.new_state = new


class StoreError(FlowsightError):
    """The store failed; the message says which operation and why."""


class MigrationError(StoreError):
    """The schema could not be migrated to the version this code needs."""


class NoStoreError(StoreError):
    """A store opened only to read (``create=False``) is not there, or is
    older than this code and would need migrating: nothing was created."""


class StoreFullError(StoreError):
    """A write failed for want of space: the disk under the database is full
    (SQLite's "database or disk is full", PostgreSQL's ``DiskFull``)."""


class FencedError(StoreError):
    """A write of a singleton duty (alerting, detectors, retention, export)
    refused because this server no longer holds the duty's lease: another
    replica took it over (a newer epoch), so what this one would write is
    stale. Nothing of the transaction was written."""


class SingleNodeError(StoreError):
    """A second server on a SQLite file: SQLite is single-node (several
    replicas need PostgreSQL)."""


class DeliveryError(FlowsightError):
    """A receiver did not take a notification. ``permanent`` errors (a 4xx
    other than 429, a command that is not there) mark the receiver broken;
    the others are retried with backoff."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class HttpError(FlowsightError):
    """A request refused as a whole, with the HTTP ``status`` to answer and
    the ``message`` to say (``{"error": message}``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
