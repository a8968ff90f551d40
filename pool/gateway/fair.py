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

import bisect
import dataclasses
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
RETRY = float("-inf")  # a retry's tag: it waited its turn once
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
    """One tenant's waiters: its places in the line (first level: each waiter's start tag,
    in arrival order) and, apart, its waiters in turn between its students (second level).
    The tenant's k-th place goes to its k-th waiter in turn: a waiter is handed the place
    before it is served (`promote`), so the line between tenants is never changed by it."""

    tenant: Tenant
    places: deque = field(default_factory=deque)  # place() tuples, lowest first
    owner: dict = field(default_factory=dict)  # place -> the waiter holding it
    turns: list = field(default_factory=list)  # (student tag, number, waiter), lowest first
    finish: dict = field(default_factory=dict)  # student -> its finish tag in this tenant
    waiting: dict = field(default_factory=dict)  # student -> its waiters in line
    v: float = 0.0  # the second level's virtual time: the student tag last served
    tokens: int = 0

    def __len__(self) -> int:
        return len(self.places)

    def join(self, waiter: Waiter) -> None:
        """Start-time fair queuing again, between the tenant's students, in tokens; a retry
        (no turn in the shared line) goes first, as in the first level."""
        ctx = waiter.ctx
        student = ctx.student
        if waiter.turn is None and waiter.tag == RETRY:
            tag = RETRY
        else:
            finish = self.finish.get(student, 0.0)
            tag = finish if finish > self.v else self.v
            self.finish[student] = tag + (ctx.tokens if ctx.tokens > 1 else 1)
        entry = (tag, waiter.number, waiter)
        waiter.second = entry[:2]
        turns = self.turns
        if not turns or turns[-1] < entry:  # nearly always a newcomer: no search
            turns.append(entry)
        else:
            bisect.insort(turns, entry)
        self.waiting[student] = self.waiting.get(student, 0) + 1

    def leave(self, waiter: Waiter) -> None:
        turns = self.turns
        at = 0 if turns[0][2] is waiter else bisect.bisect_left(turns, waiter.second)
        del turns[at]
        if at == 0 and waiter.second[0] > self.v:
            self.v = waiter.second[0]
        student = waiter.ctx.student
        left = self.waiting[student] - 1
        if left:
            self.waiting[student] = left
        else:
            del self.waiting[student]
            if not self.waiting:
                self.finish.clear()  # nobody waits: no student banks a debt or a credit

    def promote(self, k: int) -> Waiter:
        """The k-th waiter in turn, holding the tenant's k-th place (swapped with whoever held it)."""
        waiter = self.turns[k][2]
        at = self.places[k]
        holder = self.owner[at]
        if holder is not waiter:
            mine = place(waiter)
            mine_turn, theirs = waiter.turn, holder.turn
            if mine_turn is not None and theirs is not None and mine_turn.tokens != theirs.tokens:
                # Each keeps the tokens it asked for: a turn's charge is settled by its own.
                mine_turn, theirs = (
                    dataclasses.replace(mine_turn, tokens=theirs.tokens),
                    dataclasses.replace(theirs, tokens=mine_turn.tokens),
                )
            waiter.turn, holder.turn = theirs, mine_turn
            waiter.tag, holder.tag = holder.tag, waiter.tag
            waiter.number, holder.number = holder.number, waiter.number
            self.owner[at], self.owner[mine] = waiter, holder
        return waiter

    def newest_of_busiest(self, student: str) -> Waiter | None:
        """The newest waiter of the student with the most waiting, if it has more than one
        beyond `student`'s (so taking its place evens them out); else None."""
        mine = self.waiting.get(student, 0)
        busiest = max(self.waiting, key=self.waiting.__getitem__)
        if self.waiting[busiest] <= mine + 1:
            return None
        for *_, waiter in reversed(self.turns):  # its newest has the highest student tag
            if waiter.ctx.student == busiest:
                return waiter
        return None


