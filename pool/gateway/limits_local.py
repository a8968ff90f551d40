"""The limits' counters in this process's memory: exact, and nothing to await. Its pair,
limits_redis.py, keeps them in Redis for gateways that count together (limits.py says how
both count)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from pool.gateway.limits import MINUTE_S, NOTHING, Budget, Cap, Pass, Refused

PRUNE_AT = 50_000  # names kept in memory before idle ones are forgotten


def refill(level: float, since_s: float, per_minute: int) -> float:
    return min(float(per_minute), level + since_s * per_minute / MINUTE_S)


class LocalLimits:
    """The counters in this process: exact, and nothing to await."""

    def __init__(self) -> None:
        self.levels: dict[str, tuple[float, float]] = {}  # budget -> (level, when)
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
            self.levels[budget.name] = (level - budget.amount, now)
        for cap in caps:
            self.held[cap.name] = self.held.get(cap.name, 0) + 1
        if len(self.levels) > PRUNE_AT:
            self.forget_idle(now)
        return Pass(budgets, caps)

    def settle(self, taken: Pass, used: Mapping[str, int]) -> None:
        now = time.monotonic()
        for budget in taken.budgets:
            if budget.name in used:
                level = self.level(budget, now) + budget.amount - used[budget.name]
                self.levels[budget.name] = (min(float(budget.per_minute), level), now)
        for cap in taken.caps:
            left = self.held.get(cap.name, 0) - 1
            if left > 0:
                self.held[cap.name] = left
            else:
                self.held.pop(cap.name, None)

    def level(self, budget: Budget, now: float) -> float:
        level, at = self.levels.get(budget.name, (float(budget.per_minute), now))
        return refill(level, now - at, budget.per_minute)

    def forget_idle(self, now: float) -> None:
        """A budget untouched for two minutes is full again (or near it): as if never used."""
        self.levels = {name: state for name, state in self.levels.items() if state[1] > now - 2 * MINUTE_S}
