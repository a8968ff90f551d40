"""Counters that limit callers across requests, behind one interface with two homes: this
process's memory (limits_local.py), or Redis when several gateways share it (limits_redis.py).
The gateway picks one when it is assembled (assembly.py); the rules that use them (a key's
limits, the solve page's caps) are written once, in pool/gateway/admission.py.

Two kinds of counter:
- a Budget refills continuously at `per_minute` a minute, up to `per_minute` (a token
  bucket): requests per minute take 1 from it, tokens per minute take what a request may
  use at most, and get back what it did not use when it ends (`settle`);
- a Cap counts requests at once (in flight), at most `most`.

`admit` takes from every budget and a place under every cap, or from none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

MINUTE_S = 60.0


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
