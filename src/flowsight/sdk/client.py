"""Instrumenting Python code: ``workflow()``, ``step()``, runs and steps.

::

    with flowsight.workflow("nightly-etl", total_steps=3) as run:
        with run.step("extract"):
            ...
        run.progress(40, 100)

    @flowsight.workflow("train")
    async def train(): ...

    @flowsight.step("load")
    def load(): ...          # a step of whichever run is current

An exception inside a step records StepFailed (type, message, traceback), one
leaving the run records Failed; both are re-raised. KeyboardInterrupt and
asyncio cancellation record Cancelled.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import functools
import inspect
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar, Token
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flowsight.model.runs.events import EventKind, check_attrs
from flowsight.model.durations import parse_duration
from flowsight.errors import ConfigError
from flowsight.model.runs.ids import new_id
from flowsight.model.runs.events import Event
from flowsight.sdk.transport import BatchWriter, Raw, Sink, StoreSink, build_events, prune_events, write_events
from flowsight.store.base import resolve_url
from flowsight.store.opener import open_store

if TYPE_CHECKING:  # httpx is imported only by a client that sends to a server; logging's parts on first use
    import httpx

    from flowsight.logs.records import LogRecord
    from flowsight.logs.entries import LogEntry
    from flowsight.model.schedules import Expectations
    from flowsight.sdk.http import HttpOptions

#: the server to send to (flowsight.sdk.http.ENV_URL; repeated to keep httpx out of every import)
ENV_SERVER_URL = "FLOWSIGHT_URL"

F = TypeVar("F", bound=Callable[..., Any])

_current_run: ContextVar[Run | None] = ContextVar("flowsight_run", default=None)
_time_ns = time.time_ns
_K = EventKind
_K_STEP_STARTED = EventKind.STEP_STARTED
_K_STEP_COMPLETED = EventKind.STEP_COMPLETED


class Client:
    """Where the SDK's events go, through one background writer: a store
    (local file or PostgreSQL), or a ``flowsight serve`` over HTTP with a disk
    spool. Most code uses the default client; tests and embedders make their own.
    Log entries (:class:`flowsight.LogHandler`, :meth:`emit_log`) go to the
    same place through a second writer, made when the first entry comes.

    The target: ``url`` if given (``db`` is then ignored), else ``db`` if given,
    else ``$FLOWSIGHT_URL``, else the store named by ``$FLOWSIGHT_DATABASE_URL``
    (default ``./flowsight.db``). With a server, ``token`` defaults to
    ``$FLOWSIGHT_TOKEN``; ``spool_dir`` (a root: each server URL gets its own
    directory below it) to ``$FLOWSIGHT_SPOOL_DIR`` or ``~/.cache/flowsight/spool``;
    ``spool_max_bytes`` to 100 MiB. ``http`` tunes timeouts and retries and
    ``http_transport`` replaces httpx's (tests).

    Raises:
        ConfigError: a bad URL or retention, or a spool directory that cannot be used.
    """

    def __init__(
        self,
        db: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        batch_size: int | None = None,
        linger: float | None = None,
        retention: str | float | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int | None = None,
        http: HttpOptions | None = None,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if url is None and db is None:
            url = os.environ.get(ENV_SERVER_URL) or None
        self.url: str | None = None
        self.db: str | None = None
        self._token: str | None = None
        sink: Sink[Event]
        make_log_sink: Callable[[], Sink[LogRecord]]
        if url is not None:
            from flowsight.sdk.http import ENV_TOKEN, HttpOptions, HttpSink

            opts = http or HttpOptions()
            if spool_max_bytes is not None:
                opts = dataclasses.replace(opts, spool_max_bytes=spool_max_bytes)
            token = token if token is not None else os.environ.get(ENV_TOKEN)
            http_sink: HttpSink[Event] = HttpSink(
                url, token, options=opts, spool_root=spool_dir, transport=http_transport
            )
            self.url = server = http_sink.servers  # one server, or several replicas: URL,URL,...
            self._token = token
            sink = http_sink
            # a request per batch: fewer, bigger ones (the server takes 10,000 events a request by default)
            batch_size, linger = batch_size or 2000, 0.25 if linger is None else linger

            def make_log_sink() -> Sink[LogRecord]:
                from flowsight.sdk.logsinks import server_log_sink

                return server_log_sink(server, token, options=opts, spool_root=spool_dir, transport=http_transport)

            from flowsight.sdk.http import spool_key
            from flowsight.sdk.spool import log_spool_dir

            self._log_spool: Path | None = log_spool_dir(spool_key(server), spool_dir)
        else:
            self.db = db_url = resolve_url(db)
            keep = retention_seconds(retention)
            sink = StoreSink(lambda: open_store(db_url), write=write_events, prune=prune_events, retention=keep)

            def make_log_sink() -> Sink[LogRecord]:
                from flowsight.sdk.logsinks import store_log_sink

                return store_log_sink(db_url, keep)

            self._log_spool = None
        self._batch_size = batch_size or 5000
        self._linger = linger or 0.0
        self.writer: BatchWriter[Raw, Event] = BatchWriter(
            sink, build=build_events, batch_size=self._batch_size, linger=self._linger
        )
        self._put = self.writer.put
        self._make_log_sink = make_log_sink
        self._logs: BatchWriter[LogEntry, LogRecord] | None = None
        self._logs_lock = threading.Lock()
        self._started = False
        #: the same client anew, to the same place (for a forked child, where this one's threads,
        #: and its connections, are not its own)
        self.remake: Callable[[], Client] = functools.partial(
            Client, self.db, url=self.url, token=self._token, batch_size=batch_size, linger=linger,
            retention=retention, spool_dir=spool_dir, spool_max_bytes=spool_max_bytes, http=http,
        )  # fmt: skip

    def start(self) -> None:
        """Start the background writer (done by the first run, or by
        :func:`configure` for a server, to send what earlier processes
        spooled — log entries too); what it holds is flushed at interpreter exit."""
        if not self._started:
            self._started = True
            self.writer.start()
            atexit.register(self.close)
            if self._log_spool is not None and _has_segments(self._log_spool):
                self._open_logs()
        if self._logs is not None:
            self._logs.start()

    @property
    def log_writer(self) -> BatchWriter[LogEntry, LogRecord]:
        """The writer of log entries, made (and the client started) on first use."""
        logs = self._logs
        if logs is None:
            logs = self._open_logs()
            self.start()
        return logs

    def _open_logs(self) -> BatchWriter[LogEntry, LogRecord]:
        with self._logs_lock:
            if self._logs is None:
                from flowsight.sdk.logsinks import build_log_records

                self._logs = BatchWriter(
                    self._make_log_sink(),
                    build=build_log_records,
                    batch_size=self._batch_size,
                    linger=self._linger,
                    name="flowsight-log-writer",
                )
            return self._logs

    def expect(self, workflow: str, **fields: Any) -> Expectations:
        """Set what ``workflow`` is expected to do and when, where this client
        sends its events (a server: ``PUT /api/v1/schedules/NAME``; a store:
        kept in it). ``fields``: ``schedule`` (cron) or ``every``, ``timezone``,
        ``start_grace``, ``max_runtime``, ``min_runtime``, ``deadline``,
        ``failures_before_alert``, ``steps`` (docs/schedules.md). Checked here first.

        Raises:
            ExpectationError: a field is wrong (each one said, with its field).
            ConfigError: the server refused them (the workflow's are in its flowsight.toml, a bad token).
            StoreError: the store could not be written.
        """
        from flowsight.model.schedules import make_expectations

        exp = make_expectations(workflow, fields)
        if self.url is not None:
            from urllib.parse import quote

            import httpx

            from flowsight.sdk.http import normalize_urls

            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            failed: list[str] = []
            for url in normalize_urls(self.url):  # several replicas: the next when one cannot be reached
                try:
                    r = httpx.put(
                        f"{url}/api/v1/schedules/{quote(workflow, safe='')}",
                        json=exp.to_doc(),
                        headers=headers,
                        timeout=10.0,
                    )
                except httpx.HTTPError as exc:
                    failed.append(f"{url}: {exc}")
                    continue
                if r.status_code != 200:
                    raise ConfigError(f"{url} refused the expectations of {workflow!r} ({r.status_code}): {_said(r)}")
                return exp
            raise ConfigError(f"the expectations of {workflow!r} could not be sent: {'; '.join(failed)}")
        with open_store(self.db) as store:
            store.schedules.set_expectation(workflow, exp.to_doc(), "api", time.time())
        return exp

    def emit_log(self, entry: LogEntry) -> None:
        """Queue one log entry (it gets its id on the writer thread, from its
        time); never blocks on I/O but the first time, which opens the spool
        directory of a server."""
        logs = self._logs
        (logs if logs is not None else self.log_writer).put(entry)

    def send(self, event: Event) -> None:
        """Queue an event made whole, with its own id (an engine integration's:
        the same fact delivered twice has the same id, and counts once)."""
        self._put(event)

    def emit(
        self, kind: EventKind, workflow: str, run_id: str, step: str | None = None, attrs: dict[str, Any] | None = None
    ) -> None:
        """Queue one event: a clock read and a queue put."""
        self._put((_time_ns(), kind, workflow, run_id, step, attrs))

    def flush(self, timeout: float | None = 30.0, *, spooled: bool = False) -> bool:
        """Block until everything emitted so far (events, then log entries) is
        stored — with a server: acknowledged by it (accepted, duplicate or
        rejected there), or with ``spooled`` only safe in the disk spool (a
        process about to end: the spool is sent by the next one). False when
        ``timeout`` ran out first; for a server, what was not acknowledged is
        safe in the spool by then (unless the writer was still behind) and is
        sent when the server answers."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.writer.flush(timeout, handed=spooled)
        logs = self._logs
        if logs is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = logs.flush(left, handed=spooled) and done
        return done

    def close(self) -> None:
        """Flush and stop the writers (safe to call more than once). With a
        server: everything goes to the spool, then sending goes on for up to
        a few seconds while the server answers; the rest is sent by the next
        process that reports to the same URL."""
        self.writer.stop()
        if self._logs is not None:
            self._logs.stop()
        if self._started:
            atexit.unregister(self.close)
            self._started = False


def _has_segments(directory: Path) -> bool:
    """Whether an earlier process left spooled batches in ``directory``."""
    from flowsight.sdk.spool import SUFFIX

    try:
        with os.scandir(directory) as entries:
            return any(e.name.endswith(SUFFIX) for e in entries)
    except OSError:
        return False


DEFAULT_RETENTION = "30d"
ENV_RETENTION = "FLOWSIGHT_RETENTION"


def retention_seconds(value: str | float | None) -> float | None:
    """Seconds events are kept: ``value``, else ``FLOWSIGHT_RETENTION``, else 30 days;
    ``off`` (or 0) keeps them for ever.

    Raises:
        ConfigError: not a duration.
    """
    if value is None:
        value = os.environ.get(ENV_RETENTION, DEFAULT_RETENTION)
    if isinstance(value, str) and value.strip().lower() in ("off", "never", "none", ""):
        return None
    seconds = parse_duration(value, what=ENV_RETENTION if isinstance(value, str) else "retention")
    return seconds or None


_default: Client | None = None
#: how get_client makes the default client: Client(), or the parent's anew in a forked child
_remake: Callable[[], Client] = Client
_default_lock = threading.Lock()


def configure(db: str | None = None, *, url: str | None = None, token: str | None = None, **options: Any) -> Client:
    """Point the SDK at a store or a server.

    ``db``: a file path, ``sqlite:///...`` or ``postgresql://...``. ``url``: a
    ``flowsight serve`` (``http://host:8640``), which wins over ``db``; ``token``
    its API token (default ``FLOWSIGHT_TOKEN``). With neither, ``FLOWSIGHT_URL``,
    else ``FLOWSIGHT_DATABASE_URL``, else ``./flowsight.db``. ``options`` go to
    :class:`Client` (``spool_dir``, ``spool_max_bytes``, ``batch_size``, ...).
    Events queued for the previous target are flushed to it first. A client for
    a server starts at once, to send what earlier processes left in its spool.
    """
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = Client(db, url=url, token=token, **options)
        if _default.url is not None:
            _default.start()
        return _default


def _remake_after_fork() -> None:
    """In a forked child (a Celery or Airflow worker's task process) the
    default client's threads are gone: the child gets the same client anew
    (started when first used), and does not close its parent's at exit."""
    global _default, _default_lock, _remake
    _default_lock = threading.Lock()
    old, _default = _default, None
    if old is not None:
        if old._started:
            atexit.unregister(old.close)
        _remake = old.remake  # made when first asked for: nothing heavy between fork and exec


os.register_at_fork(after_in_child=_remake_after_fork)


def get_client() -> Client:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = _remake()
    return _default


def expect(workflow: str, **fields: Any) -> Expectations:
    """:meth:`Client.expect` on the default client: ``flowsight.expect("nightly",
    schedule="0 2 * * *", timezone="Europe/Copenhagen", max_runtime="2h")``."""
    return get_client().expect(workflow, **fields)


def _said(r: httpx.Response) -> str:
    """What a server's error answer says."""
    try:
        return str(r.json().get("error", r.text))
    except ValueError:
        return r.text[:200]


def flush(timeout: float | None = 30.0) -> bool:
    """Store everything the default client has queued."""
    return _default.flush(timeout) if _default is not None else True


def _error_attrs(exc: BaseException) -> dict[str, Any]:
    return {
        "error": str(exc) or type(exc).__name__,
        "error_type": type(exc).__qualname__,
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _cancelling(exc: BaseException) -> bool:
    return isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))


