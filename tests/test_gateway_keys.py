"""Platforms' API keys on /v1/: required, revocable, limited, and their usage recorded."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from pool.models import ApiKey
from pool.services.keys import apikey_create, apikey_revoke
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat, set_policy

pytestmark = pytest.mark.asyncio


async def test_a_request_without_a_key_is_401(gateway, fake_members):
    await sync_to_async(fake_members)(1)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat())
    assert reply.status == 401
    assert reply.json()["error"]["type"] == "authentication_error"


async def test_an_unknown_key_is_401(gateway):
    reply = await request(gateway, "GET", "/v1/models", key="va-not-a-real-key")
    assert reply.status == 401


async def test_a_key_created_a_moment_ago_works_at_once(gateway, fake_members):
    await sync_to_async(fake_members)(1)
    await gateway.start()
    _, raw = await sync_to_async(apikey_create)(name="new-platform")
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=raw)
    assert reply.status == 200


async def test_a_revoked_key_is_refused_after_the_next_refresh(gateway, fake_members, platform_key):
    await sync_to_async(fake_members)(1)
    assert (await request(gateway, "GET", "/v1/models", key=platform_key)).status == 200
    await sync_to_async(apikey_revoke)(name="algebra-school")
    await gateway.registry.refresh()
    assert (await request(gateway, "GET", "/v1/models", key=platform_key)).status == 401


async def test_an_open_api_needs_no_key(gateway, fake_members):
    await sync_to_async(fake_members)(1)
    await sync_to_async(set_policy)(api_open=True)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat())
    assert reply.status == 200


async def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(gateway, fake_members):
    await sync_to_async(fake_members)(1)
    _, raw = await sync_to_async(apikey_create)(name="small-school", rpm=2)
    statuses = [(await request(gateway, "POST", "/v1/chat/completions", chat(), key=raw)) for _ in range(3)]
    assert [r.status for r in statuses] == [200, 200, 429]
    assert statuses[2].json()["error"]["code"] == "rate_limit_requests"
    assert int(statuses[2].headers["retry-after"]) >= 1


async def test_a_key_over_its_parallel_limit_gets_429(gateway, fake_members):
    await sync_to_async(fake_members)(2, ttft=0.5)
    _, raw = await sync_to_async(apikey_create)(name="one-at-a-time", max_parallel=1)
    await gateway.start()
    first = Call(
        gateway,
        "POST",
        "/v1/chat/completions",
        b'{"model": "vibethinker", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}',
        {"authorization": f"Bearer {raw}", "content-type": "application/json"},
    )
    await asyncio.sleep(0.1)
    second = await request(gateway, "POST", "/v1/chat/completions", chat(), key=raw)
    assert second.status == 429
    assert second.json()["error"]["code"] == "rate_limit_parallel"
    assert (await first.done()).status == 200


async def test_a_key_over_its_tokens_per_minute_gets_429(gateway, fake_members):
    # Each request reserves its prompt (estimated) and max_tokens; the first uses 60 tokens
    # and its prompt, which leaves less than the second's reservation.
    await sync_to_async(fake_members)(1)
    _, raw = await sync_to_async(apikey_create)(name="token-budget", tpm=100)
    first = await request(gateway, "POST", "/v1/chat/completions", chat(max_tokens=60), key=raw)
    assert first.status == 200
    second = await request(gateway, "POST", "/v1/chat/completions", chat(max_tokens=60), key=raw)
    assert second.status == 429
    assert second.json()["error"]["code"] == "rate_limit_tokens"


async def test_usage_per_key_is_recorded(gateway, fake_members, platform_key):
    await sync_to_async(fake_members)(1)
    for _ in range(2):
        await request(gateway, "POST", "/v1/chat/completions", chat(max_tokens=4), key=platform_key)
    await request(gateway, "POST", "/v1/chat/completions", chat(model="nope"), key=platform_key)
    await sync_to_async(gateway.registry.flush_usage)()
    key = await sync_to_async(ApiKey.objects.get)(name="algebra-school")
    assert key.requests == 2
    assert key.completion_tokens == 8
    assert key.prompt_tokens > 0
    assert key.last_used_at is not None
