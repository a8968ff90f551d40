"""Students cannot take the pool: the solve page's caps from the Routing page (answers in
flight per address, a max_tokens ceiling, a share of the members' slots for all students
together), each answered beyond with an error the page shows. The members are
testing.fake_member servers (small fake OpenAI servers, one answer at a time each)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from pool.gateway.admission import Admission
from pool.gateway.app import SOLVE_PATH
from pool.models import PoolSettings
from testing.services import redis_missing, start_redis
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat, set_policy
from tests.helpers import routing_data


def solve(**extra) -> dict:
    return {"problem": "What is 17 * 23?", "task": "math", "max_tokens": 5, **extra}


def answering(gateway, address: str) -> Call:
    return Call(gateway, "POST", SOLVE_PATH, json.dumps(solve()).encode(), client=address)


async def one_answer_in_flight(gateway, fake_members, address: str) -> Call:
    """Two members with room for every student, and `address` already has an answer being written."""
    await sync_to_async(fake_members)(2, ttft=0.5)
    await sync_to_async(set_policy)(solve_pool_share=1.0)
    first = answering(gateway, address)
    await first.started.wait()
    return first


@pytest.mark.asyncio
async def test_a_second_answer_for_an_address_that_has_one_in_flight_is_429(gateway, fake_members):
    first = await one_answer_in_flight(gateway, fake_members, "10.0.0.1")

    second = await request(gateway, "POST", SOLVE_PATH, solve(), client="10.0.0.1")

    assert second.status == 429
    error = second.json()["error"]
    assert error["code"] == "solve_inflight_per_address"
    assert "already being written for you" in error["message"]
    assert int(second.headers["retry-after"]) >= 1
    assert (await request(gateway, "POST", SOLVE_PATH, solve(), client="10.0.0.2")).status == 200
    assert (await first.done()).status == 200
    assert (await request(gateway, "POST", SOLVE_PATH, solve(), client="10.0.0.1")).status == 200


@pytest.mark.asyncio
async def test_addresses_of_one_ipv6_64_are_one_student(gateway, fake_members):
    first = await one_answer_in_flight(gateway, fake_members, "2001:db8:1:2::1")

    same_network = await request(gateway, "POST", SOLVE_PATH, solve(), client="2001:db8:1:2:abcd::9")
    next_network = await request(gateway, "POST", SOLVE_PATH, solve(), client="2001:db8:1:3::1")

    assert same_network.status == 429
    assert same_network.json()["error"]["code"] == "solve_inflight_per_address"
    assert next_network.status == 200
    assert (await first.done()).status == 200


@pytest.mark.asyncio
async def test_the_ipv6_prefix_setting_makes_a_48_one_student(gateway, fake_members, settings):
    settings.VIBEADMIN_IPV6_PREFIX = 48
    first = await one_answer_in_flight(gateway, fake_members, "2001:db8:1:2::1")

    reply = await request(gateway, "POST", SOLVE_PATH, solve(), client="2001:db8:1:ffff::1")

    assert reply.status == 429
    assert (await first.done()).status == 200


@pytest.mark.asyncio
async def test_every_x_forwarded_for_line_counts_so_a_client_cannot_pick_its_address(
    gateway, fake_members, settings
):
    settings.VIBEADMIN_TRUSTED_PROXIES = ["127.0.0.1"]
    await sync_to_async(fake_members)(2, ttft=0.5)
    await sync_to_async(set_policy)(solve_pool_share=1.0)
    first = Call(
        gateway,
        "POST",
        SOLVE_PATH,
        json.dumps(solve()).encode(),
        {"x-forwarded-for": "10.0.0.9"},
        client="127.0.0.1",
    )
    await first.started.wait()
    # The client sent its own line; the proxy added one of its own with the real address.
    lines = [
        ("content-type", "application/json"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.9"),
    ]

    reply = await Call(gateway, "POST", SOLVE_PATH, json.dumps(solve()).encode(), lines).done()

    assert reply.status == 429
    assert (await first.done()).status == 200


@pytest.mark.asyncio
async def test_a_student_cannot_ask_for_more_tokens_than_the_ceiling(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1)
    await sync_to_async(set_policy)(solve_max_tokens=100)

    refused = await request(gateway, "POST", SOLVE_PATH, solve(max_tokens=101))

    assert refused.status == 400
    assert refused.json()["error"]["param"] == "max_tokens"
    assert "limited to 100 tokens" in refused.json()["error"]["message"]
    assert (await request(gateway, "POST", SOLVE_PATH, solve(max_tokens=100))).status == 200
    assert fake.stats()["last_request"]["max_tokens"] == 100


@pytest.mark.asyncio
async def test_a_null_max_tokens_means_the_pages_own_ceiling_not_the_apis_default(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1)
    await sync_to_async(set_policy)(solve_max_tokens=100)

    reply = await request(gateway, "POST", SOLVE_PATH, solve(max_tokens=None))

    assert reply.status == 200
    assert fake.stats()["last_request"]["max_tokens"] == 100


@pytest.mark.asyncio
async def test_students_together_use_at_most_their_share_of_the_pool(gateway, fakes_in_loop, platform_key):
    await fakes_in_loop(4, ttft=0.5)  # 4 slots; the default share is half: 2 for students
    first, second = answering(gateway, "10.0.0.1"), answering(gateway, "10.0.0.2")
    await asyncio.gather(first.started.wait(), second.started.wait())

    third = await request(gateway, "POST", SOLVE_PATH, solve(), client="10.0.0.3")
    platform = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)

    assert third.status == 429
    assert third.json()["error"]["code"] == "solve_pool_share"
    assert "busy with other students' problems" in third.json()["error"]["message"]
    assert platform.status == 200 and platform.headers["x-vibeadmin-queue-ms"] == "0.0"
    assert [(await c.done()).status for c in (first, second)] == [200, 200]


@pytest.mark.asyncio
async def test_an_address_busy_on_one_gateway_is_refused_on_another_that_shares_redis(gateway, fake_members):
    if redis_missing():
        pytest.skip(redis_missing())
    from pool.gateway.app import Gateway
    from pool.gateway.limits_redis import RedisLimits

    server = await sync_to_async(start_redis)()
    other = Gateway()
    try:
        for gw in (gateway, other):
            gw.admission = Admission(RedisLimits(server.url))
        first = await one_answer_in_flight(gateway, fake_members, "10.0.0.1")

        elsewhere = await request(other, "POST", SOLVE_PATH, solve(), client="10.0.0.1")

        assert elsewhere.status == 429
        assert elsewhere.json()["error"]["code"] == "solve_inflight_per_address"
        assert (await first.done()).status == 200
    finally:
        for task in (other.registry._task, other._sampler):
            if task is not None:
                task.cancel()
        await sync_to_async(server.stop)()


@pytest.mark.django_db
def test_the_page_offers_answer_lengths_up_to_the_ceiling(client, settings):
    settings.VIBEADMIN_MAX_TOKENS = 8192
    settings.VIBEADMIN_DEFAULT_MAX_TOKENS = 1024
    PoolSettings.objects.get_or_create(pk=1)
    PoolSettings.objects.filter(pk=1).update(solve_max_tokens=1000)
    page = client.get("/solve/")
    assert page.context["budgets"] == [512, 1000]
    assert '<option value="1000" selected>' in page.content.decode()


@pytest.mark.django_db
def test_the_caps_are_set_on_the_routing_page(admin_client):
    page = admin_client.get(reverse("routing")).content.decode()
    for name in ("solve_inflight_per_address", "solve_max_tokens", "solve_pool_share"):
        assert f'name="{name}"' in page
    changes = {"solve_inflight_per_address": 2, "solve_max_tokens": 512, "solve_pool_share": 0.25}
    admin_client.post(reverse("routing"), routing_data(**changes))
    row = PoolSettings.load()
    assert (row.solve_inflight_per_address, row.solve_max_tokens, row.solve_pool_share) == (2, 512, 0.25)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes",
    [
        {"solve_inflight_per_address": 0},
        {"solve_max_tokens": 0},
        {"solve_pool_share": 0},
        {"solve_pool_share": 1.5},
    ],
)
def test_bad_caps_are_refused_on_the_form(admin_client, changes):
    response = admin_client.post(reverse("routing"), routing_data(**changes))
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    row = PoolSettings.load()
    assert (row.solve_inflight_per_address, row.solve_max_tokens, row.solve_pool_share) == (1, 2048, 0.5)
