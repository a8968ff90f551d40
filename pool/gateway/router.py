"""Choosing a member for each request, and waiting when every member is full.

A request takes a slot on a member (its in-flight count) until it ends. When no routable
member has room, it waits in one bounded FIFO queue with a deadline; every released slot
and every refresh of the pool hands free slots to waiters in arrival order. Nothing waits
forever: a full queue answers 429, a passed deadline 503, both with Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from pool import inflight
from pool.gateway import errors
from pool.gateway.backend import Backend, RouteContext
from pool.gateway.registry import Registry


@dataclass(eq=False)
class Waiter:
    ctx: RouteContext
    exclude: frozenset[int]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Router:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.queue: deque[Waiter] = deque()
        registry.listeners.append(self.dispatch)

    def _pick(self, ctx: RouteContext, exclude: frozenset[int]) -> Backend | None:
        members = self.registry.routable()
        if exclude:
            members = [m for m in members if m.id not in exclude]
        backend = self.registry.strategy.pick(members, ctx)
        if backend is not None:
            inflight.acquire(backend.id)
        return backend

    async def acquire(self, ctx: RouteContext, exclude: frozenset[int] = frozenset()) -> tuple[Backend, float]:
        """A member with a slot taken for this request, and how long we waited for it."""
        if not any(b.id not in exclude for b in self.registry.routable()):
            raise errors.unavailable(
                "no member of the pool is ready to serve requests; an operator must start one "
                "(or wait while members start)", code="no_ready_member", retry_after=5)  # fmt: skip
        if not self.queue:  # arrivals never jump the queue
            backend = self._pick(ctx, exclude)
            if backend is not None:
                return backend, 0.0
        policy = self.registry.policy
        if len(self.queue) >= policy.queue_size:
            raise errors.rate_limited(
                f"every member is busy and {len(self.queue)} requests are already waiting; try again shortly",
                code="queue_full", retry_after=self.retry_after())  # fmt: skip
        return await self._wait(Waiter(ctx, exclude), policy.queue_timeout_s)

    async def _wait(self, waiter: Waiter, timeout_s: float) -> tuple[Backend, float]:
        started = time.monotonic()
        self.queue.append(waiter)
        try:
            backend = await asyncio.wait_for(asyncio.shield(waiter.future), timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            self._abandon(waiter)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise errors.unavailable(
                f"every member stayed busy for {timeout_s:g}s; try again shortly",
                code="queue_timeout", retry_after=self.retry_after()) from None  # fmt: skip
        return backend, time.monotonic() - started

    def _abandon(self, waiter: Waiter) -> None:
        if waiter in self.queue:
            self.queue.remove(waiter)
        if waiter.future.done() and not waiter.future.cancelled():
            # A slot was handed over just as the waiter gave up: give it back.
            self.release(waiter.future.result())
        else:
            waiter.future.cancel()

    def release(self, backend: Backend) -> None:
        inflight.release(backend.id)
        self.dispatch()

    def dispatch(self) -> None:
        """Hand free slots to waiters, oldest first. A waiter that can't use any free member
        (it excludes them: a retry) lets the next one go ahead."""
        if not self.queue:
            return
        for waiter in list(self.queue):
            if not any(b.has_room for b in self.registry.routable()):
                return
            if waiter.future.done():
                self.queue.remove(waiter)
                continue
            backend = self._pick(waiter.ctx, waiter.exclude)
            if backend is not None:
                self.queue.remove(waiter)
                waiter.future.set_result(backend)

    def retry_after(self) -> float:
        """Seconds until a slot is likely free: the queue ahead, served at the pool's pace."""
        from pool import metrics

        mean = metrics.summary(60).get("mean_s") or 1.0
        members = max(1, sum(b.max_inflight for b in self.registry.routable()))
        return max(1.0, mean * (len(self.queue) + 1) / members)
