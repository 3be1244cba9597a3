"""API tokens: made once, shown once, kept only as a hash.

Tokens are 32 random bytes, so a plain SHA-256 is enough to keep them (no
password stretching is needed for a secret nobody chose). Scopes: ``ingest``
(send events), ``read`` (query, stream, metrics), ``admin`` (everything).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from flowsight.errors import ConfigError
from flowsight.store.database import Database

SCOPES = ("ingest", "read", "admin")
PREFIX = "fst_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    scope: str
    created_at: float
    last_used_at: float | None = None

    def allows(self, scope: str) -> bool:
        return self.scope == "admin" or self.scope == scope


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The API tokens of a store (``store.tokens``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create_token(self, name: str, scope: str) -> tuple[str, TokenInfo]:
        """Make a token; returns the token text (shown once) and its record.

        Raises:
            ConfigError: unknown scope, empty or taken name.
        """
        if scope not in SCOPES:
            raise ConfigError(f"token scope {scope!r}: use one of {', '.join(SCOPES)}")
        if not name or len(name) > 100:
            raise ConfigError("token name: 1 to 100 characters")
        if self._db.read("SELECT 1 FROM tokens WHERE name = ?", (name,)):
            raise ConfigError(f"a token named {name!r} exists; revoke it first or pick another name")
        token = PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(name, scope, time.time())
        self._db.write(
            "INSERT INTO tokens (name, scope, hash, created_at) VALUES (?, ?, ?, ?)",
            (name, scope, hash_token(token), info.created_at),
        )
        return token, info

    def verify_token(self, token: str) -> TokenInfo | None:
        rows = self._db.read(
            "SELECT name, scope, created_at, last_used_at FROM tokens WHERE hash = ?", (hash_token(token),)
        )
        return TokenInfo(*rows[0]) if rows else None

    def list_tokens(self) -> list[TokenInfo]:
        return [
            TokenInfo(*r)
            for r in self._db.read("SELECT name, scope, created_at, last_used_at FROM tokens ORDER BY name")
        ]

    def revoke_token(self, name: str) -> bool:
        return self._db.write("DELETE FROM tokens WHERE name = ?", (name,)) == 1

    def has_tokens(self) -> bool:
        return bool(self._db.read("SELECT 1 FROM tokens LIMIT 1"))
