"""Students inside a platform's key: named by the request's `user` (or X-Vibeadmin-User),
checked (a 400 in OpenAI's shape), each with the key's limits per student of their own
(429 user_rate_limited / user_quota_exceeded with Retry-After, the key's other students
unaffected), exact across gateways sharing Redis. The members are testing.fake_member
servers (small fake OpenAI servers whose token counts are exact); Redis is a real
redis-server (testing/services.py)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from pool.gateway import tasks
from pool.gateway.admission import estimate_prompt_tokens
from pool.gateway.quotas import RedisQuotas
from pool.services.keys import apikey_create
from testing.services import redis_missing, start_redis
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat

pytestmark = pytest.mark.asyncio
PATH = "/v1/chat/completions"


def headers(key: str, **more: str) -> dict:
    return {"authorization": f"Bearer {key}", "content-type": "application/json", **more}


def used(reply) -> int:
    return reply.json()["usage"]["total_tokens"]


async def settled() -> None:
    await asyncio.gather(*list(tasks._running), return_exceptions=True)


@pytest.mark.parametrize(
    "user, why",
    [
        ("x" * 129, "at most 128 characters"),
        ("alice\nbob", "printable"),
        ("tab\there", "printable"),
        ("\u202e", "printable"),  # a format character that turns text around
        (42, "must be a string"),
    ],
)
async def test_a_student_name_that_is_not_short_printable_text_is_a_400(gateway, fakes_in_loop, user, why):
    await fakes_in_loop(1)
    _, key = await sync_to_async(apikey_create)(name="school")

    reply = await request(gateway, "POST", PATH, {**chat(), "user": user}, key=key)

    assert reply.status == 400
    error = reply.json()["error"]
    assert why in error["message"] and error["param"] == "user" and error["type"] == "invalid_request_error"


async def test_the_header_is_checked_the_same_and_must_agree_with_the_body(gateway, fakes_in_loop):
    await fakes_in_loop(1)
    _, key = await sync_to_async(apikey_create)(name="school")
    body = json.dumps(chat()).encode()

    bad = await Call(
        gateway, "POST", PATH, body, [*headers(key).items(), ("x-vibeadmin-user", "a\x7fb")]
    ).done()
    both = await request(
        gateway, "POST", PATH, {**chat(), "user": "alice"}, key=key, headers={"x-vibeadmin-user": "bob"}
    )
    same = await request(
        gateway, "POST", PATH, {**chat(), "user": "alice"}, key=key, headers={"x-vibeadmin-user": "alice"}
    )
    unicode = await request(gateway, "POST", PATH, chat(), key=key, headers={"x-vibeadmin-user": "Zoë 学生"})

    assert bad.status == 400 and bad.json()["error"]["param"] == "X-Vibeadmin-User"
    assert both.status == 400 and "different students" in both.json()["error"]["message"]
    assert same.status == 200 and unicode.status == 200


async def test_a_student_over_the_keys_rate_per_student_gets_429_and_classmates_do_not(
    gateway, fakes_in_loop
):
    await fakes_in_loop(1)
    _, key = await sync_to_async(apikey_create)(name="school", user_rpm=2)

    alice = [await request(gateway, "POST", PATH, {**chat(), "user": "alice"}, key=key) for _ in range(3)]
    bob = await request(gateway, "POST", PATH, {**chat(), "user": "bob"}, key=key)
    unnamed = [await request(gateway, "POST", PATH, chat(), key=key) for _ in range(3)]

    assert [r.status for r in alice] == [200, 200, 429]
    error = alice[2].json()["error"]
    assert error["code"] == "user_rate_limited" and error["type"] == "rate_limit_error"
    assert "'alice'" in error["message"] and "2 requests per minute" in error["message"]
    assert int(alice[2].headers["retry-after"]) >= 1
    assert bob.status == 200
    assert {r.status for r in unnamed} == {200}  # the key's own requests have no student's limits


async def test_a_student_over_the_parallel_limit_per_student_gets_429(gateway, fakes_in_loop):
    await fakes_in_loop(2, ttft=0.5, concurrent=True)
    _, key = await sync_to_async(apikey_create)(name="school", user_parallel=1)
    await gateway.start()
    first = Call(gateway, "POST", PATH, json.dumps({**chat(), "user": "alice"}).encode(), headers(key))
    await asyncio.sleep(0.1)

    second = await request(gateway, "POST", PATH, chat(), key=key, headers={"x-vibeadmin-user": "alice"})
    classmate = await request(gateway, "POST", PATH, {**chat(), "user": "bob"}, key=key)

    assert second.status == 429 and second.json()["error"]["code"] == "user_rate_limited"
    assert "1 requests in flight" in second.json()["error"]["message"]
    assert classmate.status == 200
    assert (await first.done()).status == 200


async def test_a_student_at_the_daily_quota_per_student_gets_429_with_the_reset(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=40)
    _, key = await sync_to_async(apikey_create)(name="school", user_tokens_per_day=45, tokens_per_day=10_000)

    first = await request(gateway, "POST", PATH, {**chat(max_tokens=50), "user": "alice"}, key=key)
    refused = await request(gateway, "POST", PATH, {**chat(max_tokens=50), "user": "alice"}, key=key)
    bob = await request(gateway, "POST", PATH, {**chat(max_tokens=50), "user": "bob"}, key=key)

    assert first.status == 200 and used(first) >= 45
    assert refused.status == 429
    error = refused.json()["error"]
    assert error["code"] == "user_quota_exceeded"
    assert (
        "the student 'alice' of the key 'school'" in error["message"]
        and "daily quota of 45" in error["message"]
    )
    assert 1 <= int(refused.headers["retry-after"]) <= 24 * 3600
    assert bob.status == 200


async def test_a_request_the_keys_quota_refuses_gives_the_students_reservation_back(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=10)
    _, key = await sync_to_async(apikey_create)(name="school", tokens_per_day=15, user_tokens_per_day=1000)
    assert (
        await request(gateway, "POST", PATH, {**chat(max_tokens=20), "user": "alice"}, key=key)
    ).status == 200
    before = dict(gateway.quotas.levels)

    refused = await request(gateway, "POST", PATH, {**chat(max_tokens=20), "user": "alice"}, key=key)

    assert refused.status == 429 and refused.json()["error"]["code"] == "quota_exceeded"
    assert gateway.quotas.levels == before


async def test_two_gateways_sharing_redis_overspend_a_students_day_by_at_most_one_request(
    gateway, fakes_in_loop
):
    if redis_missing():
        pytest.skip(redis_missing())
    from pool.gateway.app import Gateway

    server = await sync_to_async(start_redis)()
    other = Gateway()
    try:
        for gw in (gateway, other):
            gw.quotas = RedisQuotas(server.url)
        await fakes_in_loop(2, max_tokens=40, concurrent=True, ttft=0.05)
        quota = 1_000
        _, key = await sync_to_async(apikey_create)(name="school", user_tokens_per_day=quota)
        body = json.dumps({**chat("Count to forty", max_tokens=40), "user": "alice"}).encode()
        system = {"role": "system", "content": "You are a helpful assistant."}  # the operator's, added
        reservation = 40 + estimate_prompt_tokens({"messages": [system, *chat("Count to forty")["messages"]]})

        calls = [Call((gateway, other)[i % 2], "POST", PATH, body, headers(key)) for i in range(60)]
        replies = await asyncio.gather(*(c.done(30) for c in calls))
        bob = await request(other, "POST", PATH, {**chat(), "user": "bob"}, key=key)
        await settled()

        served = [r for r in replies if r.status == 200]
        refused = [r for r in replies if r.status == 429]
        assert len(served) + len(refused) == 60 and refused
        assert {r.json()["error"]["code"] for r in refused} == {"user_quota_exceeded"}
        assert sum(used(r) for r in served) <= quota + reservation
        assert bob.status == 200
    finally:
        for task in (other.registry._task, other._sampler):
            if task is not None:
                task.cancel()
        await sync_to_async(server.stop)()


async def test_the_line_knows_a_keys_student_and_a_solve_page_students_network(
    gateway, fakes_in_loop, monkeypatch
):
    await fakes_in_loop(1)
    _, key = await sync_to_async(apikey_create)(name="school")
    seen = []
    acquire = gateway.router.acquire

    async def noting(ctx, *args, **kwargs):
        seen.append((ctx.tenant.id, ctx.student))
        return await acquire(ctx, *args, **kwargs)

    monkeypatch.setattr(gateway.router, "acquire", noting)
    solve = json.dumps({"problem": "Solve 2x+3=7", "max_tokens": 8}).encode()

    await request(gateway, "POST", PATH, {**chat(), "user": "alice"}, key=key)
    await request(gateway, "POST", PATH, chat(), key=key)
    await request(gateway, "POST", "/solve/api/stream", raw=solve, client="2001:db8:1:2::7")

    tenant = seen[0][0]
    assert seen == [(tenant, "alice"), (tenant, ""), ("solve", "2001:db8:1:2::/64")]


async def test_two_gateways_sharing_redis_let_a_student_through_exactly_at_the_rate(gateway, fakes_in_loop):
    if redis_missing():
        pytest.skip(redis_missing())
    from pool.gateway.admission import Admission
    from pool.gateway.app import Gateway
    from pool.gateway.limits_redis import RedisLimits

    server = await sync_to_async(start_redis)()
    other = Gateway()
    try:
        for gw in (gateway, other):
            gw.admission = Admission(RedisLimits(server.url))
        await fakes_in_loop(2, concurrent=True)
        _, key = await sync_to_async(apikey_create)(name="school", user_rpm=5)
        body = json.dumps({**chat(), "user": "alice"}).encode()

        calls = [Call((gateway, other)[i % 2], "POST", PATH, body, headers(key)) for i in range(12)]
        replies = await asyncio.gather(*(c.done(30) for c in calls))

        assert sorted(r.status for r in replies) == [200] * 5 + [429] * 7
        assert {r.json()["error"]["code"] for r in replies if r.status == 429} == {"user_rate_limited"}
    finally:
        for task in (other.registry._task, other._sampler):
            if task is not None:
                task.cancel()
        await sync_to_async(server.stop)()


async def test_a_students_counter_redis_lost_is_seeded_from_the_students_own_usage(gateway, fakes_in_loop):
    if redis_missing():
        pytest.skip(redis_missing())
    import redis
    from django.utils import timezone

    from pool.models import ApiKey, StudentDay, UsageDay

    server = await sync_to_async(start_redis)()
    try:
        gateway.quotas = RedisQuotas(server.url)
        await fakes_in_loop(1, max_tokens=10)
        _, key = await sync_to_async(apikey_create)(name="school", user_tokens_per_day=100)
        pk = (await sync_to_async(ApiKey.objects.get)(name="school")).pk
        today = timezone.localdate()
        # The key has used far more than a student's day (other students); alice little.
        await sync_to_async(UsageDay.objects.create)(tenant=f"key:{pk}", day=today, prompt_tokens=5000)
        await sync_to_async(StudentDay.objects.create)(key_id=pk, user="alice", day=today, prompt_tokens=95)
        redis.Redis.from_url(server.url).flushall()

        alice = await request(gateway, "POST", PATH, {**chat(max_tokens=10), "user": "alice"}, key=key)
        again = await request(gateway, "POST", PATH, {**chat(max_tokens=10), "user": "alice"}, key=key)
        bob = await request(gateway, "POST", PATH, {**chat(max_tokens=10), "user": "bob"}, key=key)

        assert alice.status == 200 and bob.status == 200  # not refused for the key's 5,000
        assert again.status == 429 and again.json()["error"]["code"] == "user_quota_exceeded"
    finally:
        await sync_to_async(server.stop)()
