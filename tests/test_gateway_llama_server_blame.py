"""Against real llama-server members (the default gemma GGUF): what a client sends never
gets a 5xx from the gateway and never counts against a member.

First llama-server's own replies to requests it cannot use, sent to it directly: the
gateway's judgement (pool/gateway/blame.py) must call each one the client's. Then
hypothesis draws bodies (valid ones mutated, and junk) and sends them through a gateway
whose pool is two llama-servers: no 5xx, no error event in a stream, no member ever
counted as failing, both still answering their health check after.

VIBEADMIN_PROPERTY_EXAMPLES sets how many bodies are drawn (200 by default, for the
suite's time; thousands for a real hunt). Skipped where llama-server is not built.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pool import inflight
from pool.gateway import upstream
from pool.gateway.app import SOLVE_PATH, Gateway
from pool.gateway.blame import about_the_request
from pool.gateway.errors import ApiError
from pool.gateway.validation import CHAT_FIELDS, validate
from pool.models import ApiKey, Member, PoolSettings, states
from tests.asgi_driver import request
from tests.helpers import answers
from tests.real_members import NOT_BUILT, llama_server_binary, start_llama_server, wait_loaded

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(llama_server_binary() is None, reason=NOT_BUILT),
]
KEY = "va-llama-server-blame-key"
EXAMPLES = int(os.environ.get("VIBEADMIN_PROPERTY_EXAMPLES", "200"))


@pytest.fixture(scope="module")
def llama_servers(gemma_model):
    started = [start_llama_server(gemma_model.path) for _ in range(2)]
    try:
        for child, url in started:
            wait_loaded(child, url)
        yield [url for _, url in started]
    finally:
        for child, _ in started:
            child.terminate()
            child.wait(timeout=10)


def post_directly(url: str, body: bytes) -> tuple[int, bytes]:
    call = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


CHAT = {"model": "gemma", "max_tokens": 2}
# What llama-server refuses, as measured by hand, all 400 invalid_request_error. (A role it
# does not know and a stream_options that is a list it takes without a word: the gateway
# refuses those itself.)
HI = [{"role": "user", "content": "hi"}]
UNUSABLE = {
    "a content that is a number": {**CHAT, "messages": [{"role": "user", "content": 5}]},
    "include_usage that is a string": {
        **CHAT,
        "messages": HI,
        "stream": True,
        "stream_options": {"include_usage": "x"},
    },
    "a prompt longer than its context": {**CHAT, "messages": [{"role": "user", "content": "word " * 2000}]},
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_llama_servers_refusal_of_a_request_it_cannot_use_is_judged_the_clients(llama_servers, case):
    status, body = post_directly(llama_servers[0], json.dumps(UNUSABLE[case]).encode())
    assert status >= 400, (status, body[:300])
    assert about_the_request(status, body), (status, body[:300])
    assert answers(llama_servers[0] + "/health")


# What makes llama-server throw (500 server_error, which is judged the member's, as a
# failed decode is): the gateway refuses these itself, so no member is blamed for them.
THROWS = {
    "a message name that is an object": {**CHAT, "messages": [{"role": "user", "content": "hi", "name": {}}]},
    "a lone surrogate in a stop string": {**CHAT, "messages": HI, "stop": "\ud800"},
}


@pytest.mark.parametrize("case", sorted(THROWS))
def test_what_makes_llama_server_throw_never_reaches_a_member(llama_servers, case):
    status, body = post_directly(llama_servers[0], json.dumps(THROWS[case]).encode())
    assert status == 500 and not about_the_request(status, body), (status, body[:300])
    with pytest.raises(ApiError) as refused:
        validate(THROWS[case], CHAT_FIELDS)
    assert refused.value.status == 400


def test_llama_servers_reply_while_loading_is_not(llama_servers):
    # What a loading llama-server answers (server.cpp's ERROR_TYPE_UNAVAILABLE), as it is
    # too quick to catch here reliably: its shape is the one /health gives while loading.
    loading = b'{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}'
    assert not about_the_request(503, loading)


# --- drawn bodies through the gateway ------------------------------------------------------


class Pool:
    """One gateway on an event loop the test drives, whose pool is the two llama-servers."""

    def __init__(self, urls: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        members = [
            Member(pk=i + 1, name=f"m{i}", kind=states.REMOTE, url=url, state=states.READY, max_inflight=1)
            for i, url in enumerate(urls)
        ]
        key = ApiKey(pk=1, name="school", key_hash=hashlib.sha256(KEY.encode()).hexdigest())
        row = PoolSettings(api_open=False, solve_rpm=1_000_000, queue_size=64, queue_timeout_s=60)
        self.gateway = Gateway()
        self.gateway.registry.load = lambda: (members, [key], row)  # no database: the pool is these two
        self.failures: list[str] = []
        self.gateway.exchange.member_failed = lambda backend, error, *, hard: self.failures.append(
            f"{backend.name}: {error}"
        )

    def call(self, method: str, path: str, raw: bytes, headers: dict):
        return self.loop.run_until_complete(request(self.gateway, method, path, raw=raw, headers=headers))

    def close(self) -> None:
        async def stop():
            for task in (self.gateway.registry._task, self.gateway._sampler):
                if task is not None:
                    task.cancel()
            await upstream.close()

        self.loop.run_until_complete(stop())
        self.loop.close()


@pytest.fixture(scope="module")
def pool(llama_servers):
    inflight._counts.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pool.gateway.registry.Registry.flush_usage", lambda self: None)
        patch.setattr("pool.gateway.auth._find_key", lambda digest: None)
        made = Pool(llama_servers)
        yield made
        made.close()
    inflight._counts.clear()


@pytest.fixture
def short_answers(settings):
    """Answers of a few tokens, so hundreds of drawn bodies take a minute or two."""
    settings.VIBEADMIN_MAX_TOKENS = 4
    settings.VIBEADMIN_DEFAULT_MAX_TOKENS = 2
    return settings


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "a\udfffb", "\U0001f600", "", " ", "<|im_end|>", "<start_of_turn>"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
GONE = object()
texts = st.text(max_size=20) | st.sampled_from(["\ud800", "x\udc00", "\U0001f600 ok", "<end_of_turn>"])
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": texts},
    optional={"name": json_values},
)
options = {
    "max_tokens": st.integers(min_value=-2, max_value=6),
    "temperature": st.floats(min_value=-1, max_value=3) | json_values,
    "top_p": st.floats(min_value=0, max_value=1),
    "presence_penalty": st.floats(min_value=-3, max_value=3),
    "frequency_penalty": st.floats(min_value=-3, max_value=3),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_values}) | json_values,
    "stop": st.lists(texts, max_size=5) | texts,
    "seed": st.integers(min_value=-(2**64), max_value=2**64),
    "n": st.integers(min_value=0, max_value=2),
    "user": texts,
    "vibeadmin": st.fixed_dictionaries({"task": st.sampled_from(["general", "math", "code"])}),
}
VALID = {
    "/v1/chat/completions": st.fixed_dictionaries(
        {
            "model": st.just("vibethinker"),
            "messages": st.lists(message, max_size=2).map(
                lambda ms: [*ms, {"role": "user", "content": "hi"}]
            ),
        },
        optional=options,
    ),
    "/v1/completions": st.fixed_dictionaries(
        {"model": st.just("vibethinker"), "prompt": texts.filter(bool)}, optional=options
    ),
    SOLVE_PATH: st.fixed_dictionaries(
        {"problem": texts.filter(str.strip)},
        optional={
            "task": st.sampled_from(["math", "code"]) | json_values,
            "max_tokens": options["max_tokens"],
        },
    ),
}
FIELDS = [*options, "model", "messages", "prompt", "problem", "task"]
mutations = st.lists(st.tuples(st.sampled_from(FIELDS), json_values | st.just(GONE)), max_size=2)


def mutated(body: dict, changes: list) -> bytes:
    for name, value in changes:
        if value is GONE:
            body.pop(name, None)
        else:
            body[name] = value
    return json.dumps(body).encode()  # lone surrogates go as \ud800 escapes, as a client may send them


drawn_bodies = st.sampled_from(sorted(VALID)).flatmap(
    lambda path: st.tuples(st.just(path), st.builds(mutated, VALID[path], mutations))
)


@hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=drawn_bodies)
def test_no_drawn_body_gets_a_5xx_or_counts_against_a_real_member(pool, short_answers, drawn):
    path, raw = drawn
    head = {"authorization": f"Bearer {KEY}", "host": "127.0.0.1:8000", "content-type": "application/json"}

    reply = pool.call("POST", path, raw, head)

    assert reply.status < 500, (raw[:300], reply.body[:300])
    if reply.status >= 400:
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    else:
        assert not [e for e in reply.events() if e.startswith('{"error"')], (raw[:300], reply.body[:500])
    assert pool.failures == [], raw[:300]


def test_every_member_still_answers_its_health_check_after_the_drawn_bodies(llama_servers, pool):
    assert all(answers(url + "/health") for url in llama_servers)
    assert pool.failures == []


def test_a_prompt_past_the_members_context_is_a_400_that_says_so(pool, short_answers):
    body = {"model": "vibethinker", "messages": [{"role": "user", "content": "word " * 2000}]}
    head = {"authorization": f"Bearer {KEY}", "host": "127.0.0.1:8000"}

    reply = pool.call("POST", "/v1/chat/completions", json.dumps(body).encode(), head)

    assert reply.status == 400, reply.body[:300]
    assert reply.json()["error"]["code"] == "context_length_exceeded"
    assert pool.failures == []
