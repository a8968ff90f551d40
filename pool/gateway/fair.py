"""Fair sharing of the pool between tenants, when every member is full.

A tenant is an API key, or the solve page (whose students, and keyless /v1/ callers when
the operator opens it, share one tenant). Each has a weight and a priority class.

The order is start-time fair queuing (SFQ; Goyal, Vin and Cheng, 1996), with service
counted in tokens: a request is tagged S = max(V, F[tenant]) when it joins the line (or
starts at once), and its tenant's finish tag moves to F = S + max_tokens / weight. The
line serves the lowest tag first; V, the virtual time, is the tag of the latest request
to start. A tenant idle for a while comes back at V, not at its old finish tag: it banks
no credit. When a request ends, its charge is settled to the tokens it really generated.
Within a tenant, arrival order; batch tenants only get slots no interactive waiter wants.
The same arithmetic runs in Redis (slots_redis.py) when gateways share their line.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from pool.gateway.types import Tenant, Waiter

BATCH = "batch"
# Batch tags sort after every interactive one (Redis keeps both in one sorted set).
BATCH_OFFSET = 1e12
# Pace figures fade with each release: about the last hundred count.
PACE_KEEP = 0.99
PACE_MIN_SAMPLES = 20
# Predicting a wait looks at each tenant waiting up to this many; beyond, a bound.
EXACT_UP_TO = 32


class FairClock:
    """SFQ's virtual time and each tenant's finish tag, in one process."""

    def __init__(self) -> None:
        self.v = 0.0
        self.finish: dict[str, float] = {}
        self.joined: dict[str, float] = {}  # each tenant's last tag in line

    def tag(self, tenant: Tenant, tokens: int, *, waits: bool = True) -> float:
        """The start tag of a request joining the line (or, waits=False, starting at once);
        its tenant is charged now. Never below the tenant's last tag in line, though
        settling may have moved its finish tag back: a tenant's line keeps arrival order."""
        start = max(self.v, self.finish.get(tenant.id, 0.0), self.joined.get(tenant.id, 0.0))
        self.finish[tenant.id] = start + tenant.cost(tokens)
        if waits:
            self.joined[tenant.id] = start
        return start

    def start(self, tag: float) -> None:
        if tag > self.v:
            self.v = tag

    def settle(self, tenant: Tenant, charged: int, used: int) -> None:
        """Give back what a request was charged and did not use (all of it, if it never ran)."""
        if used < charged and tenant.id in self.finish:
            self.finish[tenant.id] -= (max(charged, 1) - used) / max(tenant.weight, 1)


@dataclass(eq=False)
class TenantLine:
    """One tenant's waiters, in arrival order, and the tokens they asked for."""

    tenant: Tenant
    waiters: deque = field(default_factory=deque)
    tokens: int = 0


