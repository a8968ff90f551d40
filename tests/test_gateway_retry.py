"""Failures: retried on another member while nothing reached the client, never replayed
after; passive ejection; client disconnects free the member (fake members)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from pool import inflight
from pool.models import Member, states
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat, set_policy

pytestmark = pytest.mark.asyncio


async def member_state(name: str) -> str:
    return (await sync_to_async(Member.objects.get)(name=name)).state


async def route_first_to(gateway, name: str) -> None:
    """Round robin from a known start, so the test knows which member is tried first."""
    await sync_to_async(set_policy)(strategy="round_robin")
    await gateway.start()
    gateway.registry.strategy.next = [b.name for b in gateway.registry.routable()].index(name)


async def test_a_5xx_before_any_byte_is_retried_on_another_member(gateway, fake_members, platform_key):
    a, b = await sync_to_async(fake_members)(2)
    a.configure(fail_status=500)
    await route_first_to(gateway, "a")
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert reply.status == 200
    assert reply.headers["x-vibeadmin-member"] == "b"
    assert a.stats()["failed"] == 1


async def test_a_member_that_refuses_connections_is_ejected_at_once(gateway, fake_members, platform_key):
    a, b = await sync_to_async(fake_members)(2)
    a.stop()
    await route_first_to(gateway, "a")
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert reply.status == 200
    assert reply.headers["x-vibeadmin-member"] == "b"
    assert [m.name for m in gateway.registry.routable()] == ["b"]
    for _ in range(100):  # the database write happens beside the request
        if await member_state("a") == states.UNHEALTHY:
            break
        await asyncio.sleep(0.02)
    assert await member_state("a") == states.UNHEALTHY


async def test_repeated_5xx_eject_a_member_before_the_next_probe(
    gateway, fake_members, platform_key, settings
):
    a, b = await sync_to_async(fake_members)(2)
    a.configure(fail_status=503)
    for _ in range(settings.VIBEADMIN_UNHEALTHY_AFTER):
        await route_first_to(gateway, "a")
        assert (
            await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
        ).status == 200
    assert [m.name for m in gateway.registry.routable()] == ["b"]


async def test_retries_are_bounded_and_end_in_a_clear_502(gateway, fake_members, platform_key, settings):
    fakes = await sync_to_async(fake_members)(4)
    for fake in fakes:
        fake.configure(fail_status=500)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert reply.status == 502
    assert reply.json()["error"]["code"] == "upstream_error"
    assert sum(f.stats()["failed"] for f in fakes) == settings.VIBEADMIN_MAX_RETRIES + 1


async def test_a_started_stream_is_never_replayed_and_ends_with_an_error_event(
    gateway, fake_members, platform_key
):
    a, b = await sync_to_async(fake_members)(2, tpt=0.01)
    a.configure(drop_after_tokens=3)
    await route_first_to(gateway, "a")
    reply = await request(
        gateway, "POST", "/v1/chat/completions", chat(stream=True, max_tokens=10), key=platform_key
    )
    events = reply.events()
    assert reply.status == 200
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:3]] == ["tok0", " tok1", " tok2"]
    assert json.loads(events[-1])["error"]["code"] == "upstream_error"
    assert b.stats()["requests"] == 0
    assert inflight.snapshot() == {}


async def test_a_reset_while_reading_a_whole_reply_is_retried(gateway, fake_members, platform_key):
    a, b = await sync_to_async(fake_members)(2)
    a.configure(drop_after_tokens=2)
    await route_first_to(gateway, "a")
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert reply.status == 200
    assert reply.headers["x-vibeadmin-member"] == "b"


async def test_a_client_that_disconnects_mid_stream_frees_the_member_at_once(
    gateway, fake_members, platform_key
):
    (a,) = await sync_to_async(fake_members)(1, tpt=0.05)
    await gateway.start()
    headers = {"authorization": f"Bearer {platform_key}", "content-type": "application/json"}
    call = Call(
        gateway,
        "POST",
        "/v1/chat/completions",
        json.dumps(chat(stream=True, max_tokens=64)).encode(),
        headers,
    )
    await asyncio.wait_for(call.first_chunk.wait(), 5)
    call.disconnect()
    await call.done()
    assert inflight.snapshot() == {}
    for _ in range(100):
        if a.stats()["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    stats = a.stats()
    assert (stats["in_flight"], stats["cancelled"], stats["served"]) == (0, 1, 0)
