"""The fair line (pool/gateway/fair.py) driven through the Router with this process's own
slots and stand-in members (no HTTP: exact and fast): who gets the next free slot, and
that the waiting count never drifts. Hypothesis draws the interleavings."""

from __future__ import annotations

import asyncio
import contextlib
import math

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pool.gateway import errors
from pool.gateway.fair import FairClock, FairLine, Pace
from pool.gateway.types import RouteContext, Tenant
from testing.stand_in import Pool

A, B, C = Tenant("key:1", "A"), Tenant("key:2", "B"), Tenant("key:3", "C")


async def test_a_light_tenant_waits_for_the_next_free_slot_not_behind_a_flood():
    pool = Pool(2)
    for _ in range(20):
        pool.arrive(A)
    await pool.settle()
    pool.arrive(B)
    await pool.settle()
    await pool.finish_in_turn()
    assert pool.started[-1][0] == "B"
    await pool.close()


async def test_weights_two_to_one_share_the_pool_two_to_one():
    pool = Pool(1)
    heavy, light = Tenant("key:1", "heavy", weight=2), Tenant("key:2", "light", weight=1)
    for _ in range(30):
        pool.arrive(heavy)
        pool.arrive(light)
    await pool.settle()
    await pool.finish_in_turn(30)
    served = [name for name, _ in pool.started[1:31]]
    assert abs(served.count("heavy") - 20) <= 1 and abs(served.count("light") - 10) <= 1
    await pool.close()


async def test_batch_gets_only_slots_no_interactive_request_waits_for():
    pool = Pool(1)
    bulk = Tenant("key:9", "bulk", batch=True)
    pool.arrive(bulk)
    await pool.settle()
    for _ in range(3):
        pool.arrive(bulk)
    await pool.settle()
    pool.arrive(A)
    pool.arrive(A)
    await pool.settle()
    await pool.finish_in_turn(3)
    assert [name for name, _ in pool.started] == ["bulk", "A", "A", "bulk"]
    await pool.close()


async def test_a_tenant_keeps_its_own_arrival_order():
    pool = Pool(1)
    pool.arrive(C)
    await pool.settle()
    numbers = [pool.arrive(A, tokens=500) for _ in range(3)]
    await pool.settle()
    await pool.finish_in_turn()
    pool.finish(used=0)  # A's first generated nothing: its refund moves A's finish tag back...
    await pool.settle()
    numbers.append(pool.arrive(A, tokens=500))  # ...so its next request's tag is below its waiters'
    await pool.settle()
    await pool.finish_in_turn(3)
    assert [n for name, n in pool.started if name == "A"] == numbers
    await pool.close()


def test_an_idle_tenant_banks_no_credit():
    clock = FairClock()
    clock.start(clock.tag(A, 100))  # A served once, long ago
    for _ in range(50):
        clock.start(clock.tag(B, 100))  # B alone since
    assert clock.tag(A, 100) == clock.v  # A comes back at the virtual time, not 49 requests ahead


def test_settling_charges_the_tokens_generated_not_max_tokens():
    clock = FairClock()
    clock.tag(A, 1000)
    clock.settle(A, 1000, 10)
    assert clock.finish["key:1"] == 10


def test_the_pace_predicts_nothing_until_it_has_measured():
    pace = Pace()
    assert pace.predict(1000, 4) is None
    for _ in range(30):
        pace.record(100, 1.0)  # a slot gets through 100 tokens a second
    assert pace.predict(0, 4) == pytest.approx(50 / 400)
    assert pace.predict(800, 4) == pytest.approx(850 / 400)


def test_work_ahead_counts_other_tenants_by_their_fair_share():
    line = FairLine()

    class W:
        def __init__(self, tenant, tokens):
            self.ctx, self.tag, self.number, self.queued, self.turn = (
                RouteContext("", tokens, tenant),
                0.0,
                0,
                False,
                None,
            )

    for _ in range(10):
        line.push(W(A, 100))  # type: ignore[arg-type]
    assert line.work_ahead(B, 100) == 100  # A gets one request's worth before B's one
    assert line.work_ahead(A, 100) == 1000  # A's own line is all ahead of it
    assert line.work_ahead(Tenant("key:9", "bulk", batch=True), 100) == 1000  # batch waits for all of it


