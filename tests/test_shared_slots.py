"""Slots, leases and roles in a real Redis (started by the test on a free port): what lets
several gateway processes act as one."""

from __future__ import annotations

import asyncio
import time

import pytest

from pool.shared_slots import SharedSlots
from tests.services import redis_missing, start_redis

pytestmark = pytest.mark.skipif(bool(redis_missing()), reason=redis_missing() or "")


@pytest.fixture(scope="module")
def redis_url():
    server = start_redis()
    yield server.url
    server.stop()


@pytest.fixture
def slots(redis_url, settings):
    settings.VIBEADMIN_LEASE_S = 1.0
    import redis

    redis.Redis.from_url(redis_url).flushall()
    return lambda: SharedSlots(redis_url)


async def test_two_gateways_never_take_more_slots_than_a_member_has(slots):
    first, second = slots(), slots()
    taken = [await gateway.take(7, capacity=2) for gateway in (first, second, first, second)]
    assert [lease is not None for lease in taken] == [True, True, False, False]
    assert first.count_live(7) == 2


async def test_a_slot_given_back_is_free_for_the_other_gateway(slots):
    first, second = slots(), slots()
    lease = await first.take(7, capacity=1)
    assert await second.take(7, capacity=1) is None
    await first.give_back(7, lease)
    assert await second.take(7, capacity=1) is not None


async def test_a_dead_gateways_lease_expires(slots):
    dead, alive = slots(), slots()
    assert await dead.take(7, capacity=1) is not None
    dead.held.clear()  # it stops renewing, as a killed process would
    await asyncio.sleep(1.2)
    assert await alive.take(7, capacity=1) is not None


def test_one_process_holds_a_role_until_it_lapses(slots):
    first, second = slots(), slots()
    assert first.lead("autoscaler", ttl_s=0.5)
    assert first.lead("autoscaler", ttl_s=0.5)  # renewing is fine
    assert not second.lead("autoscaler", ttl_s=0.5)
    time.sleep(0.6)
    assert second.lead("autoscaler", ttl_s=0.5)
