"""Who is calling: a platform's key (looked up in memory, or in the database for a key
created a moment ago), or nobody where the API is open. What a caller may do is
pool/gateway/admission.py's job."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from pool.gateway import errors
from pool.gateway.registry import KeyInfo, Registry
from pool.models import ApiKey


@dataclass
class Caller:
    """Who a request is accounted to."""

    label: str  # for metrics and logs: the key's name, "open", or "solve"
    key: KeyInfo | None = None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Auth:
    def __init__(self, registry: Registry):
        self.registry = registry
        self._misses: dict[str, float] = {}  # unknown key hash -> when we last asked the database

    async def caller(self, authorization: str | None) -> Caller:
        token = bearer_token(authorization)
        if token is None:
            if self.registry.policy.api_open:
                return Caller("open")
            raise errors.unauthorized("missing API key: send 'Authorization: Bearer YOUR_KEY'")
        digest = hashlib.sha256(token.encode()).hexdigest()
        info = self.registry.keys.get(digest) or await self._lookup(digest)
        if info is None or not info.active:
            raise errors.unauthorized("invalid or revoked API key")
        return Caller(info.name, info)

    async def _lookup(self, digest: str) -> KeyInfo | None:
        """A key created a moment ago works at once; unknown keys ask the database at most
        once a second each, so a flood of bad keys can't reach it."""
        now = time.monotonic()
        if now - self._misses.get(digest, -10) < 1.0:
            return None
        self._misses[digest] = now
        if len(self._misses) > 10_000:
            self._misses.clear()
        row = await sync_to_async(_find_key, thread_sensitive=False)(digest)
        if row is None:
            return None
        info = KeyInfo.from_row(row)
        self.registry.keys[digest] = info
        return info


def _find_key(digest: str) -> ApiKey | None:
    close_old_connections()
    return ApiKey.objects.filter(key_hash=digest).first()
