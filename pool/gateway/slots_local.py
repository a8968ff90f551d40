"""Slots counted in this process (`LocalSlots`): exact when one gateway serves the pool.

The counts themselves live in pool/inflight.py, where the supervisor (which waits for a
draining member to go idle) and the dashboard read them. Its pair, slots_redis.py, keeps
them as leases in Redis shared by several gateways; pool/gateway/assembly.py picks one.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

from pool.gateway.fair import FairClock
from pool.gateway.types import PUBLIC, Lease, RouteContext, Tenant, Turn
from pool.inflight import _counts


class LocalSlots:
    """Slots counted in this process: taking one is a dict update, with no await."""

    at_once = True

    def __init__(self) -> None:
        self.on_freed: list[Callable[[], None]] = []
        self.waiting = 0
        self.clock = FairClock()
        self._positions = itertools.count()

    def cached(self, member_id: int) -> int:
        return _counts.get(member_id, 0)

    count_live = cached

    def lead(self, role: str, ttl_s: float) -> bool:
        return True  # the only process that counts these slots

    def snapshot_live(self) -> dict[int, int]:
        return {member_id: n for member_id, n in _counts.items() if n}

    def waiting_live(self) -> int:
        return self.waiting

    async def report_waiting(self) -> None:
        pass  # waiting_live() reads it here

    def take_now(self, member_id: int, ctx: RouteContext, turn: Turn | None) -> Lease:
        _counts[member_id] += 1
        if turn is None or not turn.entry:  # an arrival with no one waiting, or a retry
            tag = self.clock.tag(ctx.tenant, ctx.tokens, waits=False)
            if not self.waiting:  # a retry goes past the line: the virtual time must not
                self.clock.start(tag)
        else:
            self.clock.start(turn.tag)
        return ""

    async def refresh(self, member_ids: Sequence[int]) -> None:
        pass  # the counts are this process's own: always current

    async def take(self, member_id: int, capacity: int, turn: Turn | None, max_wait_s: float) -> Lease | None:
        if _counts.get(member_id, 0) >= capacity:
            return None
        _counts[member_id] += 1
        return ""

    def give_back(self, member_id: int, lease: Lease) -> None:
        _counts[member_id] = max(0, _counts[member_id] - 1)

    def settle(self, tenant: Tenant, charged: int, used: int) -> None:
        self.clock.settle(tenant, charged, used)

    def turn(self, number: int, arrived: float, ctx: RouteContext | None = None) -> Turn:
        tenant, tokens = (ctx.tenant, ctx.tokens) if ctx else (PUBLIC, 0)
        return Turn(f"{number:012d}", arrived, tenant, tokens)

    async def join_line(self, turn: Turn) -> Turn:
        # One process, one line: the router's own holds the order; the clock tags it.
        return dataclasses.replace(turn, tag=self.clock.tag(turn.tenant, turn.tokens))

    def leave_line(self, turn: Turn, served: bool = True) -> None:
        if not served:
            self.clock.settle(turn.tenant, turn.tokens, 0)

    async def next_position(self) -> int:
        return next(self._positions)