class FairLine:
    """This process's waiters in fair order: the lowest (class, place) first, then, within a
    tenant, its students in turn (TenantLine). A tenant's places are kept in order, which is
    their arrival order (tags never go back within a tenant), so the first is the least of
    the tenants' first places (a heap); the same order as the shared line in Redis, so
    gateways never wait on each other."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantLine] = {}
        self._count = 0
        self._numbers = itertools.count()
        # Each tenant's first place, by (class, place); entries of places no longer first
        # are dropped when they come up. A serial number keeps lines from being compared.
        self._heads: list[tuple] = []
        self._serial = itertools.count()
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
        mine = place(waiter)
        # In tag order, which is arrival order in the line: with shared slots, tags come
        # from Redis in the order the joins reached it, which may not be the order they
        # come back in. Nearly always the end.
        places = line.places
        at = len(places)
        while at and places[at - 1] > mine:
            at -= 1
        places.insert(at, mine)
        line.owner[mine] = waiter
        line.join(waiter)
        line.tokens += waiter.ctx.tokens
        self.class_tokens[tenant.batch] += waiter.ctx.tokens
        self._count += 1
        if at == 0:
            self._head(line)

    def _head(self, line: TenantLine) -> None:
        heapq.heappush(self._heads, (line.tenant.batch, *line.places[0], next(self._serial), line))

    def remove(self, waiter: Waiter) -> None:
        """Out of the line with the place it holds (a served waiter was promoted to the first)."""
        line = self.tenants[waiter.ctx.tenant.id]
        mine = place(waiter)
        if line.places[0] == mine:
            line.places.popleft()
            if line.places:
                self._head(line)
        else:
            line.places.remove(mine)
        del line.owner[mine]
        line.leave(waiter)
        waiter.queued = False
        line.tokens -= waiter.ctx.tokens
        self.class_tokens[line.tenant.batch] -= waiter.ctx.tokens
        self._count -= 1
        if not line.places:
            del self.tenants[waiter.ctx.tenant.id]
            self.class_weights[line.tenant.batch] -= max(line.tenant.weight, 1)

    def first(self) -> Waiter | None:
        heads = self._heads
        while heads:
            head = heads[0]
            line: TenantLine = head[-1]
            if self.tenants.get(line.tenant.id) is line and line.places[0] == head[1:-2]:
                return line.promote(0)
            heapq.heappop(heads)  # served, gone, or no longer its tenant's first
        return None

    def __iter__(self) -> Iterator[Waiter]:
        """Every waiter, in the order they would be served (for the rare walk past a waiter
        that can use no free member), each promoted to its place as it comes."""

        def keyed(line: TenantLine):
            for k in range(len(line.turns)):
                if k >= len(line.turns):  # the walk handed some out meanwhile
                    return
                yield (line.tenant.batch, *line.places[k]), line.promote(k)

        for _, waiter in heapq.merge(
            *(keyed(line) for line in list(self.tenants.values())), key=lambda kw: kw[0]
        ):
            yield waiter

    def work_ahead(self, tenant: Tenant, tokens: int, student: str = "") -> int:
        """Tokens that would start before a request of `tenant` (and its `student`) joining
        now: of its own tenant's, those before its turn (their share of the tenant's tokens,
        by count); of every other tenant in its class as much as fair shares give them
        meanwhile (their weight's worth for each unit of this tenant's); under batch, all
        that interactive tenants wait for. Exact over a few tenants; over many, the class's
        bound, min(their tokens, their weights' worth), kept as running sums (O(1))."""
        own = self.tenants.get(tenant.id)
        mine = own_ahead(own, student) if own else 0
        weight = max(tenant.weight, 1)
        need = (mine + max(tokens, 1)) / weight
        ahead: float = mine + (self.class_tokens[0] if tenant.batch else 0)
        batch = tenant.batch
        held = own.tokens if own else 0
        if len(self.tenants) > EXACT_UP_TO:
            others = self.class_weights[batch] - (weight if own else 0)
            return int(ahead + min(self.class_tokens[batch] - held, need * others))
        for line in self.tenants.values():
            if line is not own and line.tenant.batch == batch:
                share = need * max(line.tenant.weight, 1)
                ahead += line.tokens if line.tokens < share else share
        return int(ahead)

    def displaced_by(self, tenant: Tenant, size: int, student: str = "") -> Waiter | None:
        """When the line holds `size`, the waiter a newcomer of `tenant` takes the place of:
        the newest of the tenant most over its share, if the newcomer's tenant is under its
        own. A tenant's share is the line's size split by weight among the tenants in it
        and the newcomer's; so one tenant can fill an idle line, but never keep the others
        out of it. A tenant at its share makes room the same way between its students: the
        newest of its student with the most waiting, if the newcomer's has fewer. None when
        neither (it gets the 429)."""
        own = self.tenants.get(tenant.id)
        weights = self.class_weights[0] + self.class_weights[1] + (0 if own else max(tenant.weight, 1))
        if (len(own) if own else 0) >= size * max(tenant.weight, 1) / weights:
            return own.newest_of_busiest(student) if own else None
        most = max(self.tenants.values(), key=lambda line: len(line) / max(line.tenant.weight, 1))
        if len(most) <= size * max(most.tenant.weight, 1) / weights:
            return None  # no one is over its share (the line holds more than `size`: it shrank)
        return most.turns[-1][-1]

    def waiting_by_tenant(self) -> dict[str, int]:
        return {line.tenant.name: len(line) for line in self.tenants.values()}


def own_ahead(line: TenantLine, student: str) -> int:
    """A newcomer's own tenant's tokens that go before it: the waiters before its turn."""
    tag = max(line.v, line.finish.get(student, line.v))
    before = bisect.bisect_right(line.turns, (tag, float("inf")))
    return line.tokens * before // max(len(line.turns), 1)


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
