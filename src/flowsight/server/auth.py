"""Bearer tokens with scopes. With no token in the store the API is open —
which :func:`flowsight.server.serve.check_bind` allows on loopback only —
until the first token is made; from then on it stays closed for the life of
the server, even when every token is revoked again."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request

from flowsight.errors import HttpError
from flowsight.store.interface import TokenLookup
from flowsight.store.tokens import TokenInfo


class Authenticator:
    """Checks ``Authorization: Bearer <token>`` against the store's hashes
    (cached for ``ttl`` seconds, so a revoked token stops working within it).

    ``may_be_open``: whether the API may be open while the store holds no
    token (a server on loopback); False (beyond loopback) closes it from the
    start. Once a token has been seen it is closed for good: revoking the
    last token must not hand the API, admin routes included, to anyone."""

    def __init__(self, tokens: TokenLookup, *, ttl: float = 5.0, may_be_open: bool = True) -> None:
        self.tokens = tokens
        self.ttl = ttl
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}
        self._open_until = float("inf") if not may_be_open else 0.0
        self._open = False

    def _tokens_exist(self) -> bool:
        now = time.monotonic()
        if now >= self._open_until:
            self._open = not self.tokens.has_tokens()
            # closed once is closed for good: the store is not asked again
            self._open_until = now + self.ttl if self._open else float("inf")
        return not self._open

    def _lookup(self, token: str) -> TokenInfo | None:
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = self.tokens.verify_token(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now + self.ttl, info)
        return info

    async def require(self, request: Request, scope: str) -> TokenInfo | None:
        """The caller's token, if it has ``scope``.

        Raises:
            HttpError: 401 without a valid token, 403 with one lacking the scope.
        """
        if time.monotonic() >= self._open_until:  # ask the store at most every ttl seconds
            await asyncio.to_thread(self._tokens_exist)
        if self._open:
            return None
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            # the hint names the scope this endpoint needs: a read token for a dashboard, not an ingest one
            raise HttpError(
                401,
                "missing token: send 'Authorization: Bearer <token>' "
                f"(make one with: flowsight token create --scope {scope} --name NAME)",
            )
        token = token.strip()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > time.monotonic():
            info = hit[1]
        else:
            info = await asyncio.to_thread(self._lookup, token)
        if info is None:
            raise HttpError(401, "unknown or revoked token")
        if not info.allows(scope):
            raise HttpError(403, f"token {info.name!r} has scope {info.scope!r}; this needs {scope!r} (or admin)")
        return info