async def test_a_request_predicted_to_miss_the_deadline_is_refused_at_once_with_retry_after():
    pool = Pool(1, queue_timeout_s=2.0)
    for _ in range(30):
        pool.router.pace.record(100, 1.0)  # a slot gets through a 100-token request a second
    pool.arrive(A)
    for _ in range(2):  # 2.5 s predicted for the third waiter: past the 2 s deadline
        pool.arrive(A)
    await pool.settle()
    with pytest.raises(errors.ApiError) as refused:
        await pool.router.acquire(RouteContext("", 100, A))
    assert refused.value.status == 503 and refused.value.code == "queue_wait_too_long"
    assert refused.value.retry_after == pytest.approx(2.5)
    await pool.close()


# --- properties ---------------------------------------------------------------------------

TENANTS = [Tenant(f"key:{i}", f"t{i}", weight=w) for i, w in enumerate((1, 1, 2, 3))]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.integers(0, len(TENANTS) - 1), st.integers(1, 8)),  # a burst
        st.tuples(st.just("finish"), st.integers(0, 7), st.integers(1, 3)),
        st.tuples(st.just("leave"), st.integers(0, 40), st.just(1)),
        st.tuples(st.just("retry"), st.integers(0, len(TENANTS) - 1), st.just(1)),
    ),
    min_size=1,
    max_size=60,
)


async def run_steps(plan, slots: int) -> tuple[Pool, list[str]]:
    """Drive the plan; return the pool and every starvation or drift found (see the test)."""
    pool = Pool(slots)
    found: list[str] = []
    tenant_of: dict[int, Tenant] = {}
    retries: set[int] = set()
    joined: dict[int, tuple[int, int]] = {}  # number -> starts so far, its tenant's requests ahead
    for action, i, times in plan:
        for _ in range(times if action == "arrive" else 1):
            if action not in ("arrive", "retry"):
                break
            tenant = TENANTS[i]
            ahead = sum(1 for s in pool.running if s.tenant is tenant) + sum(
                1 for n, t in pool.waiting.items() if not t.done() and tenant_of[n] is tenant
            )
            exclude = frozenset({pool.backends[0].id}) if action == "retry" else frozenset()
            number = pool.arrive(tenant, exclude=exclude)
            tenant_of[number] = tenant
            (retries.add(number) if exclude else joined.__setitem__(number, (len(pool.started), ahead)))
            await pool.settle()
        for _ in range(times if action == "finish" else 0):
            if pool.running:
                pool.finish(i % len(pool.running), used=100)
                await pool.settle()
        if action == "leave":
            pending = [t for t in pool.waiting.values() if not t.done()]
            if pending:
                pending[i % len(pending)].cancel()
        await pool.settle()
        if drift := pool.drifted():
            found.append(drift)
    for _ in range(500):  # serve everyone left; each end frees a slot for the next
        if not pool.running:
            break
        pool.finish(0)
        await pool.settle()
    for number, (at, ahead) in joined.items():
        order = [n for _, n in pool.started[at:] if n not in retries]
        if number not in order:
            continue  # it never started (gave up, or still waits): nothing to bound
        before = [tenant_of[n] for n in order[: order.index(number)]]
        tenant = tenant_of[number]
        for other in TENANTS:
            # Start-time fair queuing: while it waits, another tenant starts at most its
            # weight's share of what this tenant had ahead of it, plus one for a tie and
            # (generously) the slots of the pool for requests already tagged earlier.
            bound = math.ceil(other.weight * (ahead + 1) / tenant.weight) + 1
            if other is not tenant and before.count(other) > bound:
                found.append(
                    f"{tenant.name} #{number} waited while {other.name} started {before.count(other)}"
                )
    return pool, found


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, slots=st.integers(1, 3))
def test_no_tenant_is_starved_and_the_waiting_count_never_drifts(plan, slots):
    async def scenario():
        pool, found = await run_steps(plan, slots)
        with contextlib.suppress(Exception):
            await pool.close()
        await pool.settle()
        if drift := pool.drifted():
            found.append(drift)
        if pool.slots.waiting != 0:
            found.append(f"{pool.slots.waiting} counted as waiting at the end")
        return found

    assert asyncio.run(scenario()) == []
