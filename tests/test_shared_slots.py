"""Slots, leases and roles in a real Redis (started by the test on a free port): what lets
several gateway processes act as one."""

from __future__ import annotations

import asyncio
import time

import pytest

from pool.gateway.backend import Backend
from pool.gateway.leases import renew_forever
from pool.gateway.router import Router
from pool.gateway.slots_redis import SharedSlots
from pool.gateway.types import NotYourTurn, RouteContext, Tenant, Turn
from testing.services import redis_missing, start_redis

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


async def test_a_redis_restarted_without_its_data_gets_the_running_requests_leases_back(slots, redis_url):
    import redis

    first, second = slots(), slots()
    assert await first.take(7, capacity=1) is not None
    redis.Redis.from_url(redis_url).flushall()  # what a restart without persistence leaves
    await asyncio.sleep(0.6)  # the holder renews every third of the lease's life (1 s here)
    assert await second.take(7, capacity=1) is None  # the member is still full


async def test_after_redis_lost_its_data_no_slot_is_taken_until_the_leases_are_renewed(slots, redis_url):
    import redis

    first, second = slots(), slots()
    assert await first.take(7, capacity=1) is not None
    assert await second.take(8, capacity=1) is not None  # both gateways have seen this Redis
    redis.Redis.from_url(redis_url).flushall()
    # Before first's renewal puts its lease back, member 7 looks empty: it must not be filled.
    assert await second.take(7, capacity=1) is None
    await asyncio.sleep(0.6)  # past the renewals (every third of the 1 s lease) and the fence
    assert await second.take(7, capacity=1) is None  # first's lease is back: still full
    assert await second.take(9, capacity=1) is not None  # and the pool takes requests again


async def test_a_lease_given_back_during_its_renewal_stays_given_back(redis_url):
    import redis.asyncio as aioredis

    redis_client = aioredis.Redis.from_url(redis_url)
    held = {"lease": ("set",)}
    await redis_client.zadd("set", {"lease": time.time() + 1})
    real_pipeline = redis_client.pipeline

    def pipeline(**kw):  # the lease is given back while the renewal's ZADD is on its way
        pipe = real_pipeline(**kw)
        real_execute = pipe.execute

        async def execute():
            if held:
                held.clear()
                await redis_client.zrem("set", "lease")
            return await real_execute()

        pipe.execute = execute
        return pipe

    redis_client.pipeline = pipeline
    renewer = asyncio.create_task(renew_forever(lambda: redis_client, held, lambda: 0.03))
    await asyncio.sleep(0.05)
    renewer.cancel()
    await asyncio.gather(renewer, return_exceptions=True)
    assert await redis_client.zscore("set", "lease") is None
    await redis_client.aclose()


def test_one_process_holds_a_role_until_it_lapses(slots):
    first, second = slots(), slots()
    assert first.lead("autoscaler", ttl_s=0.5)
    assert first.lead("autoscaler", ttl_s=0.5)  # renewing is fine
    assert not second.lead("autoscaler", ttl_s=0.5)
    time.sleep(0.6)
    assert second.lead("autoscaler", ttl_s=0.5)


async def test_an_earlier_request_waiting_in_another_gateway_goes_first(slots):
    first, second = slots(), slots()
    early = first.turn(1, time.time() - 1)
    await first.join_line(early)
    late = second.turn(1, time.time())
    await second.join_line(late)
    with pytest.raises(NotYourTurn):
        await second.take(7, capacity=1, turn=late)
    assert await first.take(7, capacity=1, turn=early) is not None
    await first.leave_line(early)
    assert await second.take(7, capacity=2, turn=late) is not None


async def test_a_place_in_line_past_any_deadline_holds_no_one_up(slots):
    first, second = slots(), slots()
    await first.join_line(first.turn(1, time.time() - 100))  # its leave was lost
    late = second.turn(1, time.time())
    await second.join_line(late)
    assert await second.take(7, capacity=1, turn=late, max_wait_s=35) is not None


async def test_the_line_forgets_the_waiters_of_a_dead_gateway(slots, redis_url):
    import redis

    dead, alive = slots(), slots()
    await dead.join_line(dead.turn(1, time.time() - 1))
    dead._heart.cancel()  # it stops beating, as a killed process would...
    beats, alive_key = redis.Redis.from_url(redis_url), f"vibeadmin:alive:{dead.owner}"
    for _ in range(20):  # ...and its last beat runs out (one already on its way may land late)
        beats.delete(alive_key)
        await asyncio.sleep(0.05)
        if not beats.exists(alive_key):
            break
    late = alive.turn(1, time.time())
    await alive.join_line(late)
    assert await alive.take(7, capacity=1, turn=late) is not None


# redis-py (8.1, on a loaded machine) was seen to lose a cancellation that landed mid-command:
# the heartbeat beat on, and the event loop's shutdown waited for it forever. These stand-ins
# lose every cancellation that way, so the loops must stop on being asked, not on the error.


class SwallowsCancel:
    """A Redis client (and pipeline) whose every command eats the CancelledError sent to it."""

    def __init__(self) -> None:
        self.swallowed = 0
        self.swallowing = True  # turned off at a test's end, so a failing test cannot hang the loop

    async def set(self, *args, **kwargs) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if not self.swallowing:
                raise
            self.swallowed += 1

    execute = set

    def pipeline(self, transaction: bool = True) -> SwallowsCancel:
        return self

    def zadd(self, *args, **kwargs) -> None:
        pass


