"""The ``http`` detector: does a URL answer, and answer well?

``HttpDetector(name, url, method="GET", timeout=10.0, keyword=None,
expect_status=None, headers=None, slow=None, service=None, transport=None)``
sends one request and judges the answer:

- no connection (refused, unresolvable host, reset) or a broken answer:
  :class:`ServiceUnavailable` of ``service`` (default: the detector's name),
  evidence ``url``, ``error``;
- no complete answer within ``timeout`` seconds, all of it (connecting,
  redirects, headers, the body's first MiB):
  :class:`NetworkTimeout` of the endpoint ``url``, evidence ``url``,
  ``timeout_s``;
- a status outside ``expect_status``: ServiceUnavailable, evidence ``url``,
  ``status``, ``latency_s``;
- a body without ``keyword`` (case-sensitive, looked for in the first MiB):
  ServiceUnavailable, evidence ``url``, ``keyword``, ``status``;
- an answer slower than ``slow`` seconds: NetworkTimeout, evidence ``url``,
  ``latency_s``, ``slow_s``.

As Uptime Kuma does by default, redirects are followed (up to
:data:`MAX_REDIRECTS`) and the final answer must be 2xx. An ``expect_status``
that names a 3xx status is about the redirect itself: then redirects are not
followed.

One ``httpx.AsyncClient`` per detector, made at the first check (keep-alive
connections are reused), belongs to the event loop of that check: call
:meth:`HttpDetector.aclose` before that loop ends. ``transport`` replaces
httpx's (tests, proxies); ``clock`` (seconds) times the answer.
"""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import httpx

from flowsight import __version__
from flowsight.options.fields import (
    Invalid,
    Options,
    Opt,
    array,
    choice,
    duration,
    found,
    integer,
    nonempty_string,
    string_table,
    url,
)
from flowsight.detectors.tcp import check_name, check_seconds, check_target, describe_error
from flowsight.model.faults import Fault, FaultType, NetworkTimeout, ServiceUnavailable

__all__ = ["DEFAULT_STATUS", "MAX_BODY", "MAX_REDIRECTS", "HttpDetector"]

#: the statuses accepted when ``expect_status`` is not given (Uptime Kuma's "200-299")
DEFAULT_STATUS = frozenset(range(200, 300))
#: how much of the body is searched for ``keyword``
MAX_BODY = 1 << 20
#: redirects followed before the answer counts as broken (Uptime Kuma's default)
MAX_REDIRECTS = 10
METHODS = ("GET", "HEAD")


def _status(value: Any) -> int:
    """An ``expect_status`` element: 100 to 599."""
    code = integer(100)(value)
    if code > 599:
        raise Invalid(f"expected an HTTP status from 100 to 599, got {found(value)}")
    return code


