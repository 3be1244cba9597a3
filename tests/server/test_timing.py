"""Server-Timing: the app's own time on every HTTP answer."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flowsight.server.app import create_app
from flowsight.server.timing import ServerTiming, app_duration
from flowsight.store import SqlStore


async def _hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"}, headers={"X-Kept": "yes"})


def test_every_answer_carries_the_apps_time_and_keeps_its_headers() -> None:
    ticks = iter([10.0, 10.0125])
    app = ServerTiming(Starlette(routes=[Route("/", _hello)]), clock=lambda: next(ticks))

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/")

    r = asyncio.run(get())
    assert r.json() == {"hello": "world"}
    assert r.headers["x-kept"] == "yes"
    assert r.headers["server-timing"] == "app;dur=12.500"
    assert app_duration(r.headers["server-timing"]) == pytest.approx(12.5)


@pytest.mark.parametrize(
    "header, ms",
    [
        ("app;dur=3.5", 3.5),
        ('db;dur=1, app;desc="x";dur=7', 7.0),
        ("db;dur=1", None),
        ("app;dur=fast", None),
        ("", None),
        (None, None),
    ],
)
def test_app_duration_reads_the_app_metric(header: str | None, ms: float | None) -> None:
    assert app_duration(header) == ms


def test_the_servers_app_tells_its_time_on_api_answers_and_pages(store: SqlStore) -> None:
    app = create_app(store, log_retention=None)

    async def get(*paths: str) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(p) for p in paths]

    for r in asyncio.run(get("/api/v1/runs", "/api/v1/overview", "/healthz", "/", "/no-such-path")):
        assert app_duration(r.headers.get("server-timing")) is not None, r.request.url
