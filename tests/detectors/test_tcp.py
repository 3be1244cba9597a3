"""The tcp detector against real sockets on 127.0.0.1 (and ::1 where there is IPv6)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from flowsight.detectors.tcp import TcpDetector, describe_error
from flowsight.model.faults import Fault, NetworkTimeout, ServiceUnavailable
from tests.helpers import run


def check(detector: TcpDetector) -> Fault | None:
    return run(detector.detect)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield s


def test_a_closed_port_is_the_service_unavailable_until_it_listens(listener: socket.socket) -> None:
    port = listener.getsockname()[1]  # bound, not listening: connections are refused
    detector = TcpDetector(name="db", host="127.0.0.1", port=port, service="postgres")

    fault = check(detector)
    assert fault is not None and fault.type == ServiceUnavailable("postgres") and fault.detector == "db"
    assert fault.message == f"connect to 127.0.0.1:{port}: connection refused"
    assert fault.evidence == {"host": "127.0.0.1", "port": port, "error": "connection refused"}

    listener.listen()
    assert check(detector) is None
    accepted, _ = listener.accept()  # the detector's connection, closed by it
    with accepted:
        assert accepted.recv(1) == b""


def test_a_port_that_does_not_answer_within_the_timeout_is_a_network_timeout(listener: socket.socket) -> None:
    # A full accept queue (backlog 0, one connection not accepted): Linux
    # drops the next SYN, so the connection neither succeeds nor fails.
    listener.listen(0)
    port = listener.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port)):
        fault = check(TcpDetector(name="db", host="127.0.0.1", port=port, timeout=0.3))
    assert fault is not None and fault.type == NetworkTimeout(f"127.0.0.1:{port}")
    assert fault.message == f"connect to 127.0.0.1:{port}: no answer within 0.3 s"
    assert fault.evidence == {"host": "127.0.0.1", "port": port, "timeout_s": 0.3}


def test_an_ipv6_host_in_brackets() -> None:
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with s:
        s.listen()
        port = s.getsockname()[1]
        detector = TcpDetector(name="v6", host="[::1]", port=port)
        assert detector.endpoint == f"[::1]:{port}"
        assert check(detector) is None


def test_a_host_name_that_does_not_resolve_is_the_service_unavailable() -> None:
    fault = check(TcpDetector(name="db", host="no-such-host.invalid", port=5432, timeout=5))
    assert fault is not None and fault.type == ServiceUnavailable("db")
    assert fault.evidence["error"].startswith("cannot resolve host name")


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"), "connection refused"),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 1, 0, 0), "
                "[Errno 111] Connect call failed ('127.0.0.1', 1)"
            ),
            "connection refused",
        ),
        (
            OSError("Multiple exceptions: [Errno 111] a, [Errno 101] b"),
            "Multiple exceptions: [Errno 111] a, [Errno 101] b",
        ),
        (socket.gaierror(-2, "Name or service not known"), "cannot resolve host name (Name or service not known)"),
    ],
)
def test_connection_errors_in_a_few_words(error: OSError, said: str) -> None:
    assert describe_error(error) == said


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"host": ""}, "host"),
        ({"host": "[]"}, "host"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"port": "5432"}, "port"),
        ({"port": True}, "port"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"service": 3}, "service"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=rf"detector 'db': {named} "):
        TcpDetector(name="db", **{"host": "127.0.0.1", "port": 5432, **options})
