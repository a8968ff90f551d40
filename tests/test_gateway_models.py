"""The gateway routes by the request's `model`: a library model's name or alias reaches the
members serving it, the primary alias the primary model, a canary its share of the alias's
traffic. In-process against fake members (testing.fake_member): exact and fast."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from pool.models import Member, Model, PoolSettings, Rollout
from pool.models import rollout_states as rs
from tests.asgi_driver import request
from tests.gateway_kit import chat

pytestmark = pytest.mark.asyncio


def two_models(fake_members) -> tuple[Model, Model]:
    """Members a (the primary model, "big") and b ("small", alias "mini")."""
    fake_members(2)
    big = Model.objects.create(
        name="big", path="/models/big.gguf", size=10, architecture="qwen2", sha256="1" * 64
    )
    small = Model.objects.create(
        name="small",
        alias="mini",
        path="/models/small.gguf",
        size=5,
        architecture="qwen2",
        quantization="Q8_0",
    )
    PoolSettings.objects.update_or_create(pk=1, defaults={"primary_model": big})
    Member.objects.filter(name="a").update(model=big)
    Member.objects.filter(name="b").update(model=small)
    return big, small


async def served_by(gateway, model: str, key: str) -> str:
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(model=model), key=key)
    assert reply.status == 200, reply.body
    return reply.headers["x-vibeadmin-member"]


async def test_a_model_s_name_or_alias_reaches_only_its_members(gateway, fake_members, platform_key):
    await sync_to_async(two_models)(fake_members)
    for _ in range(4):
        assert await served_by(gateway, "small", platform_key) == "b"
        assert await served_by(gateway, "mini", platform_key) == "b"
        assert await served_by(gateway, "big", platform_key) == "a"
        assert await served_by(gateway, "vibethinker", platform_key) == "a"


async def test_the_member_is_asked_for_the_model_it_serves(gateway, fake_members, platform_key):
    await sync_to_async(two_models)(fake_members)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(model="mini"), key=platform_key)
    assert reply.json()["model"] in ("small", "fake-model")
    assert gateway.registry.by_model["small"][0].name == "b"


async def test_an_unknown_model_is_a_404_that_names_the_served_ones(gateway, fake_members, platform_key):
    await sync_to_async(two_models)(fake_members)
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(model="gpt-4"), key=platform_key)
    assert reply.status == 404
    error = reply.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["message"] == (
        "the model 'gpt-4' does not exist; this pool serves 'big' (alias 'vibethinker'), 'small' (alias 'mini')"
    )


async def test_a_model_no_ready_member_serves_is_a_503_not_another_model_s_member(
    gateway, fake_members, platform_key
):
    await sync_to_async(two_models)(fake_members)
    await sync_to_async(Member.objects.filter(name="b").update)(state="stopped")
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(model="small"), key=platform_key)
    assert reply.status == 503
    assert "no member of the pool serving small is ready" in reply.json()["error"]["message"]


async def test_models_lists_every_served_model_with_its_metadata(gateway, fake_members, platform_key):
    await sync_to_async(two_models)(fake_members)
    reply = await request(gateway, "GET", "/v1/models", key=platform_key)
    data = {m["id"]: m for m in reply.json()["data"]}
    assert list(data) == ["big", "vibethinker", "small"]
    assert data["big"]["vibeadmin"]["primary"] is True
    assert data["vibethinker"]["vibeadmin"] == {"alias_of": "big"}
    small = data["small"]["vibeadmin"]
    assert small["alias"] == "mini" and small["quantization"] == "Q8_0" and small["primary"] is False
    assert "path" not in small  # where the file lies on the host is the operator's business


def start_canary(percent: float, small: Model, big: Model, tenant=None) -> None:
    Rollout.objects.create(
        source=big, target=small, state=rs.CANARY, canary_percent=percent, canary_tenant=tenant
    )


async def test_a_canary_takes_its_share_of_the_primary_alias_s_traffic(gateway, fake_members, platform_key):
    big, small = await sync_to_async(two_models)(fake_members)
    await sync_to_async(start_canary)(25, small, big)
    await gateway.registry.refresh()
    served = [await served_by(gateway, "vibethinker", platform_key) for _ in range(200)]
    # 25% of 200: 50 expected; 25-75 holds with a probability far above 0.9999 (binomial).
    assert 25 <= served.count("b") <= 75
    # Named, a model is pinned: the gate's requests are never split.
    assert {await served_by(gateway, "big", platform_key) for _ in range(20)} == {"a"}


async def test_a_tenant_s_canary_takes_only_that_tenant_s_requests(gateway, fake_members, platform_key):
    from pool.services.keys import apikey_create

    big, small = await sync_to_async(two_models)(fake_members)
    key, raw = await sync_to_async(apikey_create)(name="pilot-school")
    await sync_to_async(start_canary)(100, small, big, key)
    await gateway.registry.refresh()
    assert {await served_by(gateway, "vibethinker", raw) for _ in range(10)} == {"b"}
    assert {await served_by(gateway, "vibethinker", platform_key) for _ in range(10)} == {"a"}


async def test_while_members_move_the_alias_reaches_both_models_each_asked_for_its_own(
    gateway, fake_members, platform_key
):
    big, small = await sync_to_async(two_models)(fake_members)
    await sync_to_async(Rollout.objects.create)(source=big, target=small, state=rs.REPLACING)
    await gateway.registry.refresh()
    served = {await served_by(gateway, "vibethinker", platform_key) for _ in range(30)}
    assert served == {"a", "b"}  # the pool's capacity stays whole while it is rolled
    assert gateway.registry.policy.sha_of("vibethinker") is None  # no cached answers of either meanwhile


async def test_a_canary_s_alias_share_never_reaches_it_once_it_is_rolled_back(
    gateway, fake_members, platform_key
):
    big, small = await sync_to_async(two_models)(fake_members)
    await sync_to_async(Rollout.objects.create)(
        source=big, target=small, state=rs.ROLLING_BACK, canary_percent=100
    )
    await gateway.registry.refresh()
    assert {await served_by(gateway, "vibethinker", platform_key) for _ in range(10)} == {"a"}
