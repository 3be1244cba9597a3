"""The ``tcp`` detector: does a port accept connections?

``TcpDetector(name, host, port, timeout=10.0, service=None)`` opens one
connection and closes it again. A refused, unreachable or unresolvable
address is a :class:`ServiceUnavailable` of ``service`` (default: the
detector's name); no answer within ``timeout`` seconds is a
:class:`NetworkTimeout` of the endpoint ``host:port`` (``[host]:port`` for
IPv6). :func:`describe_error` and :func:`check_seconds` serve the ``http``
detector too.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from typing import Any, ClassVar

from flowsight.options.fields import Invalid, Options, Opt, found, integer, nonempty_string
from flowsight.model.faults import Fault, NetworkTimeout, ServiceUnavailable

__all__ = ["TcpDetector", "check_name", "check_seconds", "describe_error"]


def _port(value: Any) -> int:
    """The ``port`` field: 1 to 65535."""
    number = integer(1)(value)
    if number > 65535:
        raise Invalid(f"expected a port from 1 to 65535, got {found(value)}")
    return number


class TcpDetector:
    """See the module docstring.

    Raises:
        ValueError: an option is not what it must be (the message names it).
    """

    KIND: ClassVar[str] = "tcp"
    OPTIONS: ClassVar[Options] = {
        "host": Opt(nonempty_string, required=True),
        "port": Opt(_port, required=True),
        "service": Opt(nonempty_string),
    }

    def __init__(self, name: str, *, host: str, port: int, timeout: float = 10.0, service: str | None = None) -> None:
        self.name = check_name(name)
        if not isinstance(host, str) or not host.strip("[]"):
            raise ValueError(f"detector {name!r}: host must be a host name or address, got {host!r}")
        # "[::1]" as written in URLs; the socket wants the bare address
        self.host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"detector {name!r}: port must be a whole number from 1 to 65535, got {port!r}")
        self.port = port
        self.timeout = check_seconds(name, "timeout", timeout)
        self.service = check_target(name, "service", service)
        self.endpoint = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    async def detect(self) -> Fault | None:
        """Connect once: None when the port accepts, else the fault."""
        evidence: dict[str, Any] = {"host": self.host, "port": self.port}
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        except TimeoutError:
            return Fault(
                NetworkTimeout(self.endpoint),
                f"connect to {self.endpoint}: no answer within {self.timeout:g} s",
                detector=self.name,
                evidence={**evidence, "timeout_s": self.timeout},
            )
        except OSError as exc:
            error = describe_error(exc)
            return Fault(
                ServiceUnavailable(self.service),
                f"connect to {self.endpoint}: {error}",
                detector=self.name,
                evidence={**evidence, "error": error},
            )
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # reset by the peer while closing: it did accept, which is all that was asked
        return None


def check_name(name: object) -> str:
    """A detector's name: a non-empty string (raises ValueError otherwise)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a detector's name must be a non-empty string, got {name!r}")
    return name


def check_seconds(detector: str, option: str, value: object) -> float:
    """``value`` as seconds above 0, or ValueError naming ``detector`` and ``option``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"detector {detector!r}: {option} must be a number of seconds above 0, got {value!r}")
    return float(value)


def check_target(detector: str, option: str, value: object) -> str:
    """What a fault is about: ``value``, a non-empty string, or the detector's name when None."""
    if value is None:
        return detector
    if not isinstance(value, str) or not value:
        raise ValueError(f"detector {detector!r}: {option} must be a non-empty string, got {value!r}")
    return value


_ERRNO = re.compile(r"\[Errno (-?\d+)\]")


def describe_error(exc: BaseException) -> str:
    """A connection failure in a few words: ``connection refused``,
    ``cannot resolve host name (Name or service not known)``, ... .

    Walks the chain of causes (httpx and anyio wrap the socket's error) to the
    first one with an errno.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return f"cannot resolve host name ({seen.strerror or seen})"
        if isinstance(seen, OSError) and seen.errno is not None:
            return os.strerror(seen.errno).lower()
        seen = seen.__cause__ or seen.__context__
    # Python 3.11 folds the attempts at several addresses into one message:
    # "Multiple exceptions: [Errno 111] ..., [Errno 111] ..."
    errnos = set(_ERRNO.findall(str(exc)))
    if len(errnos) == 1:
        return os.strerror(int(errnos.pop())).lower()
    return str(exc) or type(exc).__name__
