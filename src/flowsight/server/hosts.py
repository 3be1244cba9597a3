"""The ``Host`` check of ``flowsight serve``: which names the server answers
to, found from the address it listens on, and the middleware that refuses
every other with a 400 before any route runs.

It applies always, tokens or not, as Django's ``ALLOWED_HOSTS`` does: it
matters most while the API is open (a page of another site, its name
pointed at 127.0.0.1, would otherwise read and write it from a browser on
this machine), but a server's names do not change when its first token is
made, and a reverse proxy that does not pass the name then fails at once,
not on the day the last token is revoked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import psutil
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from flowsight.model.hosts import AllowedHosts, host_name

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def machine_names() -> list[str]:
    """This machine's name and the addresses of its network interfaces."""
    out = [socket.gethostname()]
    for addrs in psutil.net_if_addrs().values():
        out += [a.address.partition("%")[0] for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)]
    return out


def allowed_hosts(bind: str, configured: Iterable[str] = (), *, machine: Iterable[str] | None = None) -> AllowedHosts:
    """The hosts a server listening on ``bind`` answers to: the bind address
    itself; on loopback, ``localhost`` and the loopback addresses; on any
    other address, the machine's name and (``0.0.0.0``, ``::``) every address
    of it, ``machine`` (default :func:`machine_names`); and the
    ``configured`` names and patterns (``--allowed-host``).

    Raises:
        ConfigError: a configured pattern is not one.
    """
    names = [bind] if bind not in WILDCARD_BINDS else []
    if bind in WILDCARD_BINDS or is_loopback(bind):
        names += LOOPBACK_NAMES
    if not is_loopback(bind):
        own = machine_names() if machine is None else list(machine)
        names += own if bind in WILDCARD_BINDS else own[:1]
    found = [n for n in (host_name(name) for name in names) if n is not None]
    return AllowedHosts.of([*found, *configured])


class HostCheck:
    """ASGI middleware: a request whose ``Host`` is not ``allowed`` gets a
    400 JSON error naming the host and how to allow it."""

    def __init__(self, app: ASGIApp, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
            refused = self.allowed.refusal(header)
            if refused is not None:
                await JSONResponse({"error": refused}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)
