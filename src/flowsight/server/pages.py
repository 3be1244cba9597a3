"""The dashboard's files (``flowsight/server/dashboard/``, shipped as package
data): the page at ``/`` and at each of its routes (``/runs/{run_id}``,
``/alerts``, ``/faults``, ``/faults/{id}``, ``/performance``, so a link such as an alert's
``{external_url}/runs/{run_id}`` opens the run), and its assets under
``/ui/``. They hold no data, so they need no token: the page asks for one
when the API answers 401.

Only the files that are in the folder when the app is made are served, each
with its content type set here (not guessed from the platform's MIME table,
which may call JavaScript ``text/plain``) and an ETag; a file changed on disk
is read again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from flowsight.server.http import error

ROOT = Path(__file__).with_name("dashboard")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
#: the routes of the single-page app; each answers index.html
PAGE_PATHS = ("/", "/alerts", "/faults", "/faults/{fault_id}", "/performance", "/runs/{run_id:path}")
#: scripts and styles from this server only; the page talks to this server only
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class _File:
    body: bytes
    etag: str
    stamp: tuple[int, int]


class Assets:
    """The files under ``root``, by their path relative to it."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.known = (
            {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and p.suffix in TYPES}
            if root.is_dir()
            else {}
        )
        self._cache: dict[str, _File] = {}

    def read(self, name: str) -> _File | None:
        path = self.known.get(name)
        if path is None:
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(name)
        if hit is None or hit.stamp != stamp:
            body = path.read_bytes()
            hit = self._cache[name] = _File(body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"', stamp)
        return hit

    def respond(self, request: Request, name: str) -> Response:
        f = self.read(name)
        if f is None:
            return error(404, f"no such file {request.url.path!r}")
        headers = {"ETag": f.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if name.endswith(".html"):
            headers["Content-Security-Policy"] = CSP
            headers["Referrer-Policy"] = "no-referrer"
        if f.etag in (t.strip() for t in request.headers.get("if-none-match", "").split(",")):
            return Response(status_code=304, headers=headers)
        ctype = TYPES[Path(name).suffix]
        return Response(f.body, media_type=ctype, headers=headers)


def dashboard_routes(assets: Assets | None = None) -> list[Route]:
    """The page's routes and ``/ui/{path}`` for its assets."""
    files = assets or Assets()

    async def page(request: Request) -> Response:
        return files.respond(request, "index.html")

    async def asset(request: Request) -> Response:
        return files.respond(request, request.path_params["path"])

    return [
        *(Route(p, page, methods=["GET"]) for p in PAGE_PATHS),  # HEAD comes with GET
        Route("/ui/{path:path}", asset, methods=["GET"]),
    ]
