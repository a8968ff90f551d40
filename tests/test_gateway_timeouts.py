"""Two limits, two owners. A member silent for VIBEADMIN_UPSTREAM_IDLE_S is at fault:
retried elsewhere while nothing reached the client, counted against it. An answer that
runs past VIBEADMIN_UPSTREAM_TIMEOUT_S in all is nobody's fault: it ends with a 504 (or a
`timeout` error event in a stream), is charged what was generated, and neither retries nor
ejects. A client that stops reading is cancelled on the member once the buffers fill.

The members are testing.fake_member processes (small fake OpenAI servers) with chosen
speeds; the limits are set short to match them.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from pool import inflight
from pool.models import UsageDay
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat
from tests.helpers import wait_until

pytestmark = pytest.mark.asyncio


def failures(gateway, name: str) -> int:
    backend = next(b for b in gateway.registry.backends.values() if b.name == name)
    return backend.extra.get("failures", 0)


async def test_a_member_silent_past_the_idle_limit_is_retried_elsewhere_and_counted(
    gateway, fake_members, platform_key, settings
):
    settings.VIBEADMIN_UPSTREAM_IDLE_S = 0.3
    a, b = await sync_to_async(fake_members)(2)
    a.configure(hang=True)

    for _ in range(10):  # until the strategy has tried the silent one
        reply = await request(gateway, "POST", "/v1/chat/completions", chat(stream=True), key=platform_key)
        assert reply.status == 200
        assert reply.headers["x-vibeadmin-member"] == "b"
        if a.stats()["requests"]:
            break
    assert failures(gateway, "a") == 1


async def test_a_whole_answer_slower_than_the_idle_limit_is_no_fault(
    gateway, fake_members, platform_key, settings
):
    settings.VIBEADMIN_UPSTREAM_IDLE_S = 0.3
    (a,) = await sync_to_async(fake_members)(
        1, ttft=0.2, tpt=0.05, max_tokens=20
    )  # about 1 s, sent at the end

    reply = await request(gateway, "POST", "/v1/chat/completions", chat(max_tokens=20), key=platform_key)

    assert reply.status == 200, reply.body
    assert failures(gateway, "a") == 0


async def test_a_stream_past_the_whole_limit_ends_with_a_timeout_event_charged_and_blames_no_one(
    gateway, fake_members, platform_key, settings
):
    settings.VIBEADMIN_UPSTREAM_TIMEOUT_S = 0.6
    (a,) = await sync_to_async(fake_members)(1, ttft=0.05, tpt=0.05, max_tokens=200)  # 10 s in all

    reply = await request(
        gateway, "POST", "/v1/chat/completions", chat(stream=True, max_tokens=200), key=platform_key
    )
    await gateway.keep_books()

    assert reply.status == 200
    last = json.loads(reply.events()[-1])
    assert last["error"]["code"] == "timeout"
    assert [m.name for m in gateway.registry.routable()] == ["a"]
    assert failures(gateway, "a") == 0
    assert a.stats()["requests"] == 1
    day = await sync_to_async(UsageDay.objects.get)(tenant__startswith="key:")
    assert 0 < day.completion_tokens < 200  # what was streamed until the limit


async def test_a_whole_answer_past_the_limit_is_a_504_not_retried_and_ejects_no_one(
    gateway, fake_members, platform_key, settings
):
    settings.VIBEADMIN_UPSTREAM_TIMEOUT_S = 0.6
    fakes = await sync_to_async(fake_members)(2, ttft=0.05, tpt=0.05, max_tokens=200)

    reply = await request(gateway, "POST", "/v1/chat/completions", chat(max_tokens=200), key=platform_key)

    assert reply.status == 504
    error = reply.json()["error"]
    assert (error["code"], error["type"]) == ("timeout", "server_error")
    assert sum(f.stats()["requests"] for f in fakes) == 1
    assert sorted(m.name for m in gateway.registry.routable()) == ["a", "b"]
    assert failures(gateway, "a") + failures(gateway, "b") == 0


class StopsReading(Call):
    """A client that takes the reply's head and first bytes, then never reads again."""

    async def _send(self, message):
        if message["type"] == "http.response.body" and self.reply.chunks:
            await asyncio.Event().wait()  # as a server's send waits on a full socket
        await super()._send(message)


async def test_a_client_that_stops_reading_is_cancelled_on_the_member(gateway, fake_members, platform_key):
    (a,) = await sync_to_async(fake_members)(1, ttft=0.01, tpt=0.0, max_tokens=100_000)
    body = json.dumps(chat(stream=True, max_tokens=100_000)).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {platform_key}"}

    call = StopsReading(gateway, "POST", "/v1/chat/completions", body, headers)
    await asyncio.wait_for(asyncio.gather(call.task, return_exceptions=True), 20)

    member = gateway.registry.routable()[0]
    assert inflight.count(member.id) == 0  # its slot is back
    await sync_to_async(wait_until)(
        lambda: a.stats()["in_flight"] == 0, 10, what="the member to see us leave"
    )
    assert a.stats()["served"] == 0  # it did not generate the whole answer
    assert failures(gateway, "a") == 0