class Step:
    """One step of a run: a context manager (sync or async). Entering and
    leaving one is the SDK's hot path: a clock read and a queue put each."""

    __slots__ = ("run", "name", "_outer")

    def __init__(self, run: Run, name: str) -> None:
        self.run = run
        self.name = name
        self._outer: str | None = None

    def __enter__(self) -> Step:
        run = self.run
        run._put((_time_ns(), _K_STEP_STARTED, run.workflow, run.run_id, self.name, None))
        # a plain attribute, not a ContextVar: half the cost on the hot path
        self._outer = run.current_step
        run.current_step = self.name
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        run = self.run
        run.current_step = self._outer
        if exc is None:
            run._put((_time_ns(), _K_STEP_COMPLETED, run.workflow, run.run_id, self.name, None))
        else:
            run._put((_time_ns(), _K.STEP_FAILED, run.workflow, run.run_id, self.name, _error_attrs(exc)))

    async def __aenter__(self) -> Step:
        return self.__enter__()

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.__exit__(et, exc, tb)


class Run:
    """One run of a workflow. Made by :func:`workflow`; ``run_id`` is the
    specification's ``workflow_id``."""

    def __init__(
        self,
        workflow: str,
        *,
        run_id: str | None = None,
        total_steps: int | None = None,
        attrs: dict[str, Any] | None = None,
        client: Client | None = None,
    ) -> None:
        if not workflow:
            raise ValueError("workflow name must not be empty")
        self.workflow = workflow
        self.run_id = run_id or new_id()
        self.total_steps = total_steps
        self.attrs = dict(attrs or {})
        check_attrs(self.attrs)
        self._client = client or get_client()
        self._client.start()
        self._emit_raw = self._client.emit
        self._put = self._client.writer.put
        self._token: Token[Run | None] | None = None
        self.finished = False
        #: the innermost step running in this run (for progress, heartbeats, logs)
        self.current_step: str | None = None

    def _emit(self, kind: EventKind, step: str | None, attrs: dict[str, Any] | None) -> None:
        self._emit_raw(kind, self.workflow, self.run_id, step, attrs)

    # ---- lifecycle -----------------------------------------------------
    def start(self) -> Run:
        attrs = {**self.attrs, "pid": os.getpid(), "host": socket.gethostname()}
        if self.total_steps is not None:
            attrs["total_steps"] = self.total_steps
        self._emit(_K.STARTED, None, attrs)
        return self

    def complete(self) -> None:
        self._finish(_K.COMPLETED, None)

    def fail(self, error: BaseException | str) -> None:
        attrs = _error_attrs(error) if isinstance(error, BaseException) else {"error": str(error)}
        self._finish(_K.FAILED, attrs)

    def cancel(self, reason: str | None = None) -> None:
        self._finish(_K.CANCELLED, {"reason": reason} if reason else None)

    def _finish(self, kind: EventKind, attrs: dict[str, Any] | None) -> None:
        if not self.finished:
            self.finished = True
            self._emit(kind, None, attrs)

    def suspend(self, reason: str | None = None) -> None:
        self._emit(_K.SUSPENDED, None, {"reason": reason} if reason else None)

    def resume(self, reason: str | None = None) -> None:
        self._emit(_K.RESUMED, None, {"reason": reason} if reason else None)

    # ---- inside a run --------------------------------------------------
    def step(self, name: str) -> Step:
        """A step of this run: ``with run.step("load"):`` or ``async with``."""
        return Step(self, name)

    def progress(self, done: float, total: float | None = None) -> None:
        """Units done (of ``total``) inside the running step."""
        attrs: dict[str, Any] = {"done": done}
        if total is not None:
            attrs["total"] = total
        self._emit(_K.PROGRESS, self.current_step, attrs)

    def heartbeat(self) -> None:
        """Say the run is alive when no step has ended for a while."""
        self._emit(_K.HEARTBEAT, self.current_step, None)

    def output(self, path: str | os.PathLike[str]) -> str:
        """Register a file this run (its running step) wrote: its sha256, size
        and mtime go to flowsight as an ``output`` event, and an integrity
        detector with ``registered = true`` reports it as DataCorruption if
        it later changes, shrinks or disappears. Hashes the file here (call it
        once the file is complete). Returns the sum.

        Raises:
            OSError: the file cannot be read.
        """
        from flowsight.outputs import record_output

        full = os.path.abspath(os.fspath(path))
        rec = record_output(full)
        attrs: dict[str, Any] = {"path": full, "sha256": rec.sha256, "size": rec.size, "mtime": rec.mtime}
        self._emit(_K.OUTPUT, self.current_step, attrs)
        return rec.sha256

    def event(self, kind: EventKind | str, step: str | None = None, **attrs: Any) -> None:
        """Any event kind, with attributes (checked: JSON values only)."""
        check_attrs(attrs)
        self._emit(EventKind(kind), step, attrs or None)

    # ---- context manager -----------------------------------------------
    def __enter__(self) -> Run:
        self._token = _current_run.set(self)
        return self.start()

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._token is not None:
            _current_run.reset(self._token)
            self._token = None
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.complete()
        elif _cancelling(exc):
            self._finish(_K.CANCELLED, {"reason": type(exc).__name__})
        else:
            self.fail(exc)

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.__exit__(et, exc, tb)


