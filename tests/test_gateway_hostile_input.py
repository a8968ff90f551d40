"""No input makes the gateway answer 5xx or log a traceback: bodies nested 100,000 deep,
NaN and Infinity, and whatever hypothesis draws, on every gateway route.

The member here is testing.fake_member's FakeMember served on the test's own event loop
(a small fake OpenAI server): requests that pass validation get a real 200 from it, so
the drawn bodies reach every step of the gateway, not only the parser.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pool import inflight
from pool.gateway import upstream
from pool.gateway.app import SOLVE_PATH, Gateway
from pool.models import ApiKey, Member, PoolSettings, states
from testing.fake_member import FakeConfig, FakeMember, start
from tests.asgi_driver import request

KEY = "va-hostile-input-test-key"
POSTS = ["/v1/chat/completions", "/v1/completions", SOLVE_PATH]
ROUTES = [("POST", p) for p in POSTS] + [("GET", "/v1/models"), ("GET", "/v1/openapi.json")]


class Pool:
    """One gateway and one fake member on an event loop the test drives example by example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.member = FakeMember(FakeConfig(max_tokens=4, ttft=0, tpt=0))
        self.runner, url = self.loop.run_until_complete(start(self.member))
        member = Member(pk=1, name="a", kind=states.REMOTE, url=url, state=states.READY, max_inflight=64)
        key = ApiKey(pk=1, name="school", key_hash=hashlib.sha256(KEY.encode()).hexdigest())
        row = PoolSettings(api_open=False, solve_rpm=1_000_000, queue_size=64, queue_timeout_s=2)
        self.gateway = Gateway()
        self.gateway.registry.load = lambda: ([member], [key], row)  # no database: the pool is this member

    def call(self, method: str, path: str, raw: bytes, headers: dict):
        return self.loop.run_until_complete(request(self.gateway, method, path, raw=raw, headers=headers))

    def close(self) -> None:
        async def stop():
            for task in (self.gateway.registry._task, self.gateway._sampler):
                if task is not None:
                    task.cancel()
            await upstream.close()
            await self.runner.cleanup()

        self.loop.run_until_complete(stop())
        self.loop.close()


@pytest.fixture(scope="module")
def pool():
    inflight._counts.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("pool.gateway.exchange._mark_unhealthy", lambda member_id, error: None)
        patch.setattr("pool.gateway.registry.Registry.flush_usage", lambda self: None)
        patch.setattr("pool.gateway.auth._find_key", lambda digest: None)
        made = Pool()
        yield made
        made.close()
    inflight._counts.clear()


def assert_answered_well(reply, caplog) -> None:
    """2xx, or 4xx with OpenAI's error shape; nothing logged as an error."""
    assert reply.status < 500, reply.body[:500]
    if reply.status >= 400:
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}, reply.body[:500]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
    caplog.clear()


def auth(key: str = KEY) -> dict:
    return {"authorization": f"Bearer {key}", "host": "127.0.0.1:8000"}


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_body_nested_deep_is_refused_with_400(pool, caplog, path, depth):
    for raw in (b"[" * depth, b'{"model": "vibethinker", "messages": ' + b"[" * depth + b"]" * depth + b"}"):
        reply = pool.call("POST", path, raw, auth())
        assert reply.status == 400, reply.body[:300]
        assert reply.json()["error"]["code"] in ("too_deep", "invalid_json")
        assert_answered_well(reply, caplog)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "max_tokens"])
def test_a_number_that_is_not_finite_is_refused_with_400(pool, caplog, field, value):
    raw = f'{{"model": "vibethinker", "messages": [{{"role": "user", "content": "hi"}}], "{field}": {value}}}'
    reply = pool.call("POST", "/v1/chat/completions", raw.encode(), auth())
    assert reply.status == 400, reply.body[:300]
    assert_answered_well(reply, caplog)


