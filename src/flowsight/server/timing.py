"""``Server-Timing`` on every HTTP answer: how long the app took, measured
inside the server (``Server-Timing: app;dur=12.345``, milliseconds).

Browsers show it in their developer tools beside the network time, so a slow
page tells at once whether the server or the network is slow; the dashboard
benchmark reads it. The time runs from the request's arrival at the app to the
start of the answer (status and headers): for an ordinary JSON answer that is
all the work, the body included; for a stream (SSE) it is the time to the
first byte.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerTiming:
    """ASGI middleware: adds ``Server-Timing: app;dur=MS`` to HTTP answers."""

    def __init__(self, app: ASGIApp, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = self.clock()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (self.clock() - began) * 1000.0
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={took:.3f}".encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, timed)


def app_duration(header: str | None) -> float | None:
    """The ``app`` duration (milliseconds) in a ``Server-Timing`` header value, if any."""
    if not header:
        return None
    for metric in header.split(","):
        name, _, params = metric.strip().partition(";")
        if name.strip() != "app":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None
