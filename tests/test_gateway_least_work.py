"""Least work through the whole gateway: a request's max_tokens count as its member's work
while it holds the member, and go back however it ends (in-loop fake members)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from tests.asgi_driver import Call, request
from tests.gateway_kit import chat, set_policy

pytestmark = pytest.mark.asyncio


async def least_work_over(gateway, fakes_in_loop, n: int, **options):
    await sync_to_async(set_policy)(strategy="least_work")
    fakes = await fakes_in_loop(n, **options)
    await gateway.start()
    return fakes


def work(gateway) -> dict[str, int]:
    return {b.name: b.work for b in gateway.registry.routable()}


def streamed(gateway, key: str, **fields) -> Call:
    body = json.dumps(chat(stream=True, **fields)).encode()
    return Call(gateway, "POST", "/v1/chat/completions", body, {"authorization": f"Bearer {key}"})


async def test_a_running_request_counts_its_max_tokens_on_its_member_until_it_ends(
    gateway, fakes_in_loop, platform_key
):
    await least_work_over(gateway, fakes_in_loop, 1, tpt=0.01)
    call = streamed(gateway, platform_key, max_tokens=40)
    await asyncio.wait_for(call.first_chunk.wait(), 5)
    assert work(gateway) == {"a": 40}
    assert (await call.done()).status == 200
    assert work(gateway) == {"a": 0}


async def test_a_request_without_max_tokens_counts_the_gateways_default(
    gateway, fakes_in_loop, platform_key, settings
):
    settings.VIBEADMIN_DEFAULT_MAX_TOKENS = 30
    await least_work_over(gateway, fakes_in_loop, 1, tpt=0.01)
    call = streamed(gateway, platform_key, max_tokens=None)  # null: as if left out
    await asyncio.wait_for(call.first_chunk.wait(), 5)
    assert work(gateway) == {"a": 30}
    await call.done()
    assert work(gateway) == {"a": 0}


async def test_work_goes_back_when_the_client_leaves(gateway, fakes_in_loop, platform_key):
    await least_work_over(gateway, fakes_in_loop, 1, tpt=0.05)
    call = streamed(gateway, platform_key, max_tokens=60)
    await asyncio.wait_for(call.first_chunk.wait(), 5)
    call.disconnect()
    await call.done()
    assert work(gateway) == {"a": 0}


async def test_work_goes_back_on_both_members_after_a_retry(gateway, fakes_in_loop, platform_key):
    a, b = await least_work_over(gateway, fakes_in_loop, 2)
    a.config.fail_status = 500
    b.config.fail_status = 500
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(max_tokens=50), key=platform_key)
    assert reply.status == 502  # tried on one member, retried on the other
    assert a.stats.failed + b.stats.failed >= 2
    assert work(gateway) == {"a": 0, "b": 0}
