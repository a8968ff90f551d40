"""A key's tokens per minute hold under concurrency: requests reserve their prompt and
max_tokens when admitted and are settled to the real usage when they end; streams count
their tokens (the member's usage where it reports it), and a client that leaves is
charged for what was generated. The members are testing.fake_member servers (small fake
OpenAI servers whose token counts are exact); real members are in test_gateway_real_model.py
and test_gateway_llama_server.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from pool.gateway.admission import Admission
from pool.models import ApiKey
from pool.services.keys import apikey_create
from testing.services import redis_missing, start_redis
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat

pytestmark = pytest.mark.asyncio

PATH = "/v1/chat/completions"


def streamed(max_tokens: int, **extra) -> bytes:
    return json.dumps(chat("Count to a hundred.", max_tokens=max_tokens, stream=True, **extra)).encode()


def headers(key: str) -> dict:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


def token_events(reply) -> list[dict]:
    chunks = [json.loads(e) for e in reply.events() if e != "[DONE]"]
    return [c for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("content")]


async def usage_of(gateway, name: str) -> ApiKey:
    await sync_to_async(gateway.registry.flush_usage)()
    return await sync_to_async(ApiKey.objects.get)(name=name)


async def six_parallel_streams(gateway, key: str) -> list:
    calls = [Call(gateway, "POST", PATH, streamed(100), headers(key)) for _ in range(6)]
    return await asyncio.gather(*(call.done(15) for call in calls))


async def test_six_parallel_streams_on_a_250_tpm_key_admit_at_most_two(gateway, fake_members):
    await sync_to_async(fake_members)(2, ttft=0.3, max_tokens=100)
    _, raw = await sync_to_async(apikey_create)(name="small-budget", tpm=250)
    await gateway.start()

    replies = await six_parallel_streams(gateway, raw)

    served = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == 429]
    assert 1 <= len(served) <= 2 and len(served) + len(refused) == 6
    for reply in refused:
        assert reply.json()["error"]["code"] == "rate_limit_tokens"
        assert int(reply.headers["retry-after"]) >= 1


async def test_the_limit_holds_across_gateways_that_share_redis(gateway, fake_members, settings):
    if redis_missing():
        pytest.skip(redis_missing())
    from pool.gateway.app import Gateway
    from pool.gateway.limits_redis import RedisLimits

    server = await sync_to_async(start_redis)()
    try:
        other = Gateway()
        for gw in (gateway, other):
            gw.admission = Admission(RedisLimits(server.url))
        await sync_to_async(fake_members)(2, ttft=0.3, max_tokens=100)
        _, raw = await sync_to_async(apikey_create)(name="small-budget", tpm=250)
        calls = [Call(gw, "POST", PATH, streamed(100), headers(raw)) for gw in (gateway, other) * 3]
        replies = await asyncio.gather(*(call.done(15) for call in calls))
        assert 1 <= sum(r.status == 200 for r in replies) <= 2
        assert sum(r.status == 429 for r in replies) >= 4
        for task in (other.registry._task, other._sampler):
            if task is not None:
                task.cancel()
    finally:
        await sync_to_async(server.stop)()


async def test_a_reservation_is_settled_to_what_the_request_used(gateway, fake_members):
    # The member stops by itself after 4 tokens: the key gets back the rest of max_tokens,
    # so two more such requests fit where, charged their reservation, only one would.
    await sync_to_async(fake_members)(2, ttft=0.3, max_tokens=4)
    _, raw = await sync_to_async(apikey_create)(name="settled", tpm=300)
    first = await request(gateway, "POST", PATH, chat(max_tokens=100), key=raw)
    assert first.status == 200 and first.json()["usage"]["completion_tokens"] == 4

    calls = [
        Call(gateway, "POST", PATH, json.dumps(chat(max_tokens=100)).encode(), headers(raw)) for _ in range(2)
    ]
    replies = await asyncio.gather(*(call.done() for call in calls))

    assert [r.status for r in replies] == [200, 200]


async def test_a_request_that_could_never_fit_the_keys_limit_is_400(gateway, fake_members):
    await sync_to_async(fake_members)(1)
    _, raw = await sync_to_async(apikey_create)(name="tiny", tpm=50)
    reply = await request(gateway, "POST", PATH, chat(max_tokens=100), key=raw)
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "max_tokens"
    assert "50 tokens per minute" in reply.json()["error"]["message"]


async def test_a_streams_usage_is_what_the_member_reported_and_only_asked_for_chunks_reach_the_client(
    gateway, fake_members
):
    (fake,) = await sync_to_async(fake_members)(1, max_tokens=100)
    _, raw = await sync_to_async(apikey_create)(name="exact")

    plain = await Call(gateway, "POST", PATH, streamed(7), headers(raw)).done()
    asked = await Call(
        gateway, "POST", PATH, streamed(7, stream_options={"include_usage": True}), headers(raw)
    ).done()

    assert fake.stats()["last_request"]["stream_options"] == {"include_usage": True}
    plain_chunks = [json.loads(e) for e in plain.events() if e != "[DONE]"]
    assert all(c["choices"] for c in plain_chunks)  # no usage-only chunk the client did not ask for
    assert len(token_events(plain)) == 7
    reported = json.loads(asked.events()[-2])["usage"]
    assert reported["completion_tokens"] == 7
    key = await usage_of(gateway, "exact")
    assert key.completion_tokens == 14
    assert key.prompt_tokens == 2 * reported["prompt_tokens"]


async def test_a_client_that_leaves_a_stream_is_charged_for_what_was_generated(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1, ttft=0.05, tpt=0.05, max_tokens=1000)
    _, raw = await sync_to_async(apikey_create)(name="leaver")
    call = Call(gateway, "POST", PATH, streamed(1000), headers(raw))
    await call.first_chunk.wait()
    await asyncio.sleep(0.3)
    call.disconnect()
    reply = await call.done()

    generated = len(token_events(reply))  # the gateway relays each token as the member makes it
    assert generated >= 2
    key = await usage_of(gateway, "leaver")
    assert key.completion_tokens == generated
    assert key.prompt_tokens > 0 and key.errors == 1
