"""Host names as a ``Host`` header carries them, and which ones a server
answers to (its guard against DNS rebinding: a page of another site that
points its own name at this machine still says that name in ``Host``).

Pure: :mod:`flowsight.server.hosts` finds the machine's own names and
addresses and applies the decision to each request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from flowsight.errors import ConfigError

# what a Host header may hold: no user info ('@'), path, query or spaces for
# urlsplit to read a different host out of
_HOST_CHARS = re.compile(r"[A-Za-z0-9._\-\[\]:]+")
ANY = "*"
PATTERN_HINT = (
    "a host name or address without a port (e.g. flowsight.example.com, 10.0.0.5, [fd00::5]), "
    "'*.example.com' for the names under a domain, or '*' for any"
)
ALLOW_HINT = 'flowsight serve --allowed-host NAME, or allowed_hosts = ["NAME"] in [server] of flowsight.toml'


def host_name(text: str) -> str | None:
    """The host of a ``Host`` header value (``name``, ``name:port``,
    ``1.2.3.4:port``, ``[::1]:port``): lower-case, without its port, its
    brackets or a trailing dot; an IP address in its canonical form
    (``0:0::1`` is ``::1``). None when ``text`` is not such a value."""
    if not _HOST_CHARS.fullmatch(text):
        return None
    if text.count(":") > 1 and not text.startswith("["):  # an IPv6 address without brackets
        return _address(text)
    try:
        parts = urlsplit("//" + text)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return None
    host = parts.hostname
    if not host:
        return None
    if text.startswith("["):
        return _address(host) if ":" in host else None  # only an IPv6 address goes in brackets
    host = host.removesuffix(".")
    return (_address(host) or host) if host else None


def _address(text: str) -> str | None:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


def allowed_pattern(text: str) -> str:
    """One allowed host as configured: a name or address (no port), ``*.``
    and a domain (any name under it), or ``*`` (any host: no check).

    Raises:
        ConfigError: says what is wrong with it.
    """
    text = text.strip()
    if text == ANY:
        return ANY
    wildcard = text.startswith("*.")
    name = host_name(text[2:] if wildcard else text)
    has_port = name is not None and not text.startswith("[") and text.count(":") == 1
    if name is None or has_port or (wildcard and _address(name) is not None):
        raise ConfigError(f"allowed host {text!r}: give {PATTERN_HINT}")
    return f"*.{name}" if wildcard else name


@dataclass(frozen=True)
class AllowedHosts:
    """The hosts a server answers to: exact ``names``, the names under each
    domain of ``domains`` (``*.example.com``), or any host (``any``)."""

    names: frozenset[str]
    domains: tuple[str, ...] = ()
    any: bool = False

    @classmethod
    def of(cls, patterns: Iterable[str]) -> AllowedHosts:
        """From names and patterns (see :func:`allowed_pattern`).

        Raises:
            ConfigError: a pattern is not one.
        """
        checked = [allowed_pattern(p) for p in patterns]
        return cls(
            frozenset(p for p in checked if not p.startswith("*")),
            tuple(p[1:] for p in checked if p.startswith("*.")),
            ANY in checked,
        )

    def allows(self, host: str) -> bool:
        """Whether ``host`` (as :func:`host_name` gives it) is one of them."""
        return self.any or host in self.names or host.endswith(self.domains)

    def refusal(self, header: str | None) -> str | None:
        """Why a request with this ``Host`` header is refused; None when it is
        not. A request without one (HTTP/1.0) is not: every browser sends it."""
        if header is None or self.any:
            return None
        shown = header if len(header) <= 100 else header[:97] + "..."
        host = host_name(header)
        if host is None:
            return f"Host header {shown!r} is not a host name or address with an optional port"
        if self.allows(host):
            return None
        return (
            f"host {host!r} is not one this server answers to (a guard against DNS rebinding); if it is "
            f"reached by that name, allow it: {ALLOW_HINT.replace('NAME', host)}"
        )