class FairLine:
    """This process's waiters in fair order: the lowest (class, place) first. Each tenant's
    waiters are kept in place order, which is their arrival order (tags never go back
    within a tenant), so the first is the least of the tenants' first waiters (a heap); the
    same order as the shared line in Redis, so gateways never wait on each other."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantLine] = {}
        self._count = 0
        self._numbers = itertools.count()
        # Each tenant's first waiter, by (class, place); entries of waiters no longer first
        # are dropped when they come up.
        self._heads: list[tuple] = []
        # Per class (interactive, batch): tokens waiting, and the weights of the tenants waiting.
        self.class_tokens = [0, 0]
        self.class_weights = [0, 0]

    def __len__(self) -> int:
        return self._count

    def push(self, waiter: Waiter) -> None:
        tenant = waiter.ctx.tenant
        line = self.tenants.get(tenant.id)
        if line is None:
            line = self.tenants[tenant.id] = TenantLine(tenant)
            self.class_weights[tenant.batch] += max(tenant.weight, 1)
        waiter.number = next(self._numbers)
        waiter.queued = True
        # In tag order, which is arrival order in the line: with shared slots, tags come
        # from Redis in the order the joins reached it, which may not be the order they
        # come back in. Nearly always the end.
        at = len(line.waiters)
        while at and place(line.waiters[at - 1]) > place(waiter):
            at -= 1
        line.waiters.insert(at, waiter)
        line.tokens += waiter.ctx.tokens
        self.class_tokens[tenant.batch] += waiter.ctx.tokens
        self._count += 1
        if at == 0:
            self._head(line)

    def _head(self, line: TenantLine) -> None:
        head = line.waiters[0]
        heapq.heappush(self._heads, (line.tenant.batch, *place(head), head))

    def remove(self, waiter: Waiter) -> None:
        line = self.tenants[waiter.ctx.tenant.id]
        if line.waiters[0] is waiter:
            line.waiters.popleft()
            if line.waiters:
                self._head(line)
        else:
            line.waiters.remove(waiter)
        waiter.queued = False
        line.tokens -= waiter.ctx.tokens
        self.class_tokens[line.tenant.batch] -= waiter.ctx.tokens
        self._count -= 1
        if not line.waiters:
            del self.tenants[waiter.ctx.tenant.id]
            self.class_weights[line.tenant.batch] -= max(line.tenant.weight, 1)

    def first(self) -> Waiter | None:
        heads = self._heads
        while heads:
            waiter = heads[0][-1]
            line = self.tenants.get(waiter.ctx.tenant.id) if waiter.queued else None
            if line is not None and line.waiters[0] is waiter:
                return waiter
            heapq.heappop(heads)  # served, gone, or no longer its tenant's first
        return None

    def __iter__(self) -> Iterator[Waiter]:
        """Every waiter, in the order they would be served (for the rare walk past a waiter
        that can use no free member)."""

        def keyed(line: TenantLine):
            for w in list(line.waiters):
                yield (line.tenant.batch, *place(w)), w

        for _, waiter in heapq.merge(
            *(keyed(line) for line in list(self.tenants.values())), key=lambda kw: kw[0]
        ):
            yield waiter

    def work_ahead(self, tenant: Tenant, tokens: int) -> int:
        """Tokens that would start before a request of `tenant` joining now: all of its own
        tenant's, and of every other tenant in its class as much as fair shares give them
        meanwhile (their weight's worth for each unit of this tenant's); under batch, all
        that interactive tenants wait for. Exact over a few tenants; over many, the class's
        bound, min(their tokens, their weights' worth), kept as running sums (O(1))."""
        own = self.tenants.get(tenant.id)
        mine = own.tokens if own else 0
        weight = max(tenant.weight, 1)
        need = (mine + max(tokens, 1)) / weight
        ahead: float = mine + (self.class_tokens[0] if tenant.batch else 0)
        batch = tenant.batch
        if len(self.tenants) > EXACT_UP_TO:
            others = self.class_weights[batch] - (weight if own else 0)
            return int(ahead + min(self.class_tokens[batch] - mine, need * others))
        for line in self.tenants.values():
            if line is not own and line.tenant.batch == batch:
                share = need * max(line.tenant.weight, 1)
                ahead += line.tokens if line.tokens < share else share
        return int(ahead)

    def displaced_by(self, tenant: Tenant, size: int) -> Waiter | None:
        """When the line holds `size`, the waiter a newcomer of `tenant` takes the place of:
        the newest of the tenant most over its share, if the newcomer's tenant is under its
        own. A tenant's share is the line's size split by weight among the tenants in it
        and the newcomer's; so one tenant can fill an idle line, but never keep the others
        out of it. None when the newcomer's tenant already has its share (it gets the 429)."""
        own = self.tenants.get(tenant.id)
        weights = self.class_weights[0] + self.class_weights[1] + (0 if own else max(tenant.weight, 1))
        if (len(own.waiters) if own else 0) >= size * max(tenant.weight, 1) / weights:
            return None
        most = max(self.tenants.values(), key=lambda line: len(line.waiters) / max(line.tenant.weight, 1))
        if len(most.waiters) <= size * max(most.tenant.weight, 1) / weights:
            return None  # no one is over its share (the line holds more than `size`: it shrank)
        return most.waiters[-1]

    def waiting_by_tenant(self) -> dict[str, int]:
        return {line.tenant.name: len(line.waiters) for line in self.tenants.values()}


def place(waiter: Waiter) -> tuple[float, str, int]:
    """A waiter's place in line: its tag; on a tie, its entry in the shared line (as Redis
    orders them: zero-padded numbers, so arrival order), then when it came here."""
    return waiter.tag, waiter.turn.entry if waiter.turn else "", waiter.number


class Pace:
    """How fast the pool gets through work, in tokens of max_tokens per second per slot,
    from the slots given back lately (a slot's pace does not depend on how busy the pool is)."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.seconds = 0.0
        self.requests = 0.0
        self.samples = 0

    def record(self, tokens: int, seconds: float) -> None:
        self.tokens = self.tokens * PACE_KEEP + max(tokens, 1)
        self.seconds = self.seconds * PACE_KEEP + seconds
        self.requests = self.requests * PACE_KEEP + 1
        self.samples += 1

    def predict(self, ahead: int, slots: int) -> float | None:
        """Seconds until a request with `ahead` tokens of work before it gets a slot, when
        every one of `slots` is busy; None until enough requests were measured."""
        if self.samples < PACE_MIN_SAMPLES or self.seconds <= 0 or slots < 1:
            return None
        per_slot = self.tokens / self.seconds
        mean_request = self.tokens / self.requests
        # The work ahead must start first; then, on average, half a request's worth until
        # the next slot frees.
        return (ahead + 0.5 * mean_request) / (per_slot * slots)