async def ends_when_cancelled(task: asyncio.Task, redis_client: SwallowsCancel) -> bool:
    """Cancel `task` once it is mid-command and give it 5 s to end. The stand-in then stops
    swallowing, so that a task which lived on cannot hang the loop's close."""
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    redis_client.swallowing = False
    return task in done


async def test_a_heartbeat_stops_when_cancelled_even_if_redis_swallowed_it(slots):
    gateway, redis_client = slots(), SwallowsCancel()
    gateway.client = lambda: redis_client
    heart = asyncio.create_task(gateway.heartbeat_forever())
    assert await ends_when_cancelled(heart, redis_client), "the heartbeat beat on after it was cancelled"
    assert redis_client.swallowed == 1


async def test_renewing_stops_when_cancelled_even_if_redis_swallowed_it():
    redis_client = SwallowsCancel()
    renewer = asyncio.create_task(renew_forever(lambda: redis_client, {"lease": ("set",)}, lambda: 0.03))
    assert await ends_when_cancelled(renewer, redis_client), "the renewer renewed on after it was cancelled"
    assert redis_client.swallowed == 1


# --- the fair line in Redis (pool/gateway/fair.py's arithmetic in the join and take scripts) ---

FLOOD, LIGHT = Tenant("key:1", "flood"), Tenant("key:2", "light")


async def test_a_light_tenant_in_one_gateway_goes_before_a_floods_backlog_in_the_other(slots):
    first, second = slots(), slots()
    flood = [
        await first.join_line(first.turn(n, time.time(), RouteContext("", 100, FLOOD))) for n in (1, 2, 3)
    ]
    assert [t.tag for t in flood] == [0, 100, 200]
    assert await first.take(7, capacity=1, turn=flood[0]) is not None  # the flood's first starts
    first.leave_line(flood[0])
    light = await second.join_line(second.turn(1, time.time(), RouteContext("", 100, LIGHT)))
    assert light.tag == 0  # the virtual time: it banks nothing, and owes nothing
    with pytest.raises(NotYourTurn):
        await first.take(8, capacity=1, turn=flood[1])
    assert await second.take(8, capacity=1, turn=light) is not None


async def test_an_arrival_in_another_gateway_waits_behind_a_lower_tag(slots):
    first, second = slots(), slots()
    for _ in range(2):  # two of the flood's requests start at once: tags 0 and 100
        assert await second.take(7, capacity=9, turn=Turn("", time.time(), FLOOD, 100)) is not None
    waiting = await first.join_line(first.turn(1, time.time(), RouteContext("", 100, LIGHT)))
    assert waiting.tag == 100
    with pytest.raises(NotYourTurn):  # the flood's next tag is 200
        await second.take(7, capacity=9, turn=Turn("", time.time(), FLOOD, 100))
    assert await first.take(7, capacity=9, turn=waiting) is not None


async def test_batch_waits_behind_every_interactive_request_in_any_gateway(slots):
    first, second = slots(), slots()
    bulk = Tenant("key:9", "bulk", batch=True)
    batch = await first.join_line(first.turn(1, time.time() - 1, RouteContext("", 1, bulk)))
    interactive = await second.join_line(second.turn(1, time.time(), RouteContext("", 5000, FLOOD)))
    with pytest.raises(NotYourTurn):
        await first.take(7, capacity=1, turn=batch)
    assert await second.take(7, capacity=1, turn=interactive) is not None


async def test_a_request_that_ends_early_is_charged_what_it_generated(slots, redis_url):
    import redis

    gateway = slots()
    assert await gateway.take(7, capacity=1, turn=Turn("", time.time(), FLOOD, 1000)) is not None
    await gateway.settle(FLOOD, 1000, 40)
    assert float(redis.Redis.from_url(redis_url).hget("vibeadmin:fair:finish", "key:1")) == 40


def two_gateways(redis_url: str, members: int = 2) -> list[Router]:
    """Two routers, each with its own slots in the same Redis and its own view of the
    members (as two gateway processes have), over stand-in members that hold a slot until
    released."""
    from testing.stand_in import Policy, StandInRegistry

    routers = []
    for _ in range(2):
        slots = SharedSlots(redis_url)

        class Seen(Backend):
            """A member as this gateway sees it: counts from its own slots' cache."""

        Seen.has_room = property(lambda self, s=slots: s.cached(self.id) < self.max_inflight)  # type: ignore[assignment]
        backends = [Seen(i + 1, f"m{i + 1}", "http://127.0.0.1:9") for i in range(members)]
        routers.append(Router(StandInRegistry(backends, policy=Policy(queue_timeout_s=10)), slots))  # type: ignore[arg-type]
    return routers


async def test_two_gateways_serve_a_burst_in_one_fair_line_and_no_one_is_stuck(slots, redis_url):
    routers = two_gateways(redis_url)
    started: list[str] = []

    async def one(router: Router, tenant: Tenant) -> None:
        slot, _ = await router.acquire(RouteContext("", 4, tenant))
        started.append(tenant.name)
        await asyncio.sleep(0.05)
        router.release(slot, used=2)  # settling moves the finish tag back: order must hold

    flood = [asyncio.ensure_future(one(routers[i % 2], FLOOD)) for i in range(24)]
    while sum(len(r.queue) for r in routers) < 20:  # the flood's line has formed, across both gateways
        await asyncio.sleep(0.01)
    joined_at = len(started)
    light = asyncio.ensure_future(one(routers[1], LIGHT))
    await asyncio.wait_for(asyncio.gather(*flood, light), 30)
    assert len(started) == 25
    # It waits for the next free slots (two members; one more may have been on its way),
    # not behind the flood's line, which held about 20 when it came.
    assert started.index("light") - joined_at <= 3, started
