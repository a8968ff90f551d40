"""Token quotas per calendar day and month, per key and for the solve page: reserved when a
request is admitted and settled to what it used, 429 quota_exceeded with the reset time at
100%, the alert webhook told once a period at the soft threshold, a refused request
consuming nothing, and with Redis three gateways counting each request once. The members
are testing.fake_member servers (small fake OpenAI servers whose token counts are exact);
Redis is a real redis-server (testing/services.py)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from pool.gateway import tasks
from pool.gateway.admission import estimate_prompt_tokens
from pool.gateway.quotas import LocalQuotas, Quota, RedisQuotas, periods
from pool.models import QuotaWarning, UsageDay
from pool.services.keys import apikey_create, apikey_set
from testing.services import redis_missing, start_redis
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat, set_policy

pytestmark = pytest.mark.asyncio
PATH = "/v1/chat/completions"


def headers(key: str) -> dict:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


def used(reply) -> int:
    usage = reply.json()["usage"]
    return usage["prompt_tokens"] + usage["completion_tokens"]


async def settled() -> None:
    await asyncio.gather(*list(tasks._running), return_exceptions=True)


async def test_a_key_at_its_daily_quota_gets_429_with_the_reset_time(gateway, fakes_in_loop, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    await fakes_in_loop(1, max_tokens=40)
    _, key = await sync_to_async(apikey_create)(name="school", tokens_per_day=45)

    first = await request(gateway, "POST", PATH, chat(max_tokens=50), key=key)
    refused = await request(gateway, "POST", PATH, chat(max_tokens=50), key=key)

    assert first.status == 200 and used(first) >= 45
    assert refused.status == 429
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded" and error["type"] == "rate_limit_error"
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    assert f"resets at {tomorrow} 00:00 CE" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 24 * 3600


async def test_a_reservation_is_settled_to_what_was_used_and_a_refusal_consumes_nothing(
    gateway, fakes_in_loop
):
    await fakes_in_loop(1, max_tokens=4)
    _, key = await sync_to_async(apikey_create)(name="school", tokens_per_month=100)

    replies = [await request(gateway, "POST", PATH, chat(max_tokens=80), key=key) for _ in range(12)]

    # Each reserves ~100 and uses 14: settled, the 8th starts at 98 of 100 and is the last.
    served = [r for r in replies if r.status == 200]
    assert {used(r) for r in served} == {14} and len(served) == 8
    assert {r.status for r in replies[8:]} == {429}
    level = gateway.quotas.levels[
        f"key:{(await sync_to_async(lambda: apikey_id('school'))())}|{periods(month_quota(100))[0].name}"
    ]
    assert level == sum(used(r) for r in served)


def apikey_id(name: str) -> int:
    from pool.models import ApiKey

    return ApiKey.objects.get(name=name).pk


def month_quota(n: int) -> Quota:
    return Quota("x", "x", None, n)


async def test_a_quota_set_below_what_was_used_refuses_at_once(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=10)
    _, key = await sync_to_async(apikey_create)(name="school", tokens_per_month=10_000)
    assert (await request(gateway, "POST", PATH, chat(max_tokens=20), key=key)).status == 200

    await sync_to_async(apikey_set)(name="school", tokens_per_month=5)
    await gateway.registry.refresh()
    reply = await request(gateway, "POST", PATH, chat(max_tokens=20), key=key)

    assert reply.status == 429 and reply.json()["error"]["code"] == "quota_exceeded"
    assert "monthly quota of 5 tokens" in reply.json()["error"]["message"]


async def test_usage_counted_before_a_restart_still_counts(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=10)
    _, key = await sync_to_async(apikey_create)(name="school", tokens_per_day=50)
    pk = await sync_to_async(apikey_id)("school")
    await sync_to_async(UsageDay.objects.create)(
        tenant=f"key:{pk}", day=timezone.localdate(), requests=3, prompt_tokens=20, completion_tokens=30
    )

    reply = await request(gateway, "POST", PATH, chat(max_tokens=20), key=key)

    assert reply.status == 429


async def test_the_soft_threshold_tells_the_webhook_once_a_period(gateway, fakes_in_loop):
    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        await sync_to_async(set_policy)(alert_webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
        await fakes_in_loop(1, max_tokens=5)
        _, key = await sync_to_async(apikey_create)(name="school", tokens_per_month=100)
        for _ in range(6):  # each uses ~15 of 100: past 80% by the sixth
            await request(gateway, "POST", PATH, chat(max_tokens=5), key=key)
            await settled()
        other = Quota("key:999", "another", None, 100)
        assert await sync_to_async(QuotaWarning.objects.count)() == 1
        assert len(received) == 1
        alert = received[0]["alerts"][0]
        assert (
            alert["labels"]["alertname"] == "QuotaSoftLimit" and "'school'" in alert["annotations"]["summary"]
        )
        assert other.tenant != alert["labels"]["tenant"]
    finally:
        server.shutdown()


async def test_the_solve_page_has_a_quota_of_its_own(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=10)
    await sync_to_async(set_policy)(solve_tokens_per_day=10, solve_rpm=100, solve_cache=False)
    problem = json.dumps({"problem": "Solve 2x+3=7", "max_tokens": 20}).encode()

    first = await request(gateway, "POST", "/solve/api/stream", raw=problem)
    second = await request(gateway, "POST", "/solve/api/stream", raw=problem, client="10.0.0.9")

    assert first.status == 200
    assert second.status == 429 and second.json()["error"]["code"] == "quota_exceeded"
    assert "the solve page" in second.json()["error"]["message"]


@pytest.mark.django_db
async def test_a_day_quota_above_the_month_quota_is_refused():
    with pytest.raises(ValueError, match="the month.s quota"):
        await sync_to_async(apikey_create)(name="x", tokens_per_day=10, tokens_per_month=5)


async def test_three_gateways_sharing_redis_pass_a_monthly_quota_by_at_most_one_request(
    gateway, fakes_in_loop, settings
):
    if redis_missing():
        pytest.skip(redis_missing())
    from pool.gateway.app import Gateway

    server = await sync_to_async(start_redis)()
    others = [Gateway(), Gateway()]
    try:
        gateways = [gateway, *others]
        for gw in gateways:
            gw.quotas = RedisQuotas(server.url)
        await fakes_in_loop(2, max_tokens=40, concurrent=True, ttft=0.05)
        quota = 2_000
        _, key = await sync_to_async(apikey_create)(name="school", tokens_per_month=quota)
        body = json.dumps(chat("Count to forty", max_tokens=40)).encode()
        system = {"role": "system", "content": "You are a helpful assistant."}  # the operator's, added
        reservation = 40 + estimate_prompt_tokens({"messages": [system, *chat("Count to forty")["messages"]]})

        calls = [Call(gateways[i % 3], "POST", PATH, body, headers(key)) for i in range(100)]
        replies = await asyncio.gather(*(c.done(30) for c in calls))
        await settled()

        assert not any(gw.quotas.failing for gw in gateways)  # counted, not failed open
        served = [r for r in replies if r.status == 200]
        refused = [r for r in replies if r.status == 429]
        assert len(served) + len(refused) == 100 and refused
        assert {r.json()["error"]["code"] for r in refused} == {"quota_exceeded"}
        admitted = sum(used(r) for r in served)
        assert admitted <= quota + reservation
        pk = await sync_to_async(apikey_id)("school")
        import redis

        counted = redis.Redis.from_url(server.url).get(
            f"vibeadmin:quota:key:{pk}|{periods(month_quota(1))[0].name}"
        )
        assert int(counted) == admitted  # refused requests added nothing
    finally:
        for gw in others:
            for task in (gw.registry._task, gw._sampler):
                if task is not None:
                    task.cancel()
        await sync_to_async(server.stop)()


async def test_quotas_fail_open_when_redis_is_away(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=5)
    gateway.quotas = RedisQuotas("redis://127.0.0.1:1/0")  # nothing listens there
    _, key = await sync_to_async(apikey_create)(name="school", tokens_per_month=1)

    reply = await request(gateway, "POST", PATH, chat(max_tokens=5), key=key)

    assert reply.status == 200
    assert "Redis is unreachable" in gateway.quotas.failing


async def test_local_quotas_count_a_tenant_per_period():
    quotas = LocalQuotas()
    quotas.seeds = {"t|" + p.name: 0 for p in periods(Quota("t", "t", 100, 1000))}
    held = await quotas.reserve(Quota("t", "t", 100, 1000), 90)
    quotas.settle(held, 30)
    assert sorted(quotas.levels.values()) == [30, 30]


async def test_a_time_zone_that_does_not_exist_stops_start_up_with_one_line(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from vibeadmin.env import env_time_zone

    monkeypatch.setenv("VIBEADMIN_TIME_ZONE", "Mars/Olympus_Mons")
    with pytest.raises(ImproperlyConfigured, match="VIBEADMIN_TIME_ZONE must be a time zone name"):
        env_time_zone("VIBEADMIN_TIME_ZONE", "UTC")
    monkeypatch.setenv("VIBEADMIN_TIME_ZONE", "Asia/Tokyo")
    assert env_time_zone("VIBEADMIN_TIME_ZONE", "UTC") == "Asia/Tokyo"


async def test_a_month_quota_resets_at_the_first_of_the_next_month_in_the_operators_time_zone(settings):
    from datetime import UTC, datetime

    settings.TIME_ZONE = "Asia/Tokyo"
    # 20:00 UTC on 31 January is already 1 February in Tokyo.
    (day, month) = periods(Quota("t", "t", 10, 100), datetime(2027, 1, 31, 20, 0, tzinfo=UTC))
    assert (day.name, month.name) == ("day:2027-02-01", "month:2027-02")
    assert month.resets_at.isoformat() == "2027-03-01T00:00:00+09:00"
    assert day.resets_at.isoformat() == "2027-02-02T00:00:00+09:00"


async def test_a_new_day_forgets_the_counters_of_the_days_gone_but_not_this_months():
    from datetime import UTC, datetime

    quotas = LocalQuotas()
    student = Quota("key:1", "a student", 100, 1000, user="alice")
    yesterday = periods(student, datetime(2027, 3, 9, 12, tzinfo=UTC))
    quotas.seeds = {f"key:1|{p.name}|user:alice": 0 for p in yesterday}
    await quotas.take(student, yesterday, [0, 0], 10)
    quotas.forget_past(yesterday)
    today = periods(student, datetime(2027, 3, 10, 12, tzinfo=UTC))

    quotas.forget_past(today)

    assert set(quotas.levels) == set(quotas.seeds) == {"key:1|month:2027-03|user:alice"}


async def test_counters_redis_lost_are_seeded_again_from_what_the_database_holds_now(gateway, fakes_in_loop):
    if redis_missing():
        pytest.skip(redis_missing())
    import redis

    server = await sync_to_async(start_redis)()
    try:
        gateway.quotas = RedisQuotas(server.url)
        await fakes_in_loop(1, max_tokens=10)
        _, key = await sync_to_async(apikey_create)(name="school", tokens_per_day=100)
        first = await request(gateway, "POST", PATH, chat(max_tokens=10), key=key)  # seeded at 0
        assert first.status == 200
        await settled()
        await gateway.keep_books()  # its usage is in the database now
        pk = await sync_to_async(apikey_id)("school")
        assert await sync_to_async(UsageDay.objects.filter(tenant=f"key:{pk}").count)() == 1
        await sync_to_async(UsageDay.objects.filter(tenant=f"key:{pk}").update)(
            prompt_tokens=40,
            completion_tokens=60,  # as if other gateways had used the rest of the day since
        )
        redis.Redis.from_url(server.url).flushall()  # a restart without persistence

        reply = await request(gateway, "POST", PATH, chat(max_tokens=10), key=key)

        assert reply.status == 429 and reply.json()["error"]["code"] == "quota_exceeded"
    finally:
        await sync_to_async(server.stop)()


async def test_a_settlement_after_redis_lost_a_counter_does_not_make_it_again(gateway, fakes_in_loop):
    if redis_missing():
        pytest.skip(redis_missing())
    import redis

    server = await sync_to_async(start_redis)()
    try:
        quotas = RedisQuotas(server.url)
        quota = Quota("key:1", "the key 'x'", 1_000, None)
        reservation = await quotas.reserve(quota, 500)
        redis.Redis.from_url(server.url).flushall()
        quotas.settle(reservation, 10)  # gives back 490 to a counter that is gone
        await settled()

        assert redis.Redis.from_url(server.url).keys("vibeadmin:quota:*") == []
    finally:
        await sync_to_async(server.stop)()
