"""``flowsight serve``: the app under uvicorn.

SIGTERM or SIGINT: uvicorn stops accepting connections and finishes the
requests in flight; the lifespan then commits what is queued; exit 0.
"""

from __future__ import annotations

import ipaddress
import socket

import uvicorn

from flowsight.errors import ConfigError
from flowsight.server.app import create_app
from flowsight.server.ingest import Limits
from flowsight.store.sql import SqlStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8640


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def check_bind(host: str, store: SqlStore) -> None:
    """Refuse to serve beyond this machine with no token to guard the API.

    Raises:
        ConfigError: says how to make a token.
    """
    if not is_loopback(host) and not store.has_tokens():
        raise ConfigError(
            f"refusing to listen on {host!r} with no API token: anyone who can reach it could write and read "
            "your runs. Make one first: flowsight token create --scope admin --name me "
            "(and tokens for senders: --scope ingest), or listen on 127.0.0.1"
        )


def serve(store: SqlStore, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, limits: Limits | None = None,
          stall_timeout: float = 1800.0, log_level: str = "info") -> None:
    check_bind(host, store)
    app = create_app(store, limits=limits, stall_timeout=stall_timeout)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=30, access_log=False)
    uvicorn.Server(config).run()