class _Spec:
    """A context manager (sync or async) and a decorator that opens a fresh
    run or step each time it is entered or the decorated function is called."""

    def __init__(self) -> None:
        self._open_now: list[Run | Step] = []

    def _open(self, func_name: str | None) -> Run | Step:
        raise TypeError("use workflow() or step()")  # each kind of spec says what it opens

    def __enter__(self) -> Any:
        item = self._open(None)
        self._open_now.append(item)
        return item.__enter__()

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._open_now.pop().__exit__(et, exc, tb)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.__exit__(et, exc, tb)

    def __call__(self, func: F) -> F:
        name = func.__name__
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapped(*args: Any, **kw: Any) -> Any:
                with self._open(name):
                    return await func(*args, **kw)

            return awrapped  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapped(*args: Any, **kw: Any) -> Any:
            with self._open(name):
                return func(*args, **kw)

        return wrapped  # type: ignore[return-value]


class _WorkflowSpec(_Spec):
    """What :func:`workflow` returns: one run per ``with`` or per call."""

    def __init__(self, name: str, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.name = name
        self.kwargs = kwargs

    def _open(self, func_name: str | None) -> Run:
        return Run(self.name, **self.kwargs)

    def __enter__(self) -> Run:
        run: Run = super().__enter__()
        return run


def workflow(
    name: str, *, total_steps: int | None = None, run_id: str | None = None, client: Client | None = None, **attrs: Any
) -> _WorkflowSpec:
    """A run of workflow ``name``: ``with workflow(...) as run:`` or ``@workflow(...)``.

    ``attrs`` are kept on the run (JSON values only); ``stall_timeout`` (seconds)
    bounds how long it may go quiet before it counts as stalled.
    """
    check_attrs(attrs)
    kwargs: dict[str, Any] = {"total_steps": total_steps, "run_id": run_id, "attrs": attrs, "client": client}
    return _WorkflowSpec(name, kwargs)


class _StepSpec(_Spec):
    """What module-level :func:`step` returns: a step of the current run,
    named ``name`` or after the decorated function."""

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.name = name

    def _open(self, func_name: str | None) -> Step:
        name = self.name or func_name or "step"
        run = current_run()
        if run is None:
            raise RuntimeError(f"flowsight.step({name!r}) used outside a run: wrap the code in flowsight.workflow(...)")
        return Step(run, name)

    def __enter__(self) -> Step:
        step: Step = super().__enter__()
        return step


def step(name: str | None = None) -> _StepSpec:
    """A step of the current run: ``with step("load"):`` or ``@step()`` (the
    function's name is the step's)."""
    return _StepSpec(name)


def current_run() -> Run | None:
    return _current_run.get()
