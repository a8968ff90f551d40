"""When every member is busy, requests wait in one bounded FIFO queue with a deadline
(fake members, one generation at a time each)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from pool import inflight
from pool.models import Member
from tests.asgi_driver import request
from tests.gateway_kit import chat, chat_call, set_policy, wait_for_queue

pytestmark = pytest.mark.asyncio


async def test_requests_beyond_capacity_wait_and_are_served_in_arrival_order(
    gateway, fake_members, platform_key
):
    await sync_to_async(fake_members)(1, ttft=0.2)
    await gateway.start()
    first = chat_call(gateway, platform_key, "first")
    await asyncio.sleep(0.05)
    waiting = []
    for i in range(3):
        waiting.append(chat_call(gateway, platform_key, f"waiting {i}"))
        await wait_for_queue(gateway, i + 1)
    replies = [await c.done() for c in [first, *waiting]]
    assert [r.status for r in replies] == [200] * 4
    queued_ms = [float(r.headers["x-vibeadmin-queue-ms"]) for r in replies]
    assert queued_ms[0] == 0
    assert queued_ms[1] < queued_ms[2] < queued_ms[3]  # each waited for the one before it


async def test_a_member_never_gets_more_than_its_capacity(gateway, fake_members, platform_key):
    fakes = await sync_to_async(fake_members)(2, ttft=0.05)
    calls = [chat_call(gateway, platform_key) for _ in range(8)]
    assert [(await c.done()).status for c in calls] == [200] * 8
    assert all(fake.stats()["max_concurrent"] == 1 for fake in fakes)


async def test_a_full_queue_answers_429_with_retry_after(gateway, fake_members, platform_key):
    await sync_to_async(fake_members)(1, ttft=0.5)
    await sync_to_async(set_policy)(queue_size=1)
    await gateway.start()
    busy = chat_call(gateway, platform_key)
    await asyncio.sleep(0.05)
    queued = chat_call(gateway, platform_key)
    await wait_for_queue(gateway, 1)
    refused = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    assert [(await busy.done()).status, (await queued.done()).status] == [200, 200]


async def test_a_request_past_the_queue_deadline_gets_503_with_retry_after(
    gateway, fake_members, platform_key
):
    await sync_to_async(fake_members)(1, ttft=1.0)
    await sync_to_async(set_policy)(queue_timeout_s=0.2)
    await gateway.start()
    busy = chat_call(gateway, platform_key)
    await asyncio.sleep(0.05)
    late = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert late.status == 503
    assert late.json()["error"]["code"] == "queue_timeout"
    assert int(late.headers["retry-after"]) >= 1
    assert len(gateway.router.queue) == 0
    assert (await busy.done()).status == 200


async def test_no_ready_member_is_a_clear_503(gateway, platform_key):
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "no_ready_member"
    assert "no member" in reply.json()["error"]["message"]


@pytest.mark.parametrize("state", ["starting", "draining", "unhealthy", "stopped"])
async def test_a_member_that_is_not_ready_gets_no_request(state, gateway, fake_members, platform_key):
    (a, b) = await sync_to_async(fake_members)(2)
    await sync_to_async(Member.objects.filter(name="a").update)(state=state)
    for _ in range(4):
        reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
        assert reply.headers["x-vibeadmin-member"] == "b"
    assert a.stats()["requests"] == 0


async def test_a_waiting_client_that_leaves_is_taken_out_of_the_queue(gateway, fake_members, platform_key):
    await sync_to_async(fake_members)(1, ttft=0.3)
    await gateway.start()
    busy = chat_call(gateway, platform_key)
    await asyncio.sleep(0.05)
    leaver = chat_call(gateway, platform_key)
    await wait_for_queue(gateway, 1)
    leaver.disconnect()
    await leaver.done()
    assert len(gateway.router.queue) == 0
    assert (await busy.done()).status == 200
    assert inflight.snapshot() == {}
