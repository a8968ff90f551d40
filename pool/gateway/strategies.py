"""Load-balancing strategies: which member gets the next request.

Each strategy is a small class with one method, `pick(members, ctx)`. `members` are the
routable (ready) members; `pick` returns one that has room (in-flight below its
max_inflight), or None when none has, and the gateway then queues the request.
Ties are broken at random, never toward the first member: a tie-break that always
chose the first sent 94% of traffic to one backend elsewhere.

Strategies run on the gateway's event loop only, so their state needs no lock.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import random
import time
from collections.abc import Sequence

from pool.gateway.backend import Backend
from pool.gateway.types import RouteContext

EWMA_TAU_S = 10.0
RING_VNODES = 160  # as ketama: enough virtual nodes that each member owns an even share


def with_room(members: Sequence[Backend]) -> list[Backend]:
    return [m for m in members if m.has_room]


def weight(member: Backend) -> int:
    # The model allows 0; treat it as 1. Draining, not a zero weight, takes a member out.
    return max(member.weight, 1)


class Strategy:
    # Whether the strategy keeps a turn that gateways sharing slots must share too: the
    # router then hands it the shared position (follow) before each pick.
    shares_turns = False

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def follow(self, position: int) -> None:
        """Take up the turn every gateway shares (only where shares_turns)."""

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        raise NotImplementedError

    def cheapest(self, members: Sequence[Backend], cost) -> Backend | None:
        """The member with room of lowest cost; a random one among the tied."""
        candidates = with_room(members)
        if not candidates:
            return None
        best = min(cost(m) for m in candidates)
        return self.rng.choice([m for m in candidates if cost(m) == best])


class RoundRobin(Strategy):
    """Each member in turn; a member without room is skipped, not queued for."""

    shares_turns = True

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self.next = 0

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        for step in range(len(members)):
            i = (self.next + step) % len(members)
            if members[i].has_room:
                self.next = i + 1
                return members[i]
        return None

    def follow(self, position: int) -> None:
        self.next = position


class LeastConnections(Strategy):
    """Fewest requests in flight per unit of weight.

    Divided by weight, as nginx's least_conn does: weight is the operator's one knob for
    "this member is faster" (a GPU member beside CPU ones). With equal weights it is the
    plain in-flight count.
    """

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        return self.cheapest(members, lambda m: m.inflight / weight(m))


class WeightedRoundRobin(Strategy):
    """nginx's smooth weighted round robin: weights 5,1,1 give a a b a c a a."""

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self.current: dict[int, int] = {}  # member id -> nginx's current_weight

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        # A member left out (full, excluded for a retry, gone) keeps its credit, as nginx
        # keeps a down peer's, so a short absence costs it no share; a newcomer starts at 0.
        candidates = with_room(members)
        if not candidates:
            return None
        for m in candidates:
            self.current[m.id] = self.current.get(m.id, 0) + weight(m)
        # max() keeps the first of equals, as nginx does: the sequence is deterministic.
        best = max(candidates, key=lambda m: self.current[m.id])
        self.current[best.id] -= sum(weight(m) for m in candidates)
        return best


def stable_hash(key: str) -> int:
    # Python's hash() is salted per process; the ring must agree across restarts.
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=32)
def hash_ring(names: tuple[str, ...]) -> list[tuple[int, str]]:
    # Cached: a retry that leaves one member out would otherwise rebuild it twice.
    return sorted((stable_hash(f"{n}#{v}"), n) for n in names for v in range(RING_VNODES))


class IpHash(Strategy):
    """A consistent-hash ring of client addresses: a member leaving remaps only its clients.

    The ring is keyed by member name, so it is the same in every process and after a
    restart. When the owner has no room, the request goes to the next member on the ring.
    """

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        by_name = {m.name: m for m in members}
        ring = hash_ring(tuple(sorted(by_name)))
        start = bisect.bisect(ring, (stable_hash(ctx.client),))
        seen: set[str] = set()
        for step in range(len(ring)):
            name = ring[(start + step) % len(ring)][1]
            if name not in seen:
                seen.add(name)
                if by_name[name].has_room:
                    return by_name[name]
                if len(seen) == len(by_name):
                    break
        return None


class PowerOfTwo(Strategy):
    """Two random members with room; the less loaded one wins.

    Nearly as good as least connections, without every gateway rushing to the same
    member when the counts are stale (as they are across several gateway processes).
    """

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        candidates = with_room(members)
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        # sample() returns the pair in random order and min() keeps the first of equals,
        # so a tie goes either way at random.
        pair = self.rng.sample(candidates, 2)
        return min(pair, key=lambda m: m.inflight / weight(m))


def ewma_estimate(backend: Backend, now: float) -> float:
    """The latency estimate, fading toward zero while no samples arrive.

    The fade is what gives a member that once had one slow request traffic again.
    """
    return backend.ewma_s * math.exp(-max(0.0, now - backend.ewma_at) / EWMA_TAU_S)


def record_latency(backend: Backend, seconds: float, now: float | None = None) -> None:
    """Feed one request's latency into the member's peak EWMA (the gateway calls this)."""
    now = time.monotonic() if now is None else now
    estimate = ewma_estimate(backend, now)
    if backend.ewma_at <= 0 or seconds > estimate:
        backend.ewma_s = seconds  # a new peak counts in full at once: react to slowdowns fast
    else:
        # The older the estimate, the more the new sample counts; it never raises the cost.
        keep = math.exp(-max(0.0, now - backend.ewma_at) / EWMA_TAU_S)
        backend.ewma_s = estimate * keep + seconds * (1 - keep)
    backend.ewma_at = now


class PeakEwma(Strategy):
    """Latency-aware (Finagle's and Linkerd's peak EWMA): cost = latency * (in flight + 1).

    A member with no samples yet costs 0, so a new member is tried first. Linkerd pairs
    this cost with power-of-two over thousands of endpoints; a pool has a handful, so
    comparing all of them is cheap and exact.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self.clock = time.monotonic  # the clock record_latency() uses by default

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        now = self.clock()
        return self.cheapest(members, lambda m: ewma_estimate(m, now) * (m.inflight + 1))


class LeastWork(Strategy):
    """Least outstanding work: the tokens a member's requests in flight may generate (their
    max_tokens), this request's included, per unit of weight.

    Least connections counts a 64-token request like a 2048-token one; this counts what a
    member still has to do. The work is what this gateway process sent there (as
    peak-EWMA's latency is what it saw): gateways sharing Redis each see their own share.
    """

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        # With equal weights this request's tokens change no order; with unequal ones they
        # send it to the member that would finish it first.
        return self.cheapest(members, lambda m: (m.work + ctx.tokens) / weight(m))


# One class for each name the operators may choose (pool.models.pool_settings.STRATEGIES).
STRATEGIES: dict[str, type[Strategy]] = {
    "round_robin": RoundRobin,
    "least_connections": LeastConnections,
    "weighted_round_robin": WeightedRoundRobin,
    "ip_hash": IpHash,
    "power_of_two": PowerOfTwo,
    "peak_ewma": PeakEwma,
    "least_work": LeastWork,
}


class UnknownStrategy(ValueError, KeyError):
    """A bad name: a ValueError to argument checks, a KeyError to dict-minded callers."""

    def __str__(self) -> str:
        return self.args[0]


def make_strategy(name: str, rng: random.Random | None = None) -> Strategy:
    if name not in STRATEGIES:
        raise UnknownStrategy(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](rng)
