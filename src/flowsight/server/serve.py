"""``flowsight serve``: the app under uvicorn.

SIGTERM or SIGINT: uvicorn stops accepting connections and finishes the
requests in flight; the lifespan then commits what is queued; exit 0.
"""

from __future__ import annotations

import contextlib
import errno
import copy
import gc
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn

from flowsight.redact import redact_url
from flowsight.config import Config
from flowsight.errors import ConfigError
from flowsight.server.app import create_app
from flowsight.server.context import OnLogs
from flowsight.server.hosts import allowed_hosts as hosts_for
from flowsight.server.hosts import is_loopback
from flowsight.server.ingest import Limits
from flowsight.server.leadership import LEASE, Leadership
from flowsight.server.retention import DEFAULT_RETENTION
from flowsight.server.stream import Streams
from flowsight.store.database import safe_url
from flowsight.store.interface import Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8640


def check_bind(host: str, store: Store) -> None:
    """Refuse to serve beyond this machine with no token to guard the API.

    Raises:
        ConfigError: says how to make a token.
    """
    if not is_loopback(host) and not store.tokens.has_tokens():
        raise ConfigError(
            f"refusing to listen on {host!r} with no API token: anyone who can reach it could write and read "
            "your runs. Make one first: flowsight token create --scope admin --name me "
            "(and tokens for senders: --scope ingest), or listen on 127.0.0.1"
        )


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with flowsight's loggers on its handler at ``level``:
    their INFO lines (a full disk that clears, a purge) reach the server's
    log as uvicorn's do, not only their warnings."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["flowsight"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def _tune_gc() -> None:
    """What is loaded at start is never garbage: keep the collector off it
    (``gc.freeze``), and let it run after 20,000 new objects rather than 700.
    A request makes a few hundred short-lived objects that reference counting
    frees; the young collections were a measurable share of the server's CPU
    under single-event POSTs (bench/ingest_http.py; figures: docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def serve(
    store: Store,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    limits: Limits | None = None,
    stall_timeout: float = 1800.0,
    log_level: str = "info",
    config: Config | None = None,
    on_logs: OnLogs | None = None,
    log_retention: float | None = DEFAULT_RETENTION,
    allowed_hosts: Sequence[str] = (),
    replica_id: str | None = None,
    lease: float = LEASE,
) -> None:
    """Serve until SIGTERM/SIGINT. ``on_logs`` and ``log_retention``: see
    :func:`flowsight.server.app.create_app`; ``allowed_hosts``: the names the
    server answers to besides its own (see :mod:`flowsight.server.hosts`);
    ``replica_id`` and ``lease``: this server among the replicas on one
    store (see :mod:`flowsight.server.leadership`).

    Raises:
        ConfigError: no token beyond loopback; an allowed host that is not one.
        SingleNodeError: another server serves the same SQLite file.
    """
    check_bind(host, store)
    sock = bind(host, port)
    leadership = Leadership(store, replica_id, lease=lease)
    try:
        leadership.claim()
    except BaseException:
        sock.close()
        raise
    app = create_app(
        store,
        limits=limits,
        stall_timeout=stall_timeout,
        config=config,
        on_logs=on_logs,
        log_retention=log_retention,
        may_be_open=is_loopback(host),
        allowed_hosts=hosts_for(host, allowed_hosts),
        leadership=leadership,
    )
    _tune_gc()
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=30,
        access_log=False,
        log_config=_log_config(log_level),
    )
    say_start(store, config, host, sock.getsockname()[1], may_be_open=is_loopback(host), leadership=leadership)
    with _stop_signals_end_cleanly():
        _Server(uv_config, app.state.flowsight.streams).run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts, so a busy port is
    one line (not uvicorn's start-up log and then exit 3).

    Raises:
        ConfigError: the address cannot be had (in use, not this machine's, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ConfigError(f"--host {host!r}: not an address of this machine ({exc.strerror or exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use (another flowsight serve?); stop it or choose another with --port"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def say_start(
    store: Store,
    config: Config | None,
    host: str,
    port: int,
    *,
    may_be_open: bool,
    leadership: Leadership | None = None,
) -> None:
    """What a person starting the server wants to know, on stderr: the
    store, the configuration, the dashboard's address, whether tokens are needed."""
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::", ""):
        shown = socket.gethostname()
    tokens = len(store.tokens.list_tokens())
    if tokens:
        guard = f"required ({tokens} token{'s' if tokens != 1 else ''} in the store)"
    elif may_be_open:
        guard = "not required until the first is made (flowsight token create); this machine only"
    else:
        guard = "required"
    where = config.file if config is not None and config.file else "none (built-in rules, alerts to the log)"
    print(
        f"flowsight serve\n  store:     {store.dialect} {safe_url(str(store.url))}\n  config:    {where}\n"
        f"  dashboard: http://{shown}:{port}/\n  tokens:    {guard}"
        + (
            f"\n  export:    each ended run as a trace to {redact_url(config.otlp_export.endpoint)}"
            if config is not None and config.otlp_export is not None
            else ""
        )
        + (
            f"\n  replica:   {_replica_line(leadership)}"
            if leadership is not None and store.dialect != "sqlite"
            else ""
        ),
        file=sys.stderr,
        flush=True,
    )


def _replica_line(leadership: Leadership) -> str:
    leads = [d.name for d in leadership.duties.values() if d.leading]
    return f"{leadership.replica_id}, " + (
        f"leading {', '.join(leads)}" if leads else "following (another replica leads every duty)"
    )


class _Server(uvicorn.Server):
    """Ends the live streams when it starts to shut down: uvicorn waits for
    every connection to finish its response, and a stream never does. Closes
    the connection of a stream client dropped as slow (:attr:`Streams.abort`)."""

    def __init__(self, config: uvicorn.Config, streams: Streams) -> None:
        super().__init__(config)
        self.streams = streams
        streams.abort = self.abort_connection

    def abort_connection(self, client: Any) -> bool:
        """Close the connection from ``client`` (the ASGI scope's (host, port))
        at once, discarding what is buffered for it: a client that does not
        read would hold a closing connection and its buffer for ever.
        Whether there was one."""
        for conn in self.server_state.connections:
            if getattr(conn, "client", None) == client:
                conn.transport.abort()
                return True
        return False

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.streams.close_all()
        await super().shutdown(sockets)


@contextlib.contextmanager
def _stop_signals_end_cleanly() -> Iterator[None]:
    """After a graceful shutdown uvicorn re-raises the SIGTERM/SIGINT it caught
    at the handler it found installed; by default that kills the process
    (exit -15) or raises KeyboardInterrupt. A signal is how a server is asked to
    stop, and a clean stop exits 0: the handler it finds exits with 0 (as does
    a signal that comes before uvicorn has installed its own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(sig: int, frame: object) -> None:
        raise SystemExit(0)

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
