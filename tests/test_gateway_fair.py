"""Fair sharing through the whole gateway (keys, line, relay), with fake members (small fake
OpenAI servers, one generation at a time): each key is a tenant, and what each was served
shows in /metrics."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY

from pool.apikeys import apikey_create
from tests.asgi_driver import request
from tests.gateway_kit import chat
from tests.test_gateway_queue import chat_call, wait_for_queue

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
