"""An honest wait: a streamed request that asks for it hears its place in the fair line and
the line's predicted wait while every member is busy, then its answer; a client that does
not ask sees nothing new. The members are testing.fake_member servers (small fake OpenAI
servers, one answer at a time each, with set timings), so who waits behind whom is exact."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from pool.gateway.app import SOLVE_PATH
from tests.asgi_driver import Call
from tests.gateway_kit import chat, set_policy, wait_for_queue


def talk(problem: str = "What is 17 * 23?", **extra) -> bytes:
    body = {"messages": [{"role": "user", "content": problem}], "task": "math", "max_tokens": 5, **extra}
    return json.dumps(body).encode()


def notes(reply) -> list[dict]:
    """The `event: vibeadmin` payloads of a stream, in order."""
    out = []
    for event in reply.body.decode().split("\n\n"):
        lines = event.split("\n")
        if lines[0] == "event: vibeadmin":
            out.append(json.loads(lines[1].removeprefix("data: ")))
    return out


def tokens(reply) -> str:
    text = ""
    for event in reply.body.decode().split("\n\n"):
        if event.startswith("data: {"):
            chunk = json.loads(event[6:])
            text += "".join(c["delta"].get("content", "") for c in chunk.get("choices", []))
    return text


def platform(gateway, key: str, **extra) -> Call:
    body = json.dumps(chat(stream=True, **extra)).encode()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    return Call(gateway, "POST", "/v1/chat/completions", body, headers)


async def busy_pool(gateway, fakes_in_loop, key: str, ttfts=(0.6,)) -> list[Call]:
    """A member per entry of `ttfts`, one slot each, all taken by a platform's requests that
    start answering that many seconds later; students may use every slot."""
    for ttft in ttfts:
        await fakes_in_loop(1, ttft=ttft)
    await sync_to_async(set_policy)(solve_pool_share=1.0, queue_timeout_s=10)
    calls = [platform(gateway, key) for _ in ttfts]
    for call in calls:
        await call.started.wait()
    return calls


@pytest.mark.asyncio
async def test_a_waiting_problem_hears_its_place_in_line_then_its_answer(
    gateway, fakes_in_loop, platform_key
):
    busy = await busy_pool(gateway, fakes_in_loop, platform_key, ttfts=(1.5, 2.5))
    second = Call(gateway, "POST", SOLVE_PATH, talk(progress=True), client="10.0.0.2")
    await wait_for_queue(gateway, 1)  # in line first (a fixed sleep lost the race on a busy machine)
    # Another problem: the same one would share the second's generation (the answer cache).
    third = Call(gateway, "POST", SOLVE_PATH, talk("What is 18 * 23?", progress=True), client="10.0.0.3")
    replies = [await c.done() for c in (second, third)]
    for call in busy:
        await call.done()

    assert [r.status for r in replies] == [200, 200]
    said = notes(replies[1])
    places = [n["queue"]["place"] for n in said if "queue" in n]
    assert places[0] == 2 and places[-1] == 1, said  # behind the second, then next
    assert said[-1]["started"]["queue_ms"] > 0
    assert tokens(replies[1]) == "tok0 tok1 tok2 tok3 tok4"
    assert replies[1].body.endswith(b"data: [DONE]\n\n")
    assert "queue" in notes(replies[0])[0]


@pytest.mark.asyncio
async def test_a_platform_that_does_not_ask_sees_a_plain_openai_stream(gateway, fakes_in_loop, platform_key):
    (busy,) = await busy_pool(gateway, fakes_in_loop, platform_key, ttfts=(0.3,))
    plain = platform(gateway, platform_key)
    asked = platform(gateway, platform_key, vibeadmin={"progress": True})
    await busy.done()
    plain_reply, asked_reply = await plain.done(), await asked.done()
    assert b"vibeadmin" not in plain_reply.body
    assert plain_reply.headers["x-vibeadmin-queue-ms"] != "0.0"  # it did wait
    assert [n for n in notes(asked_reply) if "queue" in n], asked_reply.body


@pytest.mark.asyncio
async def test_a_deadline_passed_in_line_ends_the_started_stream_with_an_error_event(
    gateway, fakes_in_loop, platform_key
):
    (busy,) = await busy_pool(gateway, fakes_in_loop, platform_key, ttfts=(3.0,))
    await sync_to_async(set_policy)(queue_timeout_s=0.8)
    await asyncio.sleep(0.2)  # the gateway reloads its policy
    second = await Call(gateway, "POST", SOLVE_PATH, talk(progress=True), client="10.0.0.2").done()

    assert second.status == 200  # said when it joined the line
    assert notes(second)[0]["queue"]["place"] == 1
    error = json.loads(second.events()[-1])["error"]
    assert error["code"] == "queue_timeout" and error["type"] == "server_error"
    busy.disconnect()
    await asyncio.gather(busy.task, return_exceptions=True)


@pytest.mark.asyncio
async def test_a_problem_refused_at_once_keeps_its_status_and_retry_after(
    gateway, fakes_in_loop, platform_key
):
    (busy,) = await busy_pool(gateway, fakes_in_loop, platform_key)
    await sync_to_async(set_policy)(queue_size=0)
    await asyncio.sleep(0.2)  # the gateway reloads its policy
    refused = await Call(gateway, "POST", SOLVE_PATH, talk(progress=True), client="10.0.0.2").done()
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    await busy.done()
