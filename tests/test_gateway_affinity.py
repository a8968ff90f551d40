"""Prompt-cache affinity: requests sharing a system prompt and task go back to the member
that last served them, within the load bound. Through the whole gateway with in-loop fake
members (exact and fast: fakes keep no cache, so these test the routing only; bench/affinity.py
measures what real llama-server members gain), and the affinity layer on plain Backends."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from pool import inflight
from pool.gateway.affinity import Affinity, prefix_key, within_bound
from pool.gateway.backend import Backend
from pool.gateway.types import RouteContext
from pool.models import Member
from pool.models.pool_settings import DEFAULT_PROMPTS
from tests.asgi_driver import Call
from tests.gateway_kit import chat, set_policy

GEOMETRY = "You are a geometry tutor. " + "Explain each step, and draw the figure first. " * 12
ALGEBRA = "You are an algebra tutor. " + "Show the working, one line for each step. " * 13


def asking(system: str, **extra) -> dict:
    body = chat(**extra)
    body["messages"] = [{"role": "system", "content": system}, *body["messages"]]
    return body


def call(gateway, key: str, body: dict) -> Call:
    return Call(
        gateway, "POST", "/v1/chat/completions", json.dumps(body).encode(), {"authorization": f"Bearer {key}"}
    )


async def served_by(gateway, key: str, body: dict) -> str:
    reply = await call(gateway, key, body).done()
    assert reply.status == 200, reply.body
    return reply.headers["x-vibeadmin-member"]


async def pool_of(gateway, fakes_in_loop, n: int, *, strategy: str, slots: int = 1, **options):
    await sync_to_async(set_policy)(strategy=strategy)
    fakes = await fakes_in_loop(n, **options)
    await sync_to_async(Member.objects.update)(max_inflight=slots)
    await gateway.start()
    return fakes


@pytest.mark.asyncio
async def test_the_same_prefix_sticks_to_one_member(gateway, fakes_in_loop, platform_key):
    await pool_of(gateway, fakes_in_loop, 3, strategy="round_robin")
    members = [await served_by(gateway, platform_key, asking(GEOMETRY)) for _ in range(6)]
    assert len(set(members)) == 1, members  # round robin alone would visit all three


@pytest.mark.asyncio
async def test_without_the_setting_the_strategy_alone_picks(
    gateway_settings, transactional_db, fakes_in_loop, platform_key
):
    from pool.gateway.app import Gateway

    gateway_settings.VIBEADMIN_PROMPT_AFFINITY = False
    gateway = Gateway()
    try:
        await pool_of(gateway, fakes_in_loop, 3, strategy="round_robin")
        members = [await served_by(gateway, platform_key, asking(GEOMETRY)) for _ in range(6)]
        assert len(set(members)) == 3, members
    finally:
        gateway.registry._task.cancel()


@pytest.mark.asyncio
async def test_different_prefixes_spread_and_each_keeps_its_member(gateway, fakes_in_loop, platform_key):
    await pool_of(gateway, fakes_in_loop, 2, strategy="round_robin")
    order = [GEOMETRY, GEOMETRY, ALGEBRA, ALGEBRA, GEOMETRY, ALGEBRA]
    members = [await served_by(gateway, platform_key, asking(system)) for system in order]
    geometry = {m for m, s in zip(members, order, strict=True) if s == GEOMETRY}
    algebra = {m for m, s in zip(members, order, strict=True) if s == ALGEBRA}
    assert len(geometry) == 1 and len(algebra) == 1 and geometry != algebra, members


@pytest.mark.asyncio
async def test_a_short_system_prompt_keeps_no_member(gateway, fakes_in_loop, platform_key):
    """The default one-line prompts: caching them saves nothing, so the strategy alone picks."""
    await pool_of(gateway, fakes_in_loop, 2, strategy="round_robin")
    members = [await served_by(gateway, platform_key, chat()) for _ in range(4)]
    assert len(set(members)) == 2, members


@pytest.mark.asyncio
async def test_the_same_system_prompt_for_another_task_is_another_prefix(
    gateway, fakes_in_loop, platform_key
):
    await pool_of(gateway, fakes_in_loop, 2, strategy="round_robin")
    order = ["math", "math", "code", "code"]
    members = [
        await served_by(gateway, platform_key, asking(GEOMETRY, vibeadmin={"task": task})) for task in order
    ]
    assert members[0] == members[1] and members[2] == members[3] and members[0] != members[2], members


@pytest.mark.asyncio
async def test_the_load_bound_sends_a_busy_prefix_elsewhere(gateway, fakes_in_loop, platform_key):
    """Counting the new request, a member may hold ceil(1.25 x the mean in use): with two
    members the remembered one takes a 2nd stream (2 <= ceil(1.25 x 2/2)), not a 3rd
    (3 > ceil(1.25 x 3/2) = 2)."""
    await pool_of(gateway, fakes_in_loop, 2, strategy="least_connections", slots=4, concurrent=True, tpt=0.05)
    calls = []
    for _ in range(3):
        calls.append(call(gateway, platform_key, asking(GEOMETRY, stream=True, max_tokens=40)))
        await asyncio.wait_for(calls[-1].first_chunk.wait(), 5)  # in flight before the next one
    members = [(await c.done()).headers["x-vibeadmin-member"] for c in calls]
    assert members[0] == members[1] != members[2], members


# --- the layer on plain Backends ------------------------------------------------------------


@pytest.fixture
def backends():
    inflight._counts.clear()
    yield [
        Backend(id=i, name=n, base_url="http://127.0.0.1:1", max_inflight=8) for i, n in enumerate("ab", 1)
    ]
    inflight._counts.clear()


def busy(member: Backend, n: int) -> None:
    for _ in range(n):
        inflight.acquire(member.id)


def test_the_bound_is_the_mean_in_use_counting_the_request_times_1_25_rounded_up(backends):
    a, b = backends
    busy(a, 4)
    busy(b, 2)
    assert within_bound(a, backends)  # 5 <= ceil(1.25 x 7/2) = 5
    busy(a, 1)
    assert not within_bound(a, backends)  # 6 > ceil(1.25 x 8/2) = 5


def test_a_full_or_excluded_member_is_not_preferred(backends):
    a, b = backends
    affinity = Affinity()
    ctx = RouteContext(prefix=prefix_key([{"role": "system", "content": GEOMETRY}], "math"))
    affinity.remember(ctx, a)
    assert affinity.prefer(backends, ctx) is a
    assert affinity.prefer([b], ctx) is None  # a retry left it out
    a.max_inflight = 0
    assert affinity.prefer(backends, ctx) is None


def test_the_map_forgets_the_least_recently_served_prefix_first(backends):
    a, _ = backends
    affinity = Affinity(size=2)
    ctxs = [RouteContext(prefix=p) for p in ("p1", "p2", "p3")]
    affinity.remember(ctxs[0], a)
    affinity.remember(ctxs[1], a)
    affinity.remember(ctxs[0], a)  # served again: now the most recent
    affinity.remember(ctxs[2], a)
    assert list(affinity.last) == ["p1", "p3"]


def test_no_system_prompt_no_prefix_and_keys_differ_by_task_and_prompt():
    user = [{"role": "user", "content": "hi"}]
    assert prefix_key(user, "math") == ""
    assert prefix_key([{"role": "system", "content": DEFAULT_PROMPTS["math"]}, *user], "math") == ""
    geometry = [{"role": "system", "content": GEOMETRY}, *user]
    assert prefix_key(geometry, "math") == prefix_key(geometry, "math")
    assert prefix_key(geometry, "math") != prefix_key(geometry, "code")
    assert prefix_key(geometry, "math") != prefix_key([{"role": "system", "content": ALGEBRA}], "math")
