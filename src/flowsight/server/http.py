"""What every handler module of the server shares: JSON answers, the error
answer, the wrapper that checks a route's scope and turns every error a
caller can cause into a JSON answer, and :func:`mount`, which puts the
modules' routes in one table and refuses one a ``:path`` route would hide.

A handler is ``async def handler(request, st) -> Response`` over the app's
:class:`~flowsight.server.context.ServerContext`; each ``*_api`` module exports
its routes (``routes()``), which :func:`flowsight.server.app.create_app` mounts.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from flowsight.errors import FlowsightError, HttpError, StoreError
from flowsight.server import schemas as S

if TYPE_CHECKING:
    from flowsight.server.context import ServerContext

Handler = Callable[[Request, "ServerContext"], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

_enc = msgspec.json.Encoder()
_PARAM = re.compile(r"\{[^}]+\}")


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` (builtins or msgspec structs) encoded once, as JSON."""
    return Response(_enc.encode(data), status_code=status, media_type="application/json", headers=headers)


def error(status: int, message: str) -> Response:
    return json(S.Error(error=message), status)


def endpoint(scope: str | None, handler: Handler) -> Endpoint:
    """Wrap a handler: auth for ``scope`` (None: no token needed), and every
    error a caller can cause turned into a JSON answer (an :class:`HttpError`
    with its status, a store failure a 503, never a bare 500)."""

    async def run(request: Request) -> Response:
        st: ServerContext = request.app.state.flowsight
        try:
            if scope is not None:
                await st.auth.require(request, scope)
            return await handler(request, st)
        except HttpError as exc:
            return error(exc.status, exc.message)
        except StoreError as exc:
            return error(503, f"store unavailable: {exc}")
        except FlowsightError as exc:
            return error(400, str(exc))
        except ClientDisconnect:
            return Response(status_code=499)

    return run


def by_method(**handlers: Endpoint) -> Endpoint:
    """One route, a handler (and so a scope) per method: the 405's ``Allow``
    then lists every method of the path."""

    async def run(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return run


def route(path: str, **handlers: tuple[str | None, Handler]) -> Route:
    """The route of ``path``: per method (``GET=("read", get_runs)``) its
    scope and handler."""
    endpoints = {method: endpoint(scope, handler) for method, (scope, handler) in handlers.items()}
    if len(endpoints) == 1:
        ((method, only),) = endpoints.items()
        return Route(path, only, methods=[method])
    return Route(path, by_method(**endpoints), methods=list(endpoints))


async def http_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 and 405, as JSON like every other error."""
    assert isinstance(exc, HTTPException)
    message = (
        f"no such path {request.url.path!r}; the API is described at /openapi.json"
        if exc.status_code == 404
        else f"method {request.method} is not allowed on {request.url.path!r}"
    )
    return json(S.Error(error=message), exc.status_code, headers=dict(exc.headers or {}))


def mount(*groups: Iterable[BaseRoute]) -> list[BaseRoute]:
    """The routes of every group in one table, in order (the router tries
    them in turn).

    Raises:
        RuntimeError: a route that an earlier one takes every request of
            (a ``{name:path}`` parameter matches ``/`` too): it must come first.
    """
    table = [r for group in groups for r in group]
    routes = [r for r in table if isinstance(r, Route)]
    for i, later in enumerate(routes):
        sample = _PARAM.sub("x", later.path)  # a request of the later route's form
        for earlier in routes[:i]:
            takes = earlier.path != later.path and earlier.path_regex.match(sample)
            if takes and (earlier.methods is None or later.methods is None or earlier.methods & later.methods):
                raise RuntimeError(
                    f"route {later.path!r} is hidden by {earlier.path!r}, mounted before it: mount it first"
                )
    return table
