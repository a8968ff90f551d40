"""What a platform reads back with its key: GET /v1/usage (the key's, or ?user= one
student's, today and this month against the limits) and GET /v1/usage/users (the key's
students by tokens, paged). A key reads only its own students. The members are
testing.fake_member servers (small fake OpenAI servers whose token counts are exact)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from pool.models import StudentDay
from pool.services.keys import apikey_create
from tests.asgi_driver import request
from tests.gateway_kit import chat, set_policy

pytestmark = pytest.mark.asyncio
PATH = "/v1/chat/completions"


async def ask(gateway, key: str, user: str = "", max_tokens: int = 8):
    body = {**chat(max_tokens=max_tokens), **({"user": user} if user else {})}
    reply = await request(gateway, "POST", PATH, body, key=key)
    assert reply.status == 200
    return reply.json()["usage"]["total_tokens"]


async def test_a_key_reads_its_own_usage_and_what_remains(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=10)
    _, key = await sync_to_async(apikey_create)(name="school", rpm=100, tokens_per_day=10_000, user_rpm=5)
    spent = await ask(gateway, key, "alice") + await ask(gateway, key)

    reply = await request(gateway, "GET", "/v1/usage", key=key)

    assert reply.status == 200
    report = reply.json()
    assert report["key"] == "school" and report["user"] is None
    today = report["today"]
    assert today["requests"] == 2 and today["total_tokens"] == spent  # counted before the book is written
    assert today["token_limit"] == 10_000 and today["tokens_remaining"] == 10_000 - spent
    assert report["this_month"]["total_tokens"] == spent and report["this_month"]["token_limit"] is None
    assert report["limits"]["requests_per_minute"] == 100
    assert today["since"] == timezone.localdate().isoformat()


async def test_a_key_reads_one_students_usage_against_the_limits_per_student(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=10)
    _, key = await sync_to_async(apikey_create)(name="school", user_tokens_per_month=500, user_parallel=2)
    alice = await ask(gateway, key, "alice") + await ask(gateway, key, "alice")
    await ask(gateway, key, "bob")
    await sync_to_async(gateway.usage.flush)()  # written, then read back from the database
    await ask(gateway, key, "alice")

    report = (await request(gateway, "GET", "/v1/usage?user=alice", key=key)).json()

    assert report["user"] == "alice" and report["this_month"]["requests"] == 3
    assert report["this_month"]["token_limit"] == 500
    assert report["this_month"]["tokens_remaining"] == 500 - report["this_month"]["total_tokens"]
    assert report["this_month"]["total_tokens"] > alice
    assert report["limits"] == {"requests_per_minute": None, "parallel": 2}


async def test_the_keys_students_come_by_tokens_used_a_page_at_a_time(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=20)
    _, key = await sync_to_async(apikey_create)(name="school", user_tokens_per_day=1000)
    for user, max_tokens in (("a", 4), ("b", 12), ("c", 8)):
        await ask(gateway, key, user, max_tokens)
    await sync_to_async(gateway.usage.flush)()

    first = (await request(gateway, "GET", "/v1/usage/users?period=day&limit=2", key=key)).json()
    second = (
        await request(
            gateway, "GET", f"/v1/usage/users?period=day&limit=2&offset={first['next_offset']}", key=key
        )
    ).json()

    assert [row["user"] for row in first["data"]] == ["b", "c"] and first["has_more"]
    assert [row["user"] for row in second["data"]] == ["a"] and not second["has_more"]
    assert second["next_offset"] is None
    row = first["data"][0]
    assert row["tokens_remaining"] == 1000 - row["total_tokens"] and row["requests"] == 1


async def test_a_key_reads_only_its_own_students(gateway, fakes_in_loop):
    await fakes_in_loop(1, max_tokens=10)
    _, school = await sync_to_async(apikey_create)(name="school")
    _, other = await sync_to_async(apikey_create)(name="other-school")
    await ask(gateway, school, "alice")
    await sync_to_async(gateway.usage.flush)()

    theirs = (await request(gateway, "GET", "/v1/usage/users", key=other)).json()
    alice = (await request(gateway, "GET", "/v1/usage?user=alice", key=other)).json()

    assert theirs["data"] == []
    assert alice["today"]["requests"] == 0 and alice["key"] == "other-school"
    assert await sync_to_async(StudentDay.objects.filter(user="alice").count)() == 1


@pytest.mark.parametrize(
    "path, param",
    [
        ("/v1/usage/users?period=week", "period"),
        ("/v1/usage/users?limit=0", "limit"),
        ("/v1/usage/users?limit=5000", "limit"),
        ("/v1/usage/users?offset=-1", "offset"),
        ("/v1/usage/users?user=alice", "user"),
        ("/v1/usage?user=" + "x" * 129, "user"),
        ("/v1/usage?user=a%0Ab", "user"),
        ("/v1/usage?period=day", "period"),
        ("/v1/usage?user=a&user=b", None),
        ("/v1/usage?user=%ff", None),
    ],
)
async def test_a_query_that_is_not_understood_is_a_400(gateway, fakes_in_loop, path, param):
    await fakes_in_loop(1)
    _, key = await sync_to_async(apikey_create)(name="school")

    reply = await request(gateway, "GET", path, key=key)

    assert reply.status == 400
    assert (
        reply.json()["error"]["param"] == param and reply.json()["error"]["type"] == "invalid_request_error"
    )


async def test_usage_needs_a_key_even_where_the_api_is_open(gateway, fakes_in_loop):
    await fakes_in_loop(1)
    await sync_to_async(set_policy)(api_open=True)

    for path in ("/v1/usage", "/v1/usage/users"):
        reply = await request(gateway, "GET", path)
        assert reply.status == 401 and reply.json()["error"]["code"] == "invalid_api_key"
