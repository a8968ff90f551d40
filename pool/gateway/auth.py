"""Who is calling, and may they: platform keys with per-key limits, and the solve page's
anonymous students limited per address.

In one gateway process, limits are sliding 60-second windows in memory. Gateways that
share Redis count in per-minute windows and parallel-request leases there instead.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from pool.gateway import errors, inflight
from pool.gateway.registry import KeyInfo, Registry
from pool.gateway.tasks import spawn
from pool.models import ApiKey

if TYPE_CHECKING:
    from pool.gateway.shared_slots import SharedSlots

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
    def __init__(self, registry: Registry, shared=None):
        self.registry = registry
        slots = shared if shared is not None else inflight.shared()
        self.shared = SharedKeyLimits(slots) if slots is not None else None
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

    async def admit(self, caller: Caller) -> None:
        """Check the key's limits and count the request against them."""
        info = caller.key
        if info is None:
            return
        if self.shared is not None:
            await self.shared.admit(info)
            return
        now = time.monotonic()
        if info.rpm is not None:
            _prune(info.recent_requests, now)
            if len(info.recent_requests) >= info.rpm:
                raise over_rpm(info, WINDOW_S - (now - info.recent_requests[0]))
        if info.tpm is not None:
            _prune(info.recent_tokens, now)
            if sum(n for _, n in info.recent_tokens) >= info.tpm:
                raise over_tpm(info, WINDOW_S - (now - info.recent_tokens[0][0]))
        if info.max_parallel is not None and info.inflight >= info.max_parallel:
            raise over_parallel(info, info.inflight)
        if info.rpm is not None:
            info.recent_requests.append(now)
        info.inflight += 1

    def done(self, caller: Caller, *, prompt_tokens: int, completion_tokens: int, error: bool) -> None:
        info = caller.key
        if info is None:
            return
        tokens = prompt_tokens + completion_tokens
        if self.shared is not None:
            self.shared.done(info, tokens)
        else:
            info.inflight = max(0, info.inflight - 1)
            if info.tpm is not None and tokens:
                info.recent_tokens.append((time.monotonic(), tokens))
        info.pending[0] += 1
        info.pending[1] += prompt_tokens
        info.pending[2] += completion_tokens
        info.pending[3] += error


def over_rpm(info: KeyInfo, wait: float) -> errors.ApiError:
    return errors.rate_limited(f"this key's limit of {info.rpm} requests per minute is reached",
                               code="rate_limit_requests", retry_after=wait)  # fmt: skip


def over_tpm(info: KeyInfo, wait: float) -> errors.ApiError:
    return errors.rate_limited(f"this key's limit of {info.tpm} tokens per minute is reached",
                               code="rate_limit_tokens", retry_after=wait)  # fmt: skip


def over_parallel(info: KeyInfo, busy: int) -> errors.ApiError:
    return errors.rate_limited(f"this key already has {busy} requests in flight (its limit is {info.max_parallel})",
                               code="rate_limit_parallel", retry_after=1)  # fmt: skip


class SharedKeyLimits:
    """The same limits counted in Redis, so they hold across gateway processes: requests
    and tokens in per-minute windows, parallel requests as leases that expire."""

    def __init__(self, slots: SharedSlots) -> None:
        self.slots = slots
        self.leases: dict[int, list[str]] = {}  # key id -> leases this gateway holds

    async def admit(self, info: KeyInfo) -> None:
        redis = self.slots.client()
        now = time.time()
        window = int(now // WINDOW_S)
        wait = WINDOW_S - now % WINDOW_S
        if info.tpm is not None:
            used = int(await redis.get(f"vibeadmin:tpm:{info.id}:{window}") or 0)
            if used >= info.tpm:
                raise over_tpm(info, wait)
        if info.rpm is not None:
            key = f"vibeadmin:rpm:{info.id}:{window}"
            pipe = redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, int(WINDOW_S * 2))
            count, _ = await pipe.execute()
            if count > info.rpm:
                raise over_rpm(info, wait)
        if info.max_parallel is not None:
            lease = await self.slots.take(f"key:{info.id}", info.max_parallel)
            if lease is None:
                raise over_parallel(info, info.max_parallel)
            self.leases.setdefault(info.id, []).append(lease)

    def done(self, info: KeyInfo, tokens: int) -> None:
        async def account():
            if info.max_parallel is not None and self.leases.get(info.id):
                await self.slots.give_back(f"key:{info.id}", self.leases[info.id].pop())
            if info.tpm is not None and tokens:
                key = f"vibeadmin:tpm:{info.id}:{int(time.time() // WINDOW_S)}"
                pipe = self.slots.client().pipeline()
                pipe.incrby(key, tokens)
                pipe.expire(key, int(WINDOW_S * 2))
                await pipe.execute()

        spawn(account())


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
