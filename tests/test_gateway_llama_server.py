"""llama.cpp's own server (llama-server), real, with the small gemma GGUF (named, not the default): it honours
stream_options.include_usage, so a key is charged the member's own counts for a stream.
Skipped where llama-server is not built (bin/build-llama-server puts it under
~/.cache/vibeadmin/llama-server/; VIBEADMIN_LLAMA_SERVER may name another binary)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from pool.models import ApiKey, Member, states
from pool.services.keys import apikey_create
from tests.asgi_driver import Call
from tests.helpers import answers, free_port, wait_until


def llama_server_binary() -> Path | None:
    named = os.environ.get("VIBEADMIN_LLAMA_SERVER")
    if named:
        return Path(named) if Path(named).is_file() else None
    found = sorted(glob.glob(os.path.expanduser("~/.cache/vibeadmin/llama-server/*/llama-server")))
    return Path(found[-1]) if found else None


pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(
        llama_server_binary() is None, reason="llama-server is not built (bin/build-llama-server)"
    ),
]
# A system prompt of its own, which the gateway keeps: the member sees the same prompt both ways.
MESSAGES = [{"role": "system", "content": "You count."}, {"role": "user", "content": "Count from 1 to 50."}]
ASK = {"model": "gemma", "messages": MESSAGES, "max_tokens": 8, "temperature": 0, "stream": True}


@pytest.fixture(scope="module")
def llama_server(gemma_model):
    port = free_port()
    command = [
        str(llama_server_binary()),
        "-m",
        str(gemma_model.path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        "512",
        "-t",
        "1",
        "--parallel",
        "1",
        "--no-jinja",  # the template by name, as members are started
        "--chat-template",
        "gemma",
    ]
    # Its shared libraries lie beside it.
    env = {**os.environ, "LD_LIBRARY_PATH": str(Path(command[0]).parent)}
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: answers(url + "/health") or child.poll() is not None, 120, what="llama-server to load"
        )
        assert child.poll() is None, "llama-server exited"
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


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
