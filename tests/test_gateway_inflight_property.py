"""In-flight counts never drift: after any mix of successes, 5xx, dropped connections,
upstream timeouts, retries and client disconnects, every member's count is back to zero,
and so is its work (the max_tokens least work adds up), and so is the waiting count the
dashboard and the autoscaler read.

The members here are tiny in-process fake OpenAI servers whose behaviour is chosen per
request (through the `user` field), so hypothesis can draw any interleaving.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pool import inflight
from pool.gateway import upstream
from pool.gateway.app import Gateway
from pool.gateway.backend import Backend
from pool.gateway.strategies import STRATEGIES
from pool.models import Member, PoolSettings, states
from tests.asgi_driver import Call

BEHAVIOURS = ["ok", "ok", "slow", "500", "drop:0", "drop:2", "hang"]


async def fake_openai(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    behaviour = body.get("user", "ok")
    if behaviour == "500":
        return web.json_response({"error": {"message": "boom"}}, status=500)
    if behaviour == "hang":
        await asyncio.sleep(3600)
    drop_at = int(behaviour.split(":")[1]) if behaviour.startswith("drop") else -1
    delay = 0.02 if behaviour == "slow" else 0.001
    chunk = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
    if not body.get("stream"):
        if drop_at >= 0:
            request.transport.abort()
            return web.Response(status=499)
        await asyncio.sleep(delay * 3)
        return web.json_response(
            {"choices": [{"message": {"content": "xxx"}}], "usage": {"completion_tokens": 3}}
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i in range(4):
        if i == drop_at:
            request.transport.abort()
            return response
        await asyncio.sleep(delay)
        await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response


async def start_members(n: int) -> tuple[list[web.AppRunner], list[Member]]:
    runners, members = [], []
    for i in range(n):
        app = web.Application()
        app.router.add_post("/v1/chat/completions", fake_openai)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        runners.append(runner)
        members.append(
            Member(
                pk=i + 1,
                name=f"m{i + 1}",
                kind=states.REMOTE,
                url=f"http://127.0.0.1:{port}",
                state=states.READY,
                max_inflight=1 + i % 2,
            )
        )
    return runners, members


request_plan = st.tuples(
    st.sampled_from(BEHAVIOURS),
    st.booleans(),  # streamed
    st.one_of(st.none(), st.integers(min_value=1, max_value=4096)),  # max_tokens
    st.one_of(st.none(), st.floats(min_value=0, max_value=0.05)),  # client leaves after this long
    st.floats(min_value=0, max_value=0.03),  # arrives after this long
)


async def scenario(strategy: str, plans: list) -> tuple[dict, int, dict, int]:
    runners, members = await start_members(3)
    gateway = Gateway()
    # Keyless callers are held to the students' caps: open enough here for the drawn load.
    row = PoolSettings(
        strategy=strategy,
        api_open=True,
        queue_size=4,
        queue_timeout_s=0.3,
        solve_rpm=1_000_000,
        solve_inflight_per_address=1_000,
        solve_pool_share=1.0,
    )
    gateway.registry.load = lambda: (members, [], row)  # no database: the pool is these members
    seen: set[Backend] = set()  # every member's Backend, those ejected and back included
    apply = gateway.registry.apply

    def apply_and_remember(*loaded) -> None:
        apply(*loaded)
        seen.update(gateway.registry.backends.values())

    gateway.registry.apply = apply_and_remember
    waiting_before = gateway.router.slots.waiting
    try:

        async def one(behaviour, stream, max_tokens, leave_after, arrive_after):
            await asyncio.sleep(arrive_after)
            body = {
                "model": "vibethinker",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": stream,
                "user": behaviour,
                "max_tokens": max_tokens,
            }
            call = Call(
                gateway,
                "POST",
                "/v1/chat/completions",
                json.dumps(body).encode(),
                {"content-type": "application/json"},
            )
            if leave_after is not None:
                await asyncio.sleep(leave_after)
                call.disconnect()
            await call.done(timeout=10)

        await asyncio.gather(*(one(*plan) for plan in plans))
        counted_waiting = gateway.router.slots.waiting - waiting_before
        return (
            inflight.snapshot(),
            len(gateway.router.queue),
            {b.name: b.work for b in seen if b.work},
            counted_waiting,
        )
    finally:
        for task in (gateway.registry._task, gateway._sampler):
            if task is not None:
                task.cancel()
        await upstream.close()
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
def no_database_writes(monkeypatch, settings):
    settings.VIBEADMIN_UPSTREAM_TIMEOUT_S = 0.3  # "hang" ends as an upstream timeout
    settings.VIBEADMIN_UPSTREAM_IDLE_S = 0.2
    settings.VIBEADMIN_REFRESH_S = 0.05
    monkeypatch.setattr("pool.gateway.exchange._mark_unhealthy", lambda member_id, error: None)
    monkeypatch.setattr("pool.gateway.registry.Registry.flush_usage", lambda self: None)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strategy=st.sampled_from(sorted(STRATEGIES)), plans=st.lists(request_plan, min_size=1, max_size=12))
def test_in_flight_counts_and_work_return_to_zero_after_any_interleaving(no_database_writes, strategy, plans):
    inflight._counts.clear()
    leftover, queued, work, waiting = asyncio.run(scenario(strategy, plans))
    assert leftover == {}
    assert queued == 0
    assert work == {}
    assert waiting == 0
