"""Who is calling, and may they: platform keys with per-key limits, and the solve page's
anonymous students limited per address.

Limits are sliding 60-second windows kept in memory (exact in one gateway process).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from pool.gateway import errors
from pool.gateway.registry import KeyInfo, Registry
from pool.models import ApiKey

WINDOW_S = 60.0


@dataclass
class Caller:
    """Who a request is accounted to."""

    label: str  # for metrics and logs: the key's name, "open", or "solve"
    key: KeyInfo | None = None


def _prune(stamps: list, now: float) -> None:
    cutoff = now - WINDOW_S
    drop = 0
    for stamp in stamps:
        if (stamp[0] if isinstance(stamp, tuple) else stamp) >= cutoff:
            break
        drop += 1
    del stamps[:drop]


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
        info = KeyInfo(row.pk, row.name, row.rpm, row.tpm, row.max_parallel, row.is_active)
        self.registry.keys[digest] = info
        return info

    def admit(self, caller: Caller) -> None:
        """Check the key's limits and count the request against them."""
        info = caller.key
        if info is None:
            return
        now = time.monotonic()
        if info.rpm is not None:
            _prune(info.recent_requests, now)
            if len(info.recent_requests) >= info.rpm:
                wait = WINDOW_S - (now - info.recent_requests[0])
                raise errors.rate_limited(f"this key's limit of {info.rpm} requests per minute is reached",
                                          code="rate_limit_requests", retry_after=wait)  # fmt: skip
        if info.tpm is not None:
            _prune(info.recent_tokens, now)
            if sum(n for _, n in info.recent_tokens) >= info.tpm:
                wait = WINDOW_S - (now - info.recent_tokens[0][0])
                raise errors.rate_limited(f"this key's limit of {info.tpm} tokens per minute is reached",
                                          code="rate_limit_tokens", retry_after=wait)  # fmt: skip
        if info.max_parallel is not None and info.inflight >= info.max_parallel:
            raise errors.rate_limited(
                f"this key already has {info.inflight} requests in flight (its limit is {info.max_parallel})",
                code="rate_limit_parallel", retry_after=1)  # fmt: skip
        if info.rpm is not None:
            info.recent_requests.append(now)
        info.inflight += 1

    def done(self, caller: Caller, *, prompt_tokens: int, completion_tokens: int, error: bool) -> None:
        info = caller.key
        if info is None:
            return
        info.inflight = max(0, info.inflight - 1)
        tokens = prompt_tokens + completion_tokens
        if info.tpm is not None and tokens:
            info.recent_tokens.append((time.monotonic(), tokens))
        info.pending[0] += 1
        info.pending[1] += prompt_tokens
        info.pending[2] += completion_tokens
        info.pending[3] += error


class AddressLimit:
    """Requests per minute per client address, for the anonymous solve page."""

    def __init__(self) -> None:
        self.recent: dict[str, list[float]] = {}

    def admit(self, address: str, rpm: int) -> None:
        now = time.monotonic()
        stamps = self.recent.setdefault(address, [])
        _prune(stamps, now)
        if len(stamps) >= rpm:
            raise errors.rate_limited(
                f"you have sent {rpm} problems in the last minute; please wait a little",
                code="rate_limit_address", retry_after=WINDOW_S - (now - stamps[0]))  # fmt: skip
        stamps.append(now)
        if len(self.recent) > 50_000:  # forget idle addresses
            self.recent = {a: s for a, s in self.recent.items() if s and s[-1] > now - WINDOW_S}


def _find_key(digest: str) -> ApiKey | None:
    close_old_connections()
    return ApiKey.objects.filter(key_hash=digest).first()
