"""Requests in flight per member, and the slots implementation this process uses.

Exact in one process: the gateway and the supervisor (which waits for a draining member
to go idle) share this process's counts (`LocalSlots`). With REDIS_URL set, several
gateway processes share theirs as leases in Redis (shared_slots.py). `slots()` chooses
once; the module functions below are the short names the rest of the code uses.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings

from pool.gateway.fair import PUBLIC, FairClock, Tenant
from pool.gateway.slots import Lease, Slots, Turn

if TYPE_CHECKING:
    from pool.gateway.backend import RouteContext

_counts: defaultdict[int, int] = defaultdict(int)


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


@cache
def slots() -> Slots:
    """The Redis-backed slots when REDIS_URL is set, else this process's own."""
    if not settings.REDIS_URL:
        return LocalSlots()
    from pool.gateway.shared_slots import SharedSlots

    return SharedSlots(settings.REDIS_URL)


def acquire(member_id: int) -> None:
    _counts[member_id] += 1


def release(member_id: int) -> None:
    _counts[member_id] = max(0, _counts[member_id] - 1)


def count(member_id: int) -> int:
    """Live: across every gateway when they share Redis."""
    return slots().count_live(member_id)


def cached(member_id: int) -> int:
    """For the hot path: no network; what the gateway last read."""
    return slots().cached(member_id)


def snapshot() -> dict[int, int]:
    return slots().snapshot_live()
