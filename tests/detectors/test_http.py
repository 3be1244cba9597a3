"""The http detector against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flowsight.detectors.base import FaultDetector
from flowsight.detectors.http import HttpDetector
from flowsight.model.faults import Fault, NetworkTimeout, ServiceUnavailable
from tests.helpers import run


class Site(ThreadingHTTPServer):
    """Answers ``/health`` as ``mode`` says: ``ok`` (200 with "status: ok"),
    ``down`` (503), ``hang`` (no answer until the test ends), ``plain`` (200
    without the keyword), ``reset`` (closes the connection unanswered)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SiteHandler)
        self.mode = "ok"
        self.release = threading.Event()
        self.requests: list[tuple[str, str, dict[str, str], int]] = []  # method, path, headers, client port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client gave up on a hanging answer: writing to it then fails, as it should


class SiteHandler(BaseHTTPRequestHandler):
    server: Site
    protocol_version = "HTTP/1.1"  # keep-alive, as real services answer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append((self.command, self.path, dict(self.headers), self.client_address[1]))
        if self.path.startswith("/redirect"):
            return self.answer(302, b"", location="/health")
        if self.path.startswith("/loop"):
            return self.answer(302, b"", location="/loop")
        if self.path.startswith("/big"):
            return self.answer(200, b"a" * (2 << 20) + b"status: ok")
        mode = self.server.mode
        if mode == "hang":
            self.server.release.wait(30)
            return None
        if mode == "reset":
            self.close_connection = True
            return None
        if mode == "down":
            return self.answer(503, b"maintenance")
        return self.answer(200, b"status: ok" if mode == "ok" else b"hello")

    do_HEAD = do_GET  # noqa: N815

    def answer(self, status: int, body: bytes, location: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if location is not None:
            self.send_header("Location", location)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[Site]:
    srv = Site()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check(detector: HttpDetector, site: Site | None = None, modes: list[str] | None = None) -> list[Fault | None]:
    """One check per mode (or one check), in one event loop, then close the client."""

    async def main() -> list[Fault | None]:
        found = []
        try:
            for mode in modes or ["ok"]:
                if site is not None:
                    site.mode = mode
                found.append(await detector.detect())
        finally:
            await detector.aclose()
        return found

    return run(main)


def test_a_service_answering_well_then_503_then_hanging_then_without_the_keyword(site: Site) -> None:
    url = f"{site.url}/health"
    detector = HttpDetector(name="api", url=url, keyword="status: ok", timeout=0.3, service="api-svc")
    ok, down, hung, plain, mended = check(detector, site, ["ok", "down", "hang", "plain", "ok"])

    assert ok is None and mended is None
    assert down is not None and down.type == ServiceUnavailable("api-svc") and down.detector == "api"
    assert down.message == f"GET {url} answered 503 Service Unavailable"
    assert down.evidence["status"] == 503 and down.evidence["url"] == url and down.evidence["latency_s"] >= 0
    assert hung is not None and hung.type == NetworkTimeout(url)
    assert hung.message == f"GET {url}: no answer within 0.3 s"
    assert hung.evidence == {"url": url, "timeout_s": 0.3}
    assert plain is not None and plain.type == ServiceUnavailable("api-svc")
    assert plain.evidence == {"url": url, "keyword": "status: ok", "status": 200}
    assert "without 'status: ok'" in plain.message


def test_the_connection_is_kept_and_the_user_agent_and_headers_sent(site: Site) -> None:
    detector = HttpDetector(name="api", url=f"{site.url}/health", headers={"Authorization": "Bearer x"})
    assert check(detector, site, ["ok", "ok"]) == [None, None]
    (_, _, headers, port), (_, _, _, port_again) = site.requests
    assert headers["Authorization"] == "Bearer x" and headers["User-Agent"].startswith("flowsight/")
    assert port_again == port


def test_a_refused_connection_is_the_service_unavailable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/health"
    [fault] = check(HttpDetector(name="api", url=url))
    assert fault is not None and fault.type == ServiceUnavailable("api")
    assert fault.message == f"GET {url}: connection refused"
    assert fault.evidence == {"url": url, "error": "connection refused"}


def test_a_host_name_that_does_not_resolve_is_the_service_unavailable() -> None:
    [fault] = check(HttpDetector(name="api", url="http://no-such-host.invalid/", timeout=5))
    assert fault is not None and fault.type == ServiceUnavailable("api")
    assert fault.evidence["error"].startswith("cannot resolve host name")


def test_a_connection_closed_without_an_answer_is_the_service_unavailable(site: Site) -> None:
    [fault] = check(HttpDetector(name="api", url=f"{site.url}/health"), site, ["reset"])
    assert fault is not None and fault.type == ServiceUnavailable("api")
    assert "disconnected" in fault.evidence["error"].lower()


def test_a_head_request_needs_no_body(site: Site) -> None:
    assert check(HttpDetector(name="api", url=f"{site.url}/health", method="head"), site) == [None]
    assert site.requests[0][0] == "HEAD"


@pytest.mark.parametrize(
    ("path", "expect_status", "found"),
    [
        ("/redirect", None, None),  # followed to /health, which answers 200
        ("/redirect", [302], None),  # a 3xx expected: the redirect itself is the answer
        ("/redirect", [301], "answered 302 Found"),  # not followed, and not the 3xx expected
        ("/health", [204], "answered 200 OK"),
        ("/loop", None, "more than 10 redirects"),
    ],
)
def test_redirects_and_expected_statuses(
    site: Site, path: str, expect_status: list[int] | None, found: str | None
) -> None:
    [fault] = check(HttpDetector(name="api", url=f"{site.url}{path}", expect_status=expect_status), site)
    if found is None:
        assert fault is None
    else:
        assert fault is not None and fault.type == ServiceUnavailable("api") and found in fault.message


def test_a_redirected_answer_says_where_it_was_sent(site: Site) -> None:
    site.mode = "down"
    [fault] = check(HttpDetector(name="api", url=f"{site.url}/redirect"))
    assert fault is not None and fault.message.endswith(
        f"(redirected to {site.url}/health) answered 503 Service Unavailable"
    )


def test_the_keyword_is_looked_for_in_the_first_mib_only(site: Site) -> None:
    [fault] = check(HttpDetector(name="api", url=f"{site.url}/big", keyword="status: ok"), site)
    assert fault is not None and fault.evidence["keyword"] == "status: ok"
    [fault] = check(HttpDetector(name="api", url=f"{site.url}/big", keyword="aaaa"), site)
    assert fault is None


def test_an_answer_slower_than_slow_is_a_network_timeout(site: Site) -> None:
    url = f"{site.url}/health"
    times = iter([100.0, 102.5, 200.0, 200.5])
    detector = HttpDetector(name="api", url=url, slow=2, timeout=5, clock=lambda: next(times))
    slow, mended = check(detector, site, ["ok", "ok"])
    assert slow is not None and slow.type == NetworkTimeout(url)
    assert slow.evidence == {"url": url, "latency_s": 2.5, "slow_s": 2.0}
    assert slow.message == f"GET {url} answered in 2.50 s, slower than 2 s"
    assert mended is None


def test_it_is_a_fault_detector() -> None:
    assert isinstance(HttpDetector(name="api", url="http://127.0.0.1/"), FaultDetector)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": 5}, "url"),
        ({"method": "POST"}, "method"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"keyword": ""}, "keyword"),
        ({"keyword": "ok", "method": "HEAD"}, "keyword"),
        ({"expect_status": []}, "expect_status"),
        ({"expect_status": [200, 700]}, "expect_status"),
        ({"expect_status": "200"}, "expect_status"),
        ({"headers": {"X-Retries": 3}}, "headers"),
        ({"slow": -1}, "slow"),
        ({"slow": 10, "timeout": 5}, "slow"),
        ({"service": ""}, "service"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=rf"detector 'api': {named} "):
        HttpDetector(name="api", **{"url": "http://127.0.0.1/", **options})


def test_a_name_is_needed() -> None:
    with pytest.raises(ValueError, match="name"):
        HttpDetector(name="", url="http://127.0.0.1/")
