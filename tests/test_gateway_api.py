"""The OpenAI-compatible endpoints, in-process against fake members (testing.fake_member)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from pool.models import PoolSettings
from tests.asgi_driver import request
from tests.gateway_kit import chat

pytestmark = pytest.mark.asyncio


async def test_a_chat_completion_comes_back_with_the_member_that_served_it(
    gateway, fake_members, platform_key
):
    await sync_to_async(fake_members)(1)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["choices"][0]["message"]["content"].startswith("tok0")
    assert reply.headers["x-vibeadmin-member"] == "a"
    assert float(reply.headers["x-vibeadmin-overhead-ms"]) >= 0


async def test_a_streamed_chat_completion_arrives_as_server_sent_events(gateway, fake_members, platform_key):
    await sync_to_async(fake_members)(1)
    reply = await request(
        gateway, "POST", "/v1/chat/completions", chat(stream=True, max_tokens=5), key=platform_key
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    events = reply.events()
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "tok0 tok1 tok2 tok3 tok4"


async def test_a_text_completion_is_served_too(gateway, fake_members, platform_key):
    await sync_to_async(fake_members)(1)
    payload = {"model": "vibethinker", "prompt": "2+2=", "max_tokens": 3}
    reply = await request(gateway, "POST", "/v1/completions", payload, key=platform_key)
    assert reply.status == 200
    assert reply.json()["choices"][0]["text"] == "tok0 tok1 tok2"


async def test_the_member_is_asked_for_the_served_model_whatever_alias_the_client_used(
    gateway, fake_members, platform_key
):
    (fake,) = await sync_to_async(fake_members)(1)
    await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert fake.stats()["last_request"]["model"] == gateway.registry.policy.model_id


async def test_models_lists_the_served_model_and_its_alias(gateway, platform_key):
    reply = await request(gateway, "GET", "/v1/models", key=platform_key)
    ids = [m["id"] for m in reply.json()["data"]]
    assert ids == [gateway.registry.policy.model_id, "vibethinker"]


async def test_an_unknown_model_is_404_model_not_found(gateway, fake_members, platform_key):
    (fake,) = await sync_to_async(fake_members)(1)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(model="gpt-5"), key=platform_key)
    assert reply.status == 404
    assert reply.json()["error"]["code"] == "model_not_found"
    assert fake.stats()["requests"] == 0


async def test_an_unknown_path_is_404_in_openais_shape(gateway, platform_key):
    reply = await request(gateway, "POST", "/v1/embeddings", {}, key=platform_key)
    assert reply.status == 404
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}


async def test_the_openapi_document_describes_what_the_gateway_validates(gateway):
    from django.conf import settings

    reply = await request(gateway, "GET", "/v1/openapi.json")
    doc = reply.json()
    chat_schema = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert chat_schema["required"] == ["messages", "model"]
    assert chat_schema["properties"]["max_tokens"]["maximum"] == settings.VIBEADMIN_MAX_TOKENS
    assert chat_schema["properties"]["messages"]["items"]["properties"]["role"]["enum"] == [
        "system",
        "user",
        "assistant",
    ]
    assert set(doc["paths"]) == {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/usage",
        "/v1/usage/users",
    }


async def test_the_operators_system_prompt_is_injected_for_the_task(gateway, fake_members, platform_key):
    (fake,) = await sync_to_async(fake_members)(1)
    await request(gateway, "POST", "/v1/chat/completions", chat(vibeadmin={"task": "code"}), key=platform_key)
    messages = fake.stats()["last_request"]["messages"]
    assert messages[0] == {
        "role": "system",
        "content": (await sync_to_async(PoolSettings.load)()).prompt_code,
    }
    assert "vibeadmin" not in fake.stats()["last_request"]


async def test_a_callers_own_system_prompt_is_kept(gateway, fake_members, platform_key):
    (fake,) = await sync_to_async(fake_members)(1)
    payload = chat()
    payload["messages"].insert(0, {"role": "system", "content": "You are terse."})
    await request(gateway, "POST", "/v1/chat/completions", payload, key=platform_key)
    messages = fake.stats()["last_request"]["messages"]
    assert [m for m in messages if m["role"] == "system"] == [{"role": "system", "content": "You are terse."}]


async def test_a_chinese_prompt_gets_the_language_hint(gateway, fake_members, platform_key):
    (fake,) = await sync_to_async(fake_members)(1)
    await request(
        gateway, "POST", "/v1/chat/completions", chat("求方程 x^2 - 5x + 6 = 0 的解。"), key=platform_key
    )
    last = fake.stats()["last_request"]["messages"][-1]["content"]
    assert last.endswith((await sync_to_async(PoolSettings.load)()).language_hint)


async def test_an_unexpected_failure_still_answers_in_openais_shape(
    gateway, fake_members, platform_key, monkeypatch
):
    await sync_to_async(fake_members)(1)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("pool.gateway.app.prepare_messages", broken)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert reply.status == 500
    assert reply.json()["error"]["code"] == "internal_error"


async def test_a_lost_redis_is_a_clear_503(gateway, fake_members, platform_key, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    await sync_to_async(fake_members)(1)

    async def unreachable(*args, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(gateway.router, "take", unreachable)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "shared_state_unavailable"
