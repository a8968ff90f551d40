"""The answer cache against llama.cpp's own server (llama-server), real, with the default
gemma GGUF: its stream (content deltas, finish_reason "stop", the usage event) is what the
cache stores, and a stored answer is served again the same, without the member. Skipped
where llama-server is not built (bin/build-llama-server)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from pool.models import Member, states
from pool.services.keys import apikey_create
from tests.asgi_driver import Call
from tests.real_members import NOT_BUILT, llama_server_binary

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(llama_server_binary() is None, reason=NOT_BUILT),
]
ASK = {
    "model": "vibethinker",
    "messages": [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": "Is 7 prime?"},
    ],
    "max_tokens": 64,
    "temperature": 0,
    # The small stand-in model rambles to max_tokens; a stop string ends its answer by itself
    # (finish_reason "stop"), which is what the cache stores.
    "stop": ["\n"],
    "stream": True,
    "stream_options": {"include_usage": True},
}


@pytest.mark.asyncio
async def test_an_answer_llama_server_finished_is_stored_and_served_again_the_same(
    llama_server, gateway, gemma_model, settings
):
    settings.VIBEADMIN_MODEL = str(gemma_model.path)
    await sync_to_async(Member.objects.create)(
        name="ls", kind=states.REMOTE, url=llama_server, state=states.READY
    )
    _, raw = await sync_to_async(apikey_create)(name="judge", cache=True)
    headers = {"authorization": f"Bearer {raw}", "content-type": "application/json"}

    replies = []
    for _ in range(2):
        replies.append(
            await Call(gateway, "POST", "/v1/chat/completions", json.dumps(ASK).encode(), headers).done(120)
        )

    live, hit = ([json.loads(e) for e in r.events() if e != "[DONE]"] for r in replies)
    assert [r.headers["x-vibeadmin-cache"] for r in replies] == ["miss", "hit"]
    assert "x-vibeadmin-member" not in replies[1].headers  # no member saw the second

    def text(chunks):
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])

    assert text(live).strip() and text(hit) == text(live)
    assert live[-2]["choices"][0]["finish_reason"] == hit[-2]["choices"][0]["finish_reason"] == "stop"
    assert hit[-1]["usage"]["completion_tokens"] == live[-1]["usage"]["completion_tokens"]
    assert hit[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == live[-1]["usage"]["prompt_tokens"]
