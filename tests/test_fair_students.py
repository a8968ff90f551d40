"""The fair line's second level (pool/gateway/fair.py TenantLine): within one tenant, its
students are served in turn, while the line between tenants stays what it was. Driven
through the Router with this process's own slots and stand-in members (no HTTP: exact and
fast); Hypothesis draws the interleavings."""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pool.gateway import errors
from pool.gateway.types import Tenant
from testing.stand_in import Pool

PLATFORM, OTHER = Tenant("key:1", "platform"), Tenant("key:2", "other")


async def test_a_quiet_student_waits_behind_one_of_a_classmates_twenty_not_all():
    pool = Pool(1)
    for _ in range(20):
        pool.arrive(PLATFORM, student="loud")
    await pool.settle()
    quiet = pool.arrive(PLATFORM, student="quiet")
    await pool.settle()
    await pool.finish_in_turn(2)
    assert quiet in [number for _, number in pool.started[:3]]
    await pool.close()


async def test_the_students_of_one_key_are_served_in_turn():
    pool = Pool(1)
    pool.arrive(PLATFORM, student="first")  # takes the one slot
    await pool.settle()
    who = {}
    for student, count in (("loud", 6), ("mid", 3), ("quiet", 1)):
        for _ in range(count):
            who[pool.arrive(PLATFORM, student=student)] = student
    await pool.settle()
    await pool.finish_in_turn(10)
    order = [who[number] for _, number in pool.started[1:]]
    assert order == ["loud", "mid", "quiet", "loud", "mid", "loud", "mid", "loud", "loud", "loud"]
    await pool.close()


async def test_students_weigh_by_the_tokens_they_ask_for():
    pool = Pool(1)
    pool.arrive(PLATFORM, student="first")
    await pool.settle()
    long = [pool.arrive(PLATFORM, tokens=400, student="long") for _ in range(2)]
    short = [pool.arrive(PLATFORM, tokens=100, student="short") for _ in range(4)]
    await pool.settle()
    await pool.finish_in_turn(6)
    started = [number for _, number in pool.started[1:]]
    # Four short answers cost one long one: the second long waits for all of them.
    assert started.index(long[1]) > max(started.index(n) for n in short)
    await pool.close()


async def tenants_in_start_order(students: bool) -> list[str]:
    pool = Pool(1)
    for i in range(12):
        pool.arrive(PLATFORM, tokens=100 + 10 * i, student=f"s{i % 3}" if students else "")
        if i % 2:
            pool.arrive(OTHER, tokens=150)
    await pool.settle()
    await pool.finish_in_turn(18)
    names = [name for name, _ in pool.started]
    await pool.close()
    return names


async def test_the_line_between_tenants_is_the_same_with_students_or_without():
    assert await tenants_in_start_order(students=True) == await tenants_in_start_order(students=False)


async def test_a_full_line_makes_room_for_a_quiet_student_from_the_loudest_classmate():
    pool = Pool(1, queue_size=4)
    loud = [pool.arrive(PLATFORM, student="loud") for _ in range(5)]  # one runs, four wait
    await pool.settle()
    quiet = pool.arrive(PLATFORM, student="quiet")
    await pool.settle()
    refused = pool.waiting[loud[-1]]
    assert refused.done() and isinstance(refused.exception(), errors.ApiError)
    assert refused.exception().code == "queue_full"
    await pool.finish_in_turn(2)
    assert quiet in [number for _, number in pool.started]
    await pool.close()


async def test_a_full_line_refuses_a_student_who_already_has_as_many_waiting():
    pool = Pool(1, queue_size=2)
    pool.arrive(PLATFORM, student="a")
    pool.arrive(PLATFORM, student="a")
    pool.arrive(PLATFORM, student="b")
    await pool.settle()
    late = pool.arrive(PLATFORM, student="b")
    await pool.settle()
    assert isinstance(pool.waiting[late].exception(), errors.ApiError)
    await pool.close()


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["arrive", "finish", "cancel"]), st.integers(0, 3), st.integers(0, 2)),
        max_size=40,
    )
)
def test_the_tenant_lines_never_lose_a_place_or_a_waiter(steps):
    async def run():
        pool = Pool(2, queue_size=6)
        tenants = [PLATFORM, OTHER]
        for action, student, tenant in steps:
            if action == "arrive":
                pool.arrive(tenants[tenant % 2], tokens=50 * (student + 1), student=f"s{student}")
            elif action == "finish" and pool.running:
                pool.finish()
            elif action == "cancel":
                waiting = [t for t in pool.waiting.values() if not t.done()]
                if waiting:
                    waiting[0].cancel()
                    with contextlib.suppress(BaseException):
                        await waiting[0]
            await pool.settle()
            assert pool.drifted() is None
            for line in pool.router.queue.tenants.values():
                assert len(line.places) == len(line.turns) == len(line.owner) == sum(line.waiting.values())
                assert all(line.owner[p].queued for p in line.places)
                assert list(line.places) == sorted(line.places)
        while pool.running:
            pool.finish()
            await pool.settle()
        await pool.close()

    asyncio.run(run())
