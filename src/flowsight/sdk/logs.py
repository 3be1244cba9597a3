"""Python logging into flowsight: :class:`LogHandler`.

::

    logging.getLogger().addHandler(flowsight.LogHandler())

    with flowsight.workflow("nightly-etl") as run:
        with run.step("load"):
            log.warning("3 rows skipped")   # stored with workflow, run_id and step "load"

Each record becomes a :class:`~flowsight.logs.entries.LogEntry` (source
``"logging"``) and is handed to the client's log writer, a
:class:`~flowsight.sdk.transport.BatchWriter` of its own beside the one for
events: the caller pays for formatting the record and one queue put, never
for I/O. The writer thread gives each entry its id (time-sortable, from the
record's time, fixed before any write, spool or retry, so a retried batch is
never stored twice) and hands batches to the same destination as the
client's events: the store (``save_logs``) or the server (``POST
/api/v1/logs``, gzip, retries with backoff, through a disk spool of its own,
``<spool>/logs``, bounded like the events' one: the oldest entries go first,
counted and warned about). ``flowsight.flush()`` waits for log entries too.

What the handler never ships, so that it cannot feed itself: records
emitted on the SDK's own threads (its writers and senders, and what httpx or
a database driver logs there), records of the ``flowsight.sdk`` loggers (the
delivery's own warnings; they still reach your other handlers), and a
record emitted while the same thread is inside this handler already.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING

from flowsight.logs.entries import FieldValue, LogEntry, LogLevel
from flowsight.sdk.client import current_run, get_client

# the writer's side, importable here as before (it lives in flowsight.sdk.logsinks, which the client imports)
from flowsight.sdk.logsinks import build_log_records, encode_logs
from flowsight.sdk.logsinks import server_log_sink as server_log_sink, store_log_sink as store_log_sink
from flowsight.sdk.transport import in_sdk_thread

if TYPE_CHECKING:
    from flowsight.sdk.client import Client

__all__ = ["LogHandler", "build_log_records", "encode_logs", "level_of"]

#: the source of every entry the handler makes
SOURCE = "logging"

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_NAMES = ("workflow", "run_id", "step")
_inside = threading.local()


def level_of(levelno: int) -> LogLevel:
    """The level of a ``logging`` level number: CRITICAL is Fatal, ERROR
    Error, WARNING Warn, INFO Info, DEBUG Debug, below DEBUG Trace; a custom
    level counts as the standard one at or below it (25 is Info)."""
    if levelno >= logging.CRITICAL:
        return LogLevel.FATAL
    if levelno >= logging.ERROR:
        return LogLevel.ERROR
    if levelno >= logging.WARNING:
        return LogLevel.WARN
    if levelno >= logging.INFO:
        return LogLevel.INFO
    if levelno >= logging.DEBUG:
        return LogLevel.DEBUG
    return LogLevel.TRACE


def _own(name: object) -> bool:
    return isinstance(name, str) and (name == "flowsight.sdk" or name.startswith("flowsight.sdk."))


class LogHandler(logging.Handler):
    """A ``logging.Handler`` that sends records to flowsight, with the run and
    step they were logged in (module docstring).

    ``client``: where they go; by default the SDK's default client at the
    time of each record (so ``flowsight.configure(...)`` may come after the
    handler is installed).

    The entry: ``timestamp`` ``record.created``; ``level`` by :func:`level_of`;
    ``message`` the record formatted by this handler's formatter (by default
    the message, then the traceback of ``exc_info`` and the ``stack_info``;
    ``logging.basicConfig`` leaves it alone, ``setFormatter`` replaces it);
    ``workflow``, ``run_id``, ``step`` those of the current run
    (:func:`flowsight.current_run`) and its innermost step, unless the record
    carries its own (``extra={"run_id": ...}``: logging from a thread the run
    did not start); ``fields``: ``logger``, ``thread``, ``pid``, ``module``,
    ``function``, ``line``, ``error_type`` with ``exc_info``, and every
    ``extra`` value that is a JSON scalar (str, int, finite float, bool, None).

    ``emit`` never raises: a failure goes to ``handleError`` (logging's
    convention: a traceback on stderr while ``logging.raiseExceptions``).
    """

    def __init__(self, level: int | str = logging.NOTSET, *, client: Client | None = None) -> None:
        super().__init__(level)
        self.client = client
        # A formatter of its own from the start: logging.basicConfig() gives its
        # "LEVEL:name:message" to every handler without one, and level and
        # logger are fields of the entry already.
        self.setFormatter(logging.Formatter())

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(_inside, "active", False) or in_sdk_thread() or _own(record.name):
            return
        _inside.active = True
        try:
            entry = self.make_entry(record)
            (self.client or get_client()).emit_log(entry)
        except RecursionError:  # logging's own handlers re-raise it too
            raise
        except Exception:
            self.handleError(record)
        finally:
            _inside.active = False

    def make_entry(self, record: logging.LogRecord) -> LogEntry:
        """The entry for ``record`` (what `emit` queues)."""
        message = self.format(record)
        workflow = run_id = step = None
        run = current_run()
        if run is not None:
            workflow, run_id, step = run.workflow, run.run_id, run.current_step
        fields: dict[str, FieldValue] = {
            "logger": record.name,
            "thread": record.threadName,
            "pid": record.process,
            "module": record.module,
            "function": record.funcName,
            "line": record.lineno,
        }
        if record.exc_info and record.exc_info[0] is not None:
            fields["error_type"] = record.exc_info[0].__qualname__
        for key, value in record.__dict__.items():
            if key in _STANDARD:
                continue
            if key in _NAMES:
                if isinstance(value, str) and value:
                    if key == "workflow":
                        workflow = value
                    elif key == "run_id":
                        run_id = value
                    else:
                        step = value
                continue
            if (
                value is None
                or isinstance(value, (str, int, bool))
                or (isinstance(value, float) and math.isfinite(value))
            ):
                fields[key] = value
        return LogEntry(record.created, level_of(record.levelno), message, SOURCE, workflow, run_id, step, fields)
