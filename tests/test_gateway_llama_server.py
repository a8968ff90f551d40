"""llama.cpp's own server (llama-server), real, with the small gemma GGUF (named, not the default): it honours
stream_options.include_usage, so a key is charged the member's own counts for a stream.
Skipped where llama-server is not built (bin/build-llama-server puts it under
~/.cache/vibeadmin/llama-server/; VIBEADMIN_LLAMA_SERVER may name another binary)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from asgiref.sync import sync_to_async

from pool.models import ApiKey, Member, states
from pool.services.keys import apikey_create
from tests.asgi_driver import Call
from tests.real_members import NOT_BUILT, llama_server_binary

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(llama_server_binary() is None, reason=NOT_BUILT),
]
# A system prompt of its own, which the gateway keeps: the member sees the same prompt both ways.
MESSAGES = [{"role": "system", "content": "You count."}, {"role": "user", "content": "Count from 1 to 50."}]
ASK = {"model": "gemma", "messages": MESSAGES, "max_tokens": 8, "temperature": 0, "stream": True}


def stream_from(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(
        url + "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        lines = response.read().decode().splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_llama_server_ends_a_stream_with_its_usage_when_asked(llama_server):
    events = stream_from(llama_server, {**ASK, "stream_options": {"include_usage": True}})
    last = events[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 8
    assert not any("usage" in event for event in events[:-1])
    assert not any("usage" in event for event in stream_from(llama_server, ASK))  # only when asked


@pytest.mark.asyncio
async def test_a_keys_usage_is_what_llama_server_reported(llama_server, gateway):
    await sync_to_async(Member.objects.create)(
        name="ls", kind=states.REMOTE, url=llama_server, state=states.READY
    )
    _, raw = await sync_to_async(apikey_create)(name="exact")
    reported = await sync_to_async(stream_from)(
        llama_server, {**ASK, "stream_options": {"include_usage": True}}
    )
    usage = reported[-1]["usage"]
    body = json.dumps({**ASK, "model": "vibethinker"}).encode()

    reply = await Call(
        gateway,
        "POST",
        "/v1/chat/completions",
        body,
        {"authorization": f"Bearer {raw}", "content-type": "application/json"},
    ).done(120)

    chunks = [json.loads(e) for e in reply.events() if e != "[DONE]"]
    assert chunks and all(c["choices"] for c in chunks)  # the usage event went to the gateway only
    await sync_to_async(gateway.registry.flush_usage)()
    key = await sync_to_async(ApiKey.objects.get)(name="exact")
    assert (key.prompt_tokens, key.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
