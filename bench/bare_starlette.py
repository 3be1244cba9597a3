"""The peer for bench/ingest_http.py: a bare Starlette POST endpoint under the
same uvicorn settings as ``flowsight serve``."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def ingest(request: Request) -> Response:
    await request.body()
    return Response(b"{}", media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b"{}", media_type="application/json")


app = Starlette(routes=[Route("/ingest", ingest, methods=["POST"]), Route("/healthz", health)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
