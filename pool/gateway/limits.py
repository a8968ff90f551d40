"""Counters that limit callers across requests, behind one interface with two homes: this
process's memory, or Redis when several gateways share it (pool/gateway/shared_limits.py).
The gateway picks one when it starts (`make_limits`); the rules that use them (a key's
limits, the solve page's caps) are written once, in pool/gateway/admission.py.

Two kinds of counter:
- a Budget refills continuously at `per_minute` a minute, up to `per_minute` (a token
  bucket): requests per minute take 1 from it, tokens per minute take what a request may
  use at most, and get back what it did not use when it ends (`settle`);
- a Cap counts requests at once (in flight), at most `most`.

`admit` takes from every budget and a place under every cap, or from none of them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

MINUTE_S = 60.0
# Budgets kept in memory at most: past this, the longest untouched is forgotten (as if
# full again), so a flood of new addresses costs memory up to here and no more.
MAX_BUDGETS = 100_000
IDLE_S = 2 * MINUTE_S  # a budget untouched this long is full again: forgotten


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    per_minute: int
    amount: int  # what this request takes

    def wait_s(self, level: float) -> float:
        """Seconds until the budget holds `amount` again."""
        return (self.amount - level) * MINUTE_S / max(self.per_minute, 1)


@dataclass(frozen=True, slots=True)
class Cap:
    name: str
    most: int


@dataclass(frozen=True, slots=True)
class Pass:
    """What an admitted request holds until it is settled."""

    budgets: tuple[Budget, ...] = ()
    caps: tuple[Cap, ...] = ()
    lease: str = ""  # its places under the caps, with Redis


NOTHING = Pass()


class Refused(Exception):
    def __init__(self, limit: Budget | Cap, retry_after: float):
        super().__init__(limit.name)
        self.limit = limit
        self.retry_after = retry_after


class Limits(Protocol):
    async def admit(self, budgets: tuple[Budget, ...], caps: tuple[Cap, ...]) -> Pass:
        """Take from every budget and a place under every cap, or raise Refused (the first
        limit that stops it, and when it may let the request through)."""
        ...

    def settle(self, taken: Pass, used: Mapping[str, int]) -> None:
        """The request ended: its places go back, and a budget named in `used` gets back
        what it took less what was used (or loses the excess)."""
        ...


def make_limits() -> Limits:
    """Redis's when REDIS_URL is set (several gateways count together), else this process's."""
    if settings.REDIS_URL:
        from pool.gateway.shared_limits import RedisLimits

        return RedisLimits(settings.REDIS_URL)
    return LocalLimits()


def refill(level: float, since_s: float, per_minute: int) -> float:
    return min(float(per_minute), level + since_s * per_minute / MINUTE_S)


class LocalLimits:
    """The counters in this process: exact, and nothing to await."""

    def __init__(self) -> None:
        # budget -> (level, when), oldest write first: expiry pops from the front, O(1) a request.
        self.levels: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.held: dict[str, int] = {}  # cap -> requests under it

    async def admit(self, budgets: tuple[Budget, ...], caps: tuple[Cap, ...]) -> Pass:
        if not (budgets or caps):
            return NOTHING
        now = time.monotonic()
        for cap in caps:
            if self.held.get(cap.name, 0) >= cap.most:
                raise Refused(cap, 1.0)
        levels = [self.level(budget, now) for budget in budgets]
        for budget, level in zip(budgets, levels, strict=True):
            if level < budget.amount:
                raise Refused(budget, budget.wait_s(level))
        for budget, level in zip(budgets, levels, strict=True):
            self.write(budget.name, level - budget.amount, now)
        for cap in caps:
            self.held[cap.name] = self.held.get(cap.name, 0) + 1
        self.forget_idle(now)
        return Pass(budgets, caps)

    def settle(self, taken: Pass, used: Mapping[str, int]) -> None:
        now = time.monotonic()
        for budget in taken.budgets:
            if budget.name in used:
                level = self.level(budget, now) + budget.amount - used[budget.name]
                self.write(budget.name, min(float(budget.per_minute), level), now)
        for cap in taken.caps:
            left = self.held.get(cap.name, 0) - 1
            if left > 0:
                self.held[cap.name] = left
            else:
                self.held.pop(cap.name, None)

    def level(self, budget: Budget, now: float) -> float:
        level, at = self.levels.get(budget.name, (float(budget.per_minute), now))
        return refill(level, now - at, budget.per_minute)

    def write(self, name: str, level: float, now: float) -> None:
        self.levels[name] = (level, now)
        self.levels.move_to_end(name)

    def forget_idle(self, now: float) -> None:
        """A budget untouched for two minutes is full again: as if never used. The oldest
        are at the front, so each request pops only what expired (no walk of the table);
        past MAX_BUDGETS the oldest go too."""
        levels = self.levels
        while levels and (len(levels) > MAX_BUDGETS or next(iter(levels.values()))[1] <= now - IDLE_S):
            levels.popitem(last=False)
