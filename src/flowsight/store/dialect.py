"""What differs in SQL between SQLite and PostgreSQL, in one object.

The repositories (:mod:`flowsight.store.runs`, :mod:`~flowsight.store.logs`,
...) write the SQL both databases take alike, with ``?`` placeholders; where
the two differ (a bulk insert that returns ids, taking turns, case-insensitive
matching, deleting in batches) they ask their database's :class:`Dialect`,
so no shared module tests which database it is on.
:class:`flowsight.store.sqlite.SqliteDialect` and
:class:`flowsight.store.postgres.PostgresDialect` are the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

Rows = Sequence[tuple[Any, ...]]
Read = Callable[[str, Sequence[Any]], list[Any]]

#: a LIKE pattern's special characters escaped (``ESCAPE '\\'``)
_LIKE_ESCAPES = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


def like_escape(text: str) -> str:
    """``text`` as a LIKE pattern that matches exactly it (``ESCAPE '\\'``)."""
    return text.translate(_LIKE_ESCAPES)


def like_containing(text: str) -> str:
    """A LIKE pattern (``ESCAPE '\\'``) that matches any text holding ``text``."""
    return "%" + like_escape(text) + "%"


SEQ_TURN = 0x6576656E  # "even": the writers of events and transitions take turns under this key


class Dialect(ABC):
    #: "sqlite" or "postgresql": what ``Store.dialect`` says
    name: str
    lock_row: str  # appended to a SELECT of one row that must not change until the transaction ends
    #: the driver's placeholder
    param: str
    #: the operator of a case-insensitive LIKE (SQLite's LIKE already ignores ASCII case)
    ilike: str
    #: whether :meth:`Database.others_wrote` can tell that nobody else wrote
    #: (SQLite's ``data_version``): then a cache is trusted until it says so
    tells_other_writers: bool
    #: whether rows commit in the order of their seqs (SQLite: one writer at a
    #: time), so a reader at seq N has seen every row below it
    commits_in_seq_order: bool
    #: ``list_runs``' ``text``: a case-insensitive substring of the run id,
    #: the workflow, the current step or the error
    text_match: str
    #: one batch of raw performance samples older than ? (LIMIT ?)
    purge_samples: str

    def __init__(self) -> None:
        #: whether the database has migration 12's text index (set when opened)
        self.text_index = False

    def sql(self, text: str) -> str:
        """``text`` with ``?`` placeholders in the driver's style."""
        return text if self.param == "?" else text.replace("?", self.param)

    def text_condition(self, text: str, read: Read) -> tuple[str, list[Any]]:
        """The condition of list_runs' (lower-cased) ``text``, with its
        parameters: the exact match, which a dialect with a trigram index
        puts behind a condition the index serves (``read`` asks the database)."""
        return self.text_match, [like_containing(text)] * 4

    def seq_turn(self, cur: Any) -> None:
        """Inside a write transaction, before it draws an event's seq or a
        transition's id: writers take turns, so those commit in their order
        (:attr:`commits_in_seq_order`)."""
        self.take_turn(cur, SEQ_TURN)

    @abstractmethod
    def take_turn(self, cur: Any, key: int) -> None:
        """Inside a write transaction: writers holding the same ``key`` take
        turns until it ends (SQLite: ``BEGIN IMMEDIATE`` already does)."""

    @abstractmethod
    def lock_table(self, cur: Any, table: str) -> None:
        """Inside a write transaction: no other writer of ``table`` until it ends."""

    @abstractmethod
    def lock_runs(self, cur: Any, run_ids: list[str]) -> None:
        """Serialise writers of the same runs, even of a run with no row yet."""

    @abstractmethod
    def insert_events(self, cur: Any, rows: Rows) -> dict[str, int]:
        """Insert events, skipping ids already stored; the inserted ids with their seq."""

    @abstractmethod
    def insert_logs(self, cur: Any, rows: Rows) -> dict[str, int]:
        """Insert log entries, skipping ids already stored; the inserted ids with their seq."""

    @abstractmethod
    def set_log_templates(self, cur: Any, pairs: Sequence[tuple[int, str]]) -> None:
        """Give the log entries at these seqs these template ids."""

    @abstractmethod
    def insert_samples(self, cur: Any, raw: Rows, rollups: Rows) -> None:
        """Insert raw performance samples and fold ``rollups`` into their minutes."""
