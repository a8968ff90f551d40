"""A router over stand-in members, with this process's own slots and no HTTP: exact and
fast, for the fair line's tests and the router's benchmark. Requests hold their slot
until the test finishes them."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from pool import inflight
from pool.gateway.backend import Backend
from pool.gateway.router import Router
from pool.gateway.slots_local import LocalSlots
from pool.gateway.strategies import make_strategy
from pool.gateway.types import RouteContext, Tenant


@dataclass
class Policy:
    queue_size: int = 10_000
    queue_timeout_s: float = 60.0


@dataclass
class StandInRegistry:
    """What the router reads of the registry: the members, the strategy, the policy."""

    backends: list[Backend]
    strategy: object = field(default_factory=lambda: make_strategy("least_connections", random.Random(1)))
    policy: Policy = field(default_factory=Policy)
    listeners: list = field(default_factory=list)

    def routable(self, model: str = "") -> list[Backend]:
        return self.backends  # one model: every stand-in serves it


class Pool:
    """A router over `slots` slots on stand-in members; requests hold their slot until finished."""

    def __init__(self, slots: int, **policy) -> None:
        inflight._counts.clear()
        self.backends = [Backend(900 + i, f"m{i}", "http://127.0.0.1:9") for i in range(slots)]
        self.slots = LocalSlots()
        self.router = Router(StandInRegistry(self.backends, policy=Policy(**policy)), self.slots)  # type: ignore[arg-type]
        self.started: list[tuple[str, int]] = []  # (tenant, request number), in start order
        self.running: list = []
        self.waiting: dict[int, asyncio.Task] = {}
        self.numbers = 0

    def arrive(
        self, tenant: Tenant, tokens: int = 100, exclude: frozenset[int] = frozenset(), student: str = ""
    ) -> int:
        self.numbers += 1
        number = self.numbers

        async def one():
            slot, _ = await self.router.acquire(RouteContext("", tokens, tenant, student=student), exclude)
            self.started.append((tenant.name, number))
            self.running.append(slot)

        self.waiting[number] = asyncio.ensure_future(one())
        return number

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    def finish(self, index: int = 0, used: int | None = None) -> None:
        slot = self.running.pop(index)
        self.router.release(slot, used=slot.tokens if used is None else used)

    async def finish_in_turn(self, count: int = 1) -> None:
        """Finish the oldest running request and let the line start the next, `count` times."""
        for _ in range(count):
            self.finish()
            await self.settle()

    def drifted(self) -> str | None:
        if self.slots.waiting != len(self.router.queue):
            return f"waiting count {self.slots.waiting} against {len(self.router.queue)} in line"
        return None

    async def close(self) -> None:
        for task in self.waiting.values():
            task.cancel()
        await asyncio.gather(*self.waiting.values(), return_exceptions=True)
        inflight._counts.clear()
