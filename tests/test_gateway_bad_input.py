"""Bad input gets a 4xx in OpenAI's error shape and never reaches a member (fake members)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from tests.asgi_driver import request
from tests.gateway_kit import chat

pytestmark = pytest.mark.asyncio

BAD_BODIES = {
    "not JSON": (b"{not json", 400, "invalid_json"),
    "a JSON list": (b"[1, 2]", 400, "invalid_json"),
    "no messages": (b'{"model": "vibethinker"}', 400, "missing_field"),
    "empty messages": (b'{"model": "vibethinker", "messages": []}', 400, None),
    "an unknown role": (
        b'{"model": "vibethinker", "messages": [{"role": "wizard", "content": "hi"}]}',
        400,
        None,
    ),
    "content not text": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": 7}]}',
        400,
        None,
    ),
    "only an empty user message": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": "  "}]}',
        400,
        None,
    ),
    "max_tokens of zero": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}',
        400,
        None,
    ),
    "max_tokens too large": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 99999999}',
        400,
        None,
    ),
    "max_tokens a string": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "8"}',
        400,
        None,
    ),
    "stream not a boolean": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "stream": 1}',
        400,
        None,
    ),
    "temperature out of range": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "temperature": 9}',
        400,
        None,
    ),
    "an unknown field": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "tools": []}',
        400,
        "unknown_field",
    ),
    "an unknown task": (
        b'{"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "vibeadmin": {"task": "poetry"}}',
        400,
        None,
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_a_bad_body_is_refused_in_openais_error_shape_and_not_forwarded(
    case, gateway, fake_members, platform_key
):
    (fake,) = await sync_to_async(fake_members)(1)
    raw, status, code = BAD_BODIES[case]
    reply = await request(gateway, "POST", "/v1/chat/completions", raw=raw, key=platform_key)
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code
    assert fake.stats()["requests"] == 0


async def test_a_prompt_over_the_cap_is_refused(gateway, fake_members, platform_key, settings):
    (fake,) = await sync_to_async(fake_members)(1)
    settings.VIBEADMIN_MAX_PROMPT_CHARS = 100
    reply = await request(gateway, "POST", "/v1/chat/completions", chat("x" * 101), key=platform_key)
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "prompt_too_long"
    assert fake.stats()["requests"] == 0


async def test_a_body_over_the_size_cap_is_413(gateway, fake_members, platform_key, settings):
    (fake,) = await sync_to_async(fake_members)(1)
    settings.VIBEADMIN_MAX_BODY_BYTES = 2048
    reply = await request(gateway, "POST", "/v1/chat/completions", chat("y" * 4096), key=platform_key)
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "request_too_large"
    assert fake.stats()["requests"] == 0


async def test_a_wrong_method_is_405(gateway, platform_key):
    reply = await request(gateway, "GET", "/v1/chat/completions", key=platform_key)
    assert reply.status == 405
    assert reply.json()["error"]["code"] == "method_not_allowed"
