"""Fair sharing through the whole gateway (keys, line, relay), with fake members (small fake
OpenAI servers, one generation at a time): each key is a tenant, and what each was served
shows in /metrics."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY

from pool import inflight
from pool.services.keys import apikey_create
from tests.asgi_driver import request
from tests.gateway_kit import chat, chat_call, set_policy, wait_for_queue

pytestmark = pytest.mark.asyncio


async def test_a_second_platform_waits_for_the_next_slot_not_behind_the_first_ones_burst(
    gateway, fake_members
):
    await sync_to_async(fake_members)(1, ttft=0.15)
    (_, flood), (_, light) = [await sync_to_async(apikey_create)(name=n) for n in ("district", "tutor")]
    await gateway.start()
    burst = [chat_call(gateway, flood, f"burst {i}") for i in range(4)]
    await wait_for_queue(gateway, 3)
    late = chat_call(gateway, light, "one question")
    await wait_for_queue(gateway, 4)
    replies = [await c.done() for c in [*burst, late]]
    assert [r.status for r in replies] == [200] * 5
    queued_ms = [float(r.headers["x-vibeadmin-queue-ms"]) for r in replies]
    # The burst had one request served (running) and the tutor none: the tutor's goes next.
    assert queued_ms[4] < queued_ms[1] < queued_ms[2] < queued_ms[3]


async def test_metrics_export_each_tenants_served_tokens(gateway, fake_members):
    await sync_to_async(fake_members)(1)
    _, raw = await sync_to_async(apikey_create)(name="served-school", weight=2)
    before = (
        REGISTRY.get_sample_value("vibeadmin_tenant_served_tokens_total", {"tenant": "served-school"}) or 0
    )
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=raw)
    assert reply.status == 200
    gateway.router.sample()  # what the gateway does once a second
    served = REGISTRY.get_sample_value("vibeadmin_tenant_served_tokens_total", {"tenant": "served-school"})
    assert served == before + reply.json()["usage"]["completion_tokens"]


async def member_busy() -> None:
    """Until the one member holds a request (the next ones must wait in line)."""
    for _ in range(200):
        if inflight.snapshot():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no request ever reached the member")


async def test_a_tenant_flooding_the_line_cannot_lock_another_out_of_it(gateway, fake_members):
    await sync_to_async(fake_members)(1, ttft=0.3)
    await sync_to_async(set_policy)(queue_size=3, queue_timeout_s=30)
    (_, flood), (_, light) = [await sync_to_async(apikey_create)(name=n) for n in ("flooder", "other")]
    await gateway.start()
    running = chat_call(gateway, flood, "running", max_tokens=1)
    await member_busy()
    line = [chat_call(gateway, flood, f"waiting {i}", max_tokens=1) for i in range(3)]
    await wait_for_queue(gateway, 3)  # the line is full, all of it the flooder's

    late = chat_call(gateway, light, "one question")
    newest = await line[2].done()

    assert newest.status == 429  # the flooder's newest waiter gave its place up
    assert newest.json()["error"]["code"] == "queue_full"
    replies = [await c.done() for c in [running, *line[:2], late]]
    assert [r.status for r in replies] == [200] * 4
    queued_ms = [float(r.headers["x-vibeadmin-queue-ms"]) for r in replies[1:]]
    assert queued_ms[2] < queued_ms[0] < queued_ms[1]  # admitted, and served before the flooder's


async def test_a_tenant_at_its_share_of_a_full_line_still_gets_queue_full(gateway, fake_members):
    await sync_to_async(fake_members)(1, ttft=0.3)
    await sync_to_async(set_policy)(queue_size=2, queue_timeout_s=30)
    (_, first), (_, second) = [await sync_to_async(apikey_create)(name=n) for n in ("one", "two")]
    await gateway.start()
    running = chat_call(gateway, first, "running")
    await member_busy()
    waiting = [chat_call(gateway, first, "mine"), chat_call(gateway, second, "theirs")]
    await wait_for_queue(gateway, 2)

    refused = await request(gateway, "POST", "/v1/chat/completions", chat(), key=second)

    assert refused.status == 429
    assert [(await c.done()).status for c in [running, *waiting]] == [200] * 3
