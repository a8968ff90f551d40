"""Choosing a member for each request, and waiting when every member is full.

A request takes a slot on a member until it ends. When no routable member has room, it
waits in one bounded line with a deadline, in fair order between tenants (fair.py:
start-time fair queuing, counted in tokens; batch after interactive); released slots (and,
when gateways share slots in Redis, a short poll for slots freed elsewhere) go to the first
in that order. Nothing waits forever: a full line answers 429; a request that cannot start
before the deadline, as predicted from the work ahead of it and the pool's measured pace,
503 at once; a passed deadline 503; all with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from pool import metrics
from pool.gateway import errors
from pool.gateway.affinity import Affinity
from pool.gateway.backend import Backend
from pool.gateway.fair import FairLine, Pace
from pool.gateway.registry import Registry
from pool.gateway.slots import Slots
from pool.gateway.tasks import spawn
from pool.gateway.types import PUBLIC, Lease, NotYourTurn, RouteContext, Tenant, Turn, Waiter

log = logging.getLogger("pool.gateway")

# With shared slots, other gateways announce freed slots; waiters also look this often,
# for slots freed without an announcement (a crashed gateway's leases expiring).
SHARED_POLL_S = 0.1
# A pick can lose its slot to another gateway between reading counts and taking it.
SHARED_PICK_TRIES = 3
# The turn of a request that just came: it goes ahead only if no one waits before it.
ARRIVING = Turn("", 0.0)


@dataclass(eq=False)
class Slot:
    """One request's place on one member, and the work it brought there."""

    backend: Backend
    tokens: int = 0  # added to the member's work while the slot is held; its tenant's charge
    lease: Lease = ""  # set when the slot is a lease in Redis
    tenant: Tenant = PUBLIC
    taken_at: float = 0.0  # monotonic: how long it was held gives the pool's pace


def occupy(backend: Backend, ctx: RouteContext, lease: Lease = "") -> Slot:
    """The slot a request takes; its tokens count as the member's work until it is released."""
    backend.work += ctx.tokens
    return Slot(backend, ctx.tokens, lease, ctx.tenant, time.monotonic())


@dataclass(eq=False)
class Watch:
    """A request's view of its waiter while it waits in line (the honest wait, progress.py)."""

    waiter: Waiter | None = None


