"""The limits' one interface and its two homes, run side by side: this process's memory,
and a real Redis (started by the test on a free port) that several gateways share."""

from __future__ import annotations

import asyncio

import pytest

from pool.gateway.limits import Budget, Cap, Refused
from pool.gateway.limits_local import LocalLimits
from pool.gateway.limits_redis import RedisLimits
from testing.services import redis_missing, start_redis

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def redis_url():
    if redis_missing():
        pytest.skip(redis_missing())
    server = start_redis()
    yield server.url
    server.stop()


@pytest.fixture(params=["local", "redis"])
def make(request, settings):
    """`make()`: a fresh Limits of the kind under test; Redis ones share one server."""
    settings.VIBEADMIN_LEASE_S = 1.0
    if request.param == "local":
        return LocalLimits
    url = request.getfixturevalue("redis_url")
    import redis

    redis.Redis.from_url(url).flushall()
    return lambda: RedisLimits(url)


async def test_a_budget_lets_through_what_it_holds_then_says_when_it_refills(make):
    limits = make()
    for _ in range(2):
        await limits.admit((Budget("rpm:key:1", 2, 1),), ())
    with pytest.raises(Refused) as refused:
        await limits.admit((Budget("rpm:key:1", 2, 1),), ())
    assert refused.value.limit.name == "rpm:key:1"
    assert 25 < refused.value.retry_after <= 30  # one request of 2 a minute refills in 30 s


async def test_a_refusal_takes_nothing_from_the_other_limits(make):
    limits = make()
    with pytest.raises(Refused):
        await limits.admit((Budget("rpm:key:1", 5, 1), Budget("tpm:key:1", 100, 101)), (Cap("key:1", 1),))
    taken = await limits.admit((Budget("rpm:key:1", 5, 5),), (Cap("key:1", 1),))
    assert taken.budgets and taken.caps


async def test_a_cap_holds_requests_until_they_are_settled(make):
    limits = make()
    taken = await limits.admit((), (Cap("address:10.0.0.1", 1),))
    with pytest.raises(Refused):
        await limits.admit((), (Cap("address:10.0.0.1", 1),))
    await limits.admit((), (Cap("address:10.0.0.2", 1),))  # another name, another count
    limits.settle(taken, {})
    await asyncio.sleep(0.05)  # Redis settles in the background
    await limits.admit((), (Cap("address:10.0.0.1", 1),))


async def test_settling_gives_back_what_a_reservation_did_not_use(make):
    limits = make()
    taken = await limits.admit((Budget("tpm:key:1", 250, 110),), ())
    await limits.admit((Budget("tpm:key:1", 250, 110),), ())
    with pytest.raises(Refused):
        await limits.admit((Budget("tpm:key:1", 250, 110),), ())
    limits.settle(taken, {"tpm:key:1": 20})
    await asyncio.sleep(0.05)
    await limits.admit((Budget("tpm:key:1", 250, 110),), ())


async def test_gateways_sharing_redis_count_together(redis_url, settings):
    import redis

    redis.Redis.from_url(redis_url).flushall()
    first, second = RedisLimits(redis_url), RedisLimits(redis_url)
    await first.admit((Budget("rpm:key:9", 1, 1),), (Cap("key:9", 1),))
    with pytest.raises(Refused):
        await second.admit((), (Cap("key:9", 1),))
    with pytest.raises(Refused):
        await second.admit((Budget("rpm:key:9", 1, 1),), ())


async def test_a_dead_gateways_places_free_themselves_once_their_leases_expire(redis_url, settings):
    import redis

    settings.VIBEADMIN_LEASE_S = 1.0
    redis.Redis.from_url(redis_url).flushall()
    dead, alive = RedisLimits(redis_url), RedisLimits(redis_url)
    await dead.admit((), (Cap("key:9", 1),))
    dead.held.clear()  # it stops renewing, as a killed process would
    await asyncio.sleep(1.2)
    await alive.admit((), (Cap("key:9", 1),))


async def test_budgets_untouched_for_two_minutes_are_forgotten_a_few_at_a_time(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("pool.gateway.limits_local.time.monotonic", lambda: now[0])
    limits = LocalLimits()
    for i in range(1000):
        await limits.admit((Budget(f"rpm:address:10.0.{i // 250}.{i % 250}", 10, 1),), ())
    now[0] += 119
    await limits.admit((Budget("rpm:address:late", 10, 1),), ())
    assert len(limits.levels) == 1001  # none expired yet

    now[0] += 2
    await limits.admit((Budget("rpm:address:later", 10, 1),), ())

    assert list(limits.levels) == ["rpm:address:late", "rpm:address:later"]


async def test_the_budget_table_is_bounded_however_many_addresses_come(monkeypatch):
    monkeypatch.setattr("pool.gateway.limits_local.MAX_BUDGETS", 100)
    limits = LocalLimits()
    for i in range(1000):
        await limits.admit((Budget(f"rpm:address:{i}", 10, 1),), ())
    assert len(limits.levels) == 100
    assert "rpm:address:999" in limits.levels
