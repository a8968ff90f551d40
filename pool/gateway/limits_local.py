"""The limits' counters in this process's memory: exact, and nothing to await. Its pair,
limits_redis.py, keeps them in Redis for gateways that count together (limits.py says how
both count)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping

from pool.gateway.limits import MINUTE_S, NOTHING, Budget, Cap, Pass, Refused

# Budgets kept in memory at most: past this, the longest untouched is forgotten (as if
# full again), so a flood of new addresses costs memory up to here and no more.
MAX_BUDGETS = 100_000
IDLE_S = 2 * MINUTE_S  # a budget untouched this long is full again: forgotten


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