class HttpDetector:
    """See the module docstring.

    Raises:
        ValueError: an option is not what it must be (the message names it).
    """

    KIND: ClassVar[str] = "http"
    # a header may hold a token: a secret
    OPTIONS: ClassVar[Options] = {
        "url": Opt(url, required=True),
        "method": Opt(choice(METHODS)),
        "keyword": Opt(nonempty_string),
        "expect_status": Opt(array(_status, nonempty=True)),
        "headers": Opt(string_table, secret=True),
        "slow": Opt(duration(positive=True)),
        "service": Opt(nonempty_string),
    }

    def __init__(
        self,
        name: str,
        *,
        url: str,
        method: str = "GET",
        timeout: float = 10.0,
        keyword: str | None = None,
        expect_status: Sequence[int] | None = None,
        headers: Mapping[str, str] | None = None,
        slow: float | None = None,
        service: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = check_name(name)
        self.url = _check_url(name, url)
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise ValueError(f"detector {name!r}: method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method.upper()
        self.timeout = check_seconds(name, "timeout", timeout)
        if keyword is not None and (not isinstance(keyword, str) or not keyword):
            raise ValueError(f"detector {name!r}: keyword must be a non-empty string, got {keyword!r}")
        if keyword is not None and self.method == "HEAD":
            raise ValueError(f"detector {name!r}: keyword needs a body to look in: use method GET, not HEAD")
        self.keyword = keyword
        self.expect_status = DEFAULT_STATUS if expect_status is None else _check_statuses(name, expect_status)
        self.headers = _check_headers(name, headers)
        if not any(k.lower() == "user-agent" for k in self.headers):
            self.headers["User-Agent"] = f"flowsight/{__version__} (http detector)"
        self.slow = None if slow is None else check_seconds(name, "slow", slow)
        if self.slow is not None and self.slow >= self.timeout:
            raise ValueError(f"detector {name!r}: slow must be below timeout ({self.timeout:g} s), got {slow!r}")
        self.service = check_target(name, "service", service)
        self.follow_redirects = not any(300 <= s < 400 for s in self.expect_status)
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None

    async def detect(self) -> Fault | None:
        """Send one request: None when the answer is as expected, else the fault."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=self.timeout,
                headers=self.headers,
                follow_redirects=self.follow_redirects,
                max_redirects=MAX_REDIRECTS,
            )
        what = f"{self.method} {self.url}"
        started = self._clock()
        try:
            # httpx's timeout is per step (connect, each read); this one is for the whole answer
            async with asyncio.timeout(self.timeout):
                async with self._client.stream(self.method, self.url) as response:
                    # read even without a keyword: a connection is kept only once its answer is read
                    body = await _read_head(response)
        except (TimeoutError, httpx.TimeoutException):
            return self._fault(
                NetworkTimeout(self.url), f"{what}: no answer within {self.timeout:g} s", timeout_s=self.timeout
            )
        except httpx.TooManyRedirects:
            return self._fault(
                ServiceUnavailable(self.service),
                f"{what}: more than {MAX_REDIRECTS} redirects",
                error=f"more than {MAX_REDIRECTS} redirects",
            )
        except httpx.RequestError as exc:
            error = describe_error(exc)
            return self._fault(ServiceUnavailable(self.service), f"{what}: {error}", error=error)
        return self.judge(response, body, self._clock() - started)

    def judge(self, response: httpx.Response, body: bytes, latency: float) -> Fault | None:
        """The fault in an answer that came (``body``: its first bytes), or None."""
        what = f"{self.method} {self.url}"
        if response.history:
            what += f" (redirected to {response.url})"
        status = response.status_code
        if status not in self.expect_status:
            reason = response.reason_phrase or _phrase(status)
            return self._fault(
                ServiceUnavailable(self.service),
                f"{what} answered {status} {reason}".rstrip(),
                status=status,
                latency_s=round(latency, 3),
            )
        if self.keyword is not None and self.keyword not in body.decode(response.encoding or "utf-8", "replace"):
            return self._fault(
                ServiceUnavailable(self.service),
                f"{what} answered {status} without {self.keyword!r} in its body",
                keyword=self.keyword,
                status=status,
            )
        if self.slow is not None and latency > self.slow:
            return self._fault(
                NetworkTimeout(self.url),
                f"{what} answered in {latency:.2f} s, slower than {self.slow:g} s",
                latency_s=round(latency, 3),
                slow_s=self.slow,
            )
        return None

    async def aclose(self) -> None:
        """Close the connections kept open (the next check opens new ones)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _fault(self, about: FaultType, message: str, **evidence: Any) -> Fault:
        return Fault(about, message, detector=self.name, evidence={"url": self.url, **evidence})


async def _read_head(response: httpx.Response) -> bytes:
    """The first :data:`MAX_BODY` bytes of the body (the rest is not read)."""
    head = bytearray()
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= MAX_BODY:
            break
    return bytes(head[:MAX_BODY])


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _check_url(name: str, url: object) -> str:
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"detector {name!r}: url must be an http:// or https:// URL with a host, got {url!r}")
    return str(url)


def _check_statuses(name: str, statuses: object) -> frozenset[int]:
    if (
        not isinstance(statuses, (list, tuple))
        or not statuses
        or not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses)
    ):
        raise ValueError(
            f"detector {name!r}: expect_status must be a non-empty list of HTTP statuses "
            f"(whole numbers from 100 to 599), got {statuses!r}"
        )
    return frozenset(statuses)


def _check_headers(name: str, headers: object) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError(
            f"detector {name!r}: headers must be a table of header names to string values, got {headers!r}"
        )
    return dict(headers)