def test_a_well_formed_request_is_still_answered(pool, caplog):
    raw = json.dumps(
        {"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
    )
    reply = pool.call("POST", "/v1/chat/completions", raw.encode(), auth())
    assert reply.status == 200, reply.body[:300]
    assert_answered_well(reply, caplog)


# --- drawn requests ----------------------------------------------------------------------
# A valid body for the route, then up to three mutations (a field set to any JSON value,
# removed, or added): so drawn requests reach the member as often as they fail validation.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
GONE = object()
FIELDS = [
    "model",
    "messages",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "stream",
    "stop",
    "seed",
    "n",
    "stream_options",
    "vibeadmin",
    "user",
    "problem",
    "task",
    "tools",
]
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=30)}
)
options = {
    "max_tokens": st.integers(min_value=1, max_value=64),
    "temperature": st.floats(min_value=0, max_value=2),
    "top_p": st.floats(min_value=0, max_value=1),
    "stream": st.booleans(),
    "stop": st.lists(st.text(min_size=1, max_size=5), max_size=4),
    "seed": st.integers(min_value=0, max_value=2**31),
    "user": st.text(max_size=10),
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
        {"model": st.just("vibethinker"), "prompt": st.text(min_size=1, max_size=30)}, optional=options
    ),
    SOLVE_PATH: st.fixed_dictionaries(
        {"problem": st.text(min_size=1, max_size=30).filter(str.strip)},
        optional={"task": st.sampled_from(["math", "code"]), "max_tokens": options["max_tokens"]},
    ),
}
mutations = st.lists(st.tuples(st.sampled_from(FIELDS), json_values | st.just(GONE)), max_size=3)


def mutated(body: dict, changes: list) -> bytes:
    for name, value in changes:
        if value is GONE:
            body.pop(name, None)
        else:
            body[name] = value
    return json.dumps(body).encode()  # NaN and Infinity come out as such


any_body = (
    json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
    | st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
to_a_route = st.sampled_from(sorted(VALID)).flatmap(
    lambda path: st.tuples(st.just(("POST", path)), st.builds(mutated, VALID[path], mutations))
)
anywhere = st.tuples(
    st.sampled_from(ROUTES)
    | st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        st.sampled_from([*POSTS, "/v1", "/v1/", "/v1/x", "/v1/models/"]),
    ),
    any_body,
)
headers = st.fixed_dictionaries(
    {"authorization": st.sampled_from([f"Bearer {KEY}"] * 4 + ["Bearer wrong", "Basic x", "Bearer", ""])},
    optional={"content-type": st.text(max_size=20), "x-forwarded-for": st.text(max_size=20)},
)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=to_a_route | anywhere, extra=headers)
def test_no_drawn_request_gets_a_5xx_or_logs_a_traceback(pool, caplog, drawn, extra):
    caplog.clear()
    route, raw = drawn
    head = {
        "host": "127.0.0.1:8000",
        **{k: v.encode("latin-1", "replace").decode("latin-1") for k, v in extra.items()},
    }
    reply = pool.call(*route, raw, head)
    assert_answered_well(reply, caplog)


# --- fields a member would choke on are refused first --------------------------------------

CHAT = {"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}]}
UNUSABLE = {
    "a lone surrogate in a message": (
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": "x\ud800"}]},
    ),
    "a lone surrogate in a stop string": ("/v1/chat/completions", {**CHAT, "stop": "\ud800"}),
    "a lone surrogate in a text part": (
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
    ),
    "a lone surrogate in a prompt": ("/v1/completions", {"model": "vibethinker", "prompt": "a\ud800b"}),
    "a lone surrogate in the user": ("/v1/chat/completions", {**CHAT, "user": "\ud800"}),
    "a lone surrogate in a solve problem": (SOLVE_PATH, {"problem": "solve \ud800 for x"}),
    "a message name that is an object": (
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": "hi", "name": {}}]},
    ),
    "a text part with more than type and text": (
        "/v1/chat/completions",
        {
            **CHAT,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "image_url": "x"}]}],
        },
    ),
    "stream_options with other fields": ("/v1/chat/completions", {**CHAT, "stream_options": {"x": 1}}),
    "stream_options whose include_usage is no boolean": (
        "/v1/chat/completions",
        {**CHAT, "stream_options": {"include_usage": "yes"}},
    ),
    "an empty stop string": ("/v1/chat/completions", {**CHAT, "stop": [""]}),
    "a vibeadmin option it does not know": ("/v1/chat/completions", {**CHAT, "vibeadmin": {"grade": 1}}),
    "a task that is a list": ("/v1/chat/completions", {**CHAT, "vibeadmin": {"task": ["math"]}}),
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_a_field_a_member_would_choke_on_is_a_400_before_any_member_sees_it(pool, caplog, case):
    path, body = UNUSABLE[case]
    served = pool.member.stats.requests

    reply = pool.call("POST", path, json.dumps(body).encode(), auth())

    assert reply.status == 400, reply.body[:300]
    assert_answered_well(reply, caplog)
    assert pool.member.stats.requests == served
