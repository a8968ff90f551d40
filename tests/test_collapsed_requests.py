"""Collapsed in-flight requests: identical requests arriving while one generation for them
is under way wait for it instead of starting their own; a stream that joins late gets what
was streamed so far, then the rest live; if the first request leaves or its generation
fails, the others still get their whole answer. The members are testing.fake_member
servers (small fake OpenAI servers): their generation counts are exact, and with `echo`
an answer repeats its problem, so an answer shared with the wrong problem shows."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from pool.services.keys import apikey_create
from tests.asgi_driver import Call
from tests.gateway_kit import chat

pytestmark = pytest.mark.asyncio
PATH = "/v1/chat/completions"


def headers(key: str) -> dict:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


def answer_text(reply) -> str:
    if reply.headers["content-type"] == "application/json":
        return reply.json()["choices"][0]["message"]["content"]
    chunks = [json.loads(e) for e in reply.events() if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


async def test_twenty_identical_requests_at_once_take_one_generation_and_all_get_the_whole_answer(
    gateway, fakes_in_loop, model_file
):
    (member,) = await fakes_in_loop(1, echo=True, max_tokens=12, ttft=0.2, tpt=0.02)
    _, key = await sync_to_async(apikey_create)(name="homework", cache=True)
    await gateway.start()
    bodies = [chat("Solve 3x-5=10", max_tokens=50, temperature=0, stream=i % 2 == 0) for i in range(20)]

    calls = [Call(gateway, "POST", PATH, json.dumps(b).encode(), headers(key)) for b in bodies]
    replies = await asyncio.gather(*(c.done(15) for c in calls))

    assert member.stats.requests == 1
    assert [r.status for r in replies] == [200] * 20
    texts = {answer_text(r) for r in replies}
    assert len(texts) == 1 and texts.pop().startswith("Solve 3x-5=10")
    labels = sorted(r.headers["x-vibeadmin-cache"] for r in replies)
    assert labels == ["hit"] * 19 + ["miss"]


async def test_problems_one_digit_apart_never_share_a_generation(gateway, fakes_in_loop, model_file):
    (member,) = await fakes_in_loop(1, echo=True, max_tokens=8, ttft=0.1, concurrent=True)
    _, key = await sync_to_async(apikey_create)(name="homework", cache=True)
    await gateway.start()
    problems = [f"Solve {a}x+{b}=7" for a in range(1, 6) for b in (1, -1)] * 3

    calls = [
        Call(gateway, "POST", PATH, json.dumps(chat(p, max_tokens=50, temperature=0)).encode(), headers(key))
        for p in problems
    ]
    replies = await asyncio.gather(*(c.done(15) for c in calls))

    for problem, reply in zip(problems, replies, strict=True):
        assert answer_text(reply).startswith(problem)
    assert member.stats.requests == 10


async def test_a_stream_that_joins_late_gets_what_was_streamed_then_the_rest(
    gateway, fakes_in_loop, model_file
):
    (member,) = await fakes_in_loop(1, echo=True, max_tokens=30, ttft=0.05, tpt=0.03)
    _, key = await sync_to_async(apikey_create)(name="homework", cache=True)
    await gateway.start()
    body = json.dumps(chat("Prove that 7 is prime", max_tokens=100, temperature=0, stream=True)).encode()

    first = Call(gateway, "POST", PATH, body, headers(key))
    await asyncio.wait_for(first.first_chunk.wait(), 5)
    await asyncio.sleep(0.2)  # several tokens are out
    late = Call(gateway, "POST", PATH, body, headers(key))
    replies = await asyncio.gather(first.done(10), late.done(10))

    assert member.stats.requests == 1
    assert answer_text(replies[0]) == answer_text(replies[1])
    assert len(answer_text(replies[1]).split()) == 30
    assert replies[1].headers["x-vibeadmin-shared"] == "in-flight"


async def test_the_others_get_their_answer_when_the_first_client_leaves(gateway, fakes_in_loop, model_file):
    (member,) = await fakes_in_loop(1, echo=True, max_tokens=20, ttft=0.05, tpt=0.02)
    _, key = await sync_to_async(apikey_create)(name="homework", cache=True)
    await gateway.start()
    body = json.dumps(chat("What is 12*12?", max_tokens=100, temperature=0, stream=True)).encode()

    first = Call(gateway, "POST", PATH, body, headers(key))
    await asyncio.wait_for(first.first_chunk.wait(), 5)
    others = [Call(gateway, "POST", PATH, body, headers(key)) for _ in range(3)]
    await asyncio.sleep(0.05)
    first.disconnect()
    replies = await asyncio.gather(*(c.done(10) for c in others))
    await first.done(10)

    assert member.stats.requests == 1 and member.stats.cancelled == 0
    assert {len(answer_text(r).split()) for r in replies} == {20}


async def test_when_the_shared_generation_fails_the_others_go_on_their_own(
    gateway, fakes_in_loop, model_file
):
    (member,) = await fakes_in_loop(1, echo=True, max_tokens=6, ttft=0.2, fail_status=500, fail_times=1)
    _, key = await sync_to_async(apikey_create)(name="homework", cache=True)
    await gateway.start()
    body = json.dumps(chat("What is 12*12?", max_tokens=50, temperature=0)).encode()

    calls = [Call(gateway, "POST", PATH, body, headers(key)) for _ in range(4)]
    replies = await asyncio.gather(*(c.done(10) for c in calls))

    statuses = sorted(r.status for r in replies)
    assert statuses == [200, 200, 200, 502]  # the first got the member's failure, as without the cache
    assert {answer_text(r) for r in replies if r.status == 200} == {"What is 12*12? tok3 tok4 tok5"}
    assert member.stats.failed == 1 and member.stats.served == 1


async def test_the_last_client_leaving_stops_the_shared_generation(gateway, fakes_in_loop, model_file):
    (member,) = await fakes_in_loop(1, max_tokens=200, ttft=0.05, tpt=0.05)
    _, key = await sync_to_async(apikey_create)(name="homework", cache=True)
    await gateway.start()
    body = json.dumps(chat("Count", max_tokens=300, temperature=0, stream=True)).encode()

    calls = [Call(gateway, "POST", PATH, body, headers(key)) for _ in range(2)]
    await asyncio.wait_for(calls[0].first_chunk.wait(), 5)
    for call in calls:
        call.disconnect()
    await asyncio.gather(*(c.done(10) for c in calls))
    for _ in range(100):
        if member.stats.cancelled:
            break
        await asyncio.sleep(0.02)

    assert member.stats.cancelled == 1 and member.stats.served == 0
    assert not gateway.answers.flights.by_key


async def test_a_streams_headers_go_out_when_the_member_answers_not_at_its_first_token(
    gateway, fakes_in_loop, model_file
):
    (member,) = await fakes_in_loop(1, max_tokens=5, ttft=1.0)
    _, key = await sync_to_async(apikey_create)(name="homework", cache=True)
    await gateway.start()
    body = json.dumps(chat("What is 12*12?", max_tokens=50, temperature=0, stream=True)).encode()

    call = Call(gateway, "POST", PATH, body, headers(key))
    await asyncio.wait_for(call.started.wait(), 5)

    assert not call.first_chunk.is_set() and member.stats.generating == 1
    assert (await call.done(10)).status == 200