class Router:
    def __init__(self, registry: Registry, slots: Slots):
        self.registry = registry
        self.slots = slots
        self.queue = FairLine()
        # Over the strategy, not one of them: any strategy gains from warm caches.
        self.affinity = Affinity() if settings.VIBEADMIN_PROMPT_AFFINITY else None
        self.pace = Pace()
        self.served: dict[str, int] = {}  # tokens generated per tenant since the last sample
        self._dispatching = False
        self._again = False
        self._poke = asyncio.Event()
        self._numbers = 0  # this gateway's waiters, numbered for the shared line
        registry.listeners.append(self.wake)
        self.slots.on_freed.append(self.wake)

    async def take(self, ctx: RouteContext, exclude: frozenset[int], turn: Turn | None = None) -> Slot | None:
        """A slot on the member the strategy picks, or None if no member has room. With
        shared slots, raises NotYourTurn while an earlier request waits in any gateway."""
        if self.slots.at_once:
            return self.take_here(ctx, exclude, turn)
        if turn is ARRIVING:
            turn = Turn("", time.time(), ctx.tenant, ctx.tokens)
        members = [m for m in self.registry.routable(ctx.model) if m.id not in exclude]
        await self.slots.refresh([m.id for m in members])
        strategy = self.registry.strategy
        if strategy.shares_turns:
            # Turns come from one counter shared by every gateway, so the split stays even.
            strategy.follow(await self.slots.next_position())
        for _ in range(SHARED_PICK_TRIES):
            backend = self.pick(members, ctx)
            if backend is None:
                return None
            lease = await self.slots.take(
                backend.id, backend.max_inflight, turn, max_wait_s=self.registry.policy.queue_timeout_s + 5
            )
            if lease is not None:
                return self.occupy(backend, ctx, lease)
        return None

    def take_here(self, ctx: RouteContext, exclude: frozenset[int], turn: Turn | None) -> Slot | None:
        """take() with this process's own counts: no await, so nothing can come between."""
        backend = self.pick([m for m in self.registry.routable(ctx.model) if m.id not in exclude], ctx)
        if backend is None:
            return None
        return self.occupy(backend, ctx, self.slots.take_now(backend.id, ctx, turn))

    def pick(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        """A sibling sample's member while it has room (the prompt is processed once); the
        member whose cache holds the request's prefix, within the load bound; else the
        strategy's pick."""
        if ctx.near:
            sibling = next((m for m in members if m.id == ctx.near and m.has_room), None)
            if sibling is not None:
                return sibling
        preferred = self.affinity.prefer(members, ctx) if self.affinity is not None else None
        return preferred or self.registry.strategy.pick(members, ctx)

    def occupy(self, backend: Backend, ctx: RouteContext, lease: Lease) -> Slot:
        if self.affinity is not None:
            self.affinity.remember(ctx, backend)
        return occupy(backend, ctx, lease)

    async def acquire(
        self, ctx: RouteContext, exclude: frozenset[int] = frozenset(), watch: Watch | None = None
    ) -> tuple[Slot, float]:
        """A slot taken for this request, and how long it waited for it; `watch` is shown
        its waiter while it waits."""
        if not any(b.id not in exclude for b in self.registry.routable(ctx.model)):
            which = f"serving {ctx.model} " if ctx.model else ""
            raise errors.unavailable(
                f"no member of the pool {which}is ready to serve requests; an operator must start one "
                "(or wait while members start)",
                code="no_ready_member",
                retry_after=5,
            )
        if not self.queue:  # arrivals never jump the line
            with contextlib.suppress(NotYourTurn):
                slot = await self.take(ctx, exclude, ARRIVING)
                if slot is not None:
                    return slot, 0.0
        policy = self.registry.policy
        if len(self.queue) >= policy.queue_size:
            displaced = self.queue.displaced_by(ctx.tenant, policy.queue_size, ctx.student)
            if displaced is None:
                raise self.queue_full()
            self._leave(displaced)  # its place goes to this request; it gets the 429 instead
            displaced.future.set_exception(self.queue_full())
        waiter = Waiter(ctx, exclude)
        if not exclude:
            waiter.predicted_s = self.predict_wait(ctx)
            if waiter.predicted_s is not None and waiter.predicted_s > policy.queue_timeout_s:
                raise self.too_long(ctx, waiter.predicted_s, policy.queue_timeout_s)
        if watch is not None:
            watch.waiter = waiter
        return await self._wait(waiter, policy.queue_timeout_s)

    def queue_full(self) -> errors.ApiError:
        return errors.rate_limited(
            f"every member is busy and {len(self.queue)} requests are already waiting; try again shortly",
            code="queue_full",
            retry_after=self.retry_after(),
        )

    def where(self, watch: Watch) -> tuple[int, float | None] | None:
        """A waiting request's place in this gateway's line (1: next) and its predicted wait
        (seconds, None until the pool's pace is known): the work ahead of it in the order the
        line serves, at that pace. None when it is not waiting."""
        waiter = watch.waiter
        if waiter is None or not waiter.queued:
            return None
        place, ahead = 1, 0
        for other in self.queue:
            if other is waiter:
                break
            place += 1
            ahead += other.ctx.tokens
        capacity = sum(b.max_inflight for b in self.registry.routable(waiter.ctx.model))
        return place, self.pace.predict(ahead, capacity)

    def predict_wait(self, ctx: RouteContext) -> float | None:
        """Seconds until this request would get a slot: the work ahead of it in fair order
        (in this gateway's line), at the pace the pool's slots have lately kept."""
        capacity = sum(b.max_inflight for b in self.registry.routable())
        return self.pace.predict(self.queue.work_ahead(ctx.tenant, ctx.tokens, ctx.student), capacity)

    def too_long(self, ctx: RouteContext, predicted_s: float, timeout_s: float) -> errors.ApiError:
        """Said at once, not after waiting out the deadline; Retry-After from the same prediction."""
        metrics.record_early_rejection(ctx.tenant.name)
        log.info(
            "rejected early: %s would wait about %.2fs (deadline %gs)",
            ctx.tenant.name,
            predicted_s,
            timeout_s,
        )
        return errors.unavailable(
            f"every member is busy and the work queued ahead of this request would take about "
            f"{predicted_s:.1f}s, past the queue's {timeout_s:g}s deadline; try again shortly",
            code="queue_wait_too_long",
            retry_after=predicted_s,
        )

    async def _wait(self, waiter: Waiter, timeout_s: float) -> tuple[Slot, float]:
        started = time.monotonic()
        try:
            if not waiter.exclude:
                # Retries (which exclude members) stay out of the shared line: they could hold it up.
                self._numbers += 1
                waiter.turn = self.slots.turn(self._numbers, time.time(), waiter.ctx)
                waiter.turn = await self.slots.join_line(waiter.turn)
                waiter.tag = waiter.turn.tag
            self._enter(waiter)
            self.wake()
            slot = await asyncio.wait_for(asyncio.shield(waiter.future), timeout_s)
        except BaseException as exc:  # gave up, the client left, or Redis failed
            self._abandon(waiter)
            if not isinstance(exc, TimeoutError):
                raise
            raise errors.unavailable(
                f"every member stayed busy for {timeout_s:g}s; try again shortly",
                code="queue_timeout",
                retry_after=self.retry_after(),
            ) from None
        finally:
            if waiter.turn is not None:
                self.slots.leave_line(waiter.turn, served=_served(waiter))
        waited = time.monotonic() - started
        if waiter.predicted_s is not None:
            metrics.record_prediction(waiter.predicted_s, waited)
            log.debug("%s waited %.2fs; predicted %.2fs", waiter.ctx.tenant.name, waited, waiter.predicted_s)
        return slot, waited

    def _enter(self, waiter: Waiter) -> None:
        self.queue.push(waiter)
        self.slots.waiting += 1

    def _leave(self, waiter: Waiter) -> None:
        self.queue.remove(waiter)
        self.slots.waiting -= 1

    def _abandon(self, waiter: Waiter) -> None:
        if waiter.queued:
            self._leave(waiter)
        if _served(waiter):
            # A slot was handed over just as the waiter gave up: give it back.
            self.release(waiter.future.result())
        elif waiter.future.done():
            pass  # displaced from the line: its 429 is what it raises
        else:
            waiter.future.cancel()

    def release(self, slot: Slot, used: int | None = None) -> None:
        """Give the slot back; `used`, the tokens the request generated, settles its tenant's
        charge (None: the slot was never used, handed back at once)."""
        slot.backend.work -= slot.tokens
        self.slots.give_back(slot.backend.id, slot.lease)
        self.slots.settle(slot.tenant, slot.tokens, used or 0)
        if used is not None:
            self.pace.record(slot.tokens, time.monotonic() - slot.taken_at)
            if used:  # counted here, exported once a second (sample): Prometheus labels cost
                self.served[slot.tenant.name] = self.served.get(slot.tenant.name, 0) + used
        self.wake()

    def wake(self) -> None:
        """Hand free slots to waiters: at once where the slots answer at once, else soon, on
        the event loop (taking a shared slot means asking Redis)."""
        if not self.queue:
            return
        if self.slots.at_once:
            self._hand_out_here()
            return
        if self._dispatching:
            self._again = True
            self._poke.set()
            return
        self._dispatching = True  # now, not when the task starts: a second wake must not start another
        spawn(self._dispatch())

    def _hand_out_here(self) -> None:
        """The first in fair order gets the free slot, one after another, with no await."""
        while self.queue:
            waiter = self.queue.first()
            assert waiter is not None
            slot = self.take_here(waiter.ctx, waiter.exclude, waiter.turn)
            if slot is None:
                if any(b.has_room for b in self.registry.routable()):
                    self._walk_here()  # it can use none of the free members (a retry): the rest may
                return
            self.hand(waiter, slot)

    def _walk_here(self) -> None:
        for waiter in list(self.queue):
            if not waiter.future.done() and not self.hand(
                waiter, self.take_here(waiter.ctx, waiter.exclude, waiter.turn)
            ):
                return

    async def _dispatch(self) -> None:
        try:
            while self.queue:
                self._again = False
                await self._dispatch_once()
                if self._again:
                    continue
                if not self.queue:
                    break
                # Slots free up in other gateways too: wait for their announcement, or poll.
                self._poke.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), SHARED_POLL_S)
        finally:
            self._dispatching = False

    async def _dispatch_once(self) -> None:
        """First in fair order first, with slots that need a round trip."""
        for waiter in list(self.queue):
            if waiter.future.done():  # it gave up; _abandon has taken it out of the queue
                continue
            try:
                slot = await self.take(waiter.ctx, waiter.exclude, waiter.turn)
            except NotYourTurn:
                return  # an earlier request in another gateway goes first; ours are all later
            if not self.hand(waiter, slot):
                return

    def hand(self, waiter: Waiter, slot: Slot | None) -> bool:
        """Give `slot` to `waiter`. False when there was none and no member has room, so the
        waiters after it need not try; a waiter that can't use any free member (a retry
        excludes them) lets the next one go ahead."""
        if slot is None:
            return any(b.has_room for b in self.registry.routable())
        if waiter.future.done():  # it gave up while we took the slot
            if waiter.queued:
                self._leave(waiter)
            self.release(slot)
        else:
            self._leave(waiter)  # still there: only _abandon removes a waiting one
            waiter.future.set_result(slot)
        return True

    def retry_after(self) -> float:
        """Seconds until a slot is likely free: the line ahead, at the pool's pace."""
        capacity = max(1, sum(b.max_inflight for b in self.registry.routable()))
        predicted = self.pace.predict(self.queue.work_ahead(PUBLIC, 0), capacity)
        if predicted is not None:
            return max(1.0, predicted)
        mean = metrics.summary(60).get("mean_s") or 1.0
        return max(1.0, mean * (len(self.queue) + 1) / capacity)

    def sample(self) -> None:
        """Once a second: the waiting count, pool-wide and per tenant, for /metrics and charts."""
        self.registry.sample_load(len(self.queue))
        metrics.record_waiting(self.queue.waiting_by_tenant())
        served, self.served = self.served, {}
        metrics.record_served(served)


def _served(waiter: Waiter) -> bool:
    """Whether the waiter was handed a slot (not cancelled, not displaced from the line)."""
    future = waiter.future
    return future.done() and not future.cancelled() and future.exception() is None
