"""How the gateway spreads requests over four equal members, through the whole gateway
(keys, queue, relay) rather than the strategy classes alone."""

from __future__ import annotations

from collections import Counter

import pytest
from asgiref.sync import sync_to_async

from tests.asgi_driver import request
from tests.gateway_kit import chat, set_policy

pytestmark = pytest.mark.asyncio

CLIENTS = [f"198.51.100.{i}" for i in range(1, 9)]


async def served_by(gateway, key: str, client: str = "127.0.0.1", forwarded_for: str | None = None) -> str:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    reply = await request(
        gateway, "POST", "/v1/chat/completions", chat(), key=key, client=client, headers=headers
    )
    assert reply.status == 200, reply.body
    return reply.headers["x-vibeadmin-member"]


async def pool_of_four(gateway, fakes_in_loop, strategy: str):
    await sync_to_async(set_policy)(strategy=strategy)
    fakes = await fakes_in_loop(4, ttft=0.0, tpt=0.0)
    await gateway.start()
    return fakes


async def test_round_robin_gives_each_of_four_members_exactly_a_quarter(gateway, fakes_in_loop, platform_key):
    fakes = await pool_of_four(gateway, fakes_in_loop, "round_robin")

    counts = Counter([await served_by(gateway, platform_key) for _ in range(40)])

    assert counts == {"a": 10, "b": 10, "c": 10, "d": 10}
    assert [fake.stats.served for fake in fakes] == [10, 10, 10, 10]


@pytest.mark.parametrize("strategy", ["least_connections", "power_of_two", "least_work"])
async def test_ties_between_idle_members_are_spread_not_given_to_the_first(
    strategy, gateway, fakes_in_loop, platform_key
):
    # Sequential requests find every member idle: each pick is a four-way tie.
    await pool_of_four(gateway, fakes_in_loop, strategy)

    counts = Counter([await served_by(gateway, platform_key) for _ in range(60)])

    assert set(counts) == {"a", "b", "c", "d"}, counts
    assert max(counts.values()) <= 30, counts


async def test_ip_hash_sends_each_client_address_to_the_same_member_every_time(
    gateway, fakes_in_loop, platform_key
):
    await pool_of_four(gateway, fakes_in_loop, "ip_hash")

    members = {
        client: {await served_by(gateway, platform_key, client) for _ in range(3)} for client in CLIENTS
    }

    assert all(len(seen) == 1 for seen in members.values()), members
    assert len(set().union(*members.values())) > 1, "every client on one member: the address is not used"


async def two_clients_on_different_members(gateway, key: str) -> tuple[str, str, str, str]:
    """Two client addresses that ip_hash sends to different members, and their members."""
    owner = {client: await served_by(gateway, key, client) for client in CLIENTS}
    first = CLIENTS[0]
    second = next(c for c in CLIENTS if owner[c] != owner[first])
    return first, owner[first], second, owner[second]


async def test_ip_hash_uses_x_forwarded_for_from_a_trusted_proxy(
    gateway, fakes_in_loop, platform_key, settings
):
    settings.VIBEADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]
    await pool_of_four(gateway, fakes_in_loop, "ip_hash")
    first, first_member, second, second_member = await two_clients_on_different_members(gateway, platform_key)
    proxy = "10.1.2.3"

    assert await served_by(gateway, platform_key, proxy, forwarded_for=first) == first_member
    assert await served_by(gateway, platform_key, proxy, forwarded_for=second) == second_member
    # Through two of our proxies: the nearest address that is not ours is the client.
    assert await served_by(gateway, platform_key, proxy, forwarded_for=f"{first}, 10.9.9.9") == first_member
    # A client can put anything first; what our proxy appended is what counts.
    assert await served_by(gateway, platform_key, proxy, forwarded_for=f"{first}, {second}") == second_member


async def test_ip_hash_ignores_x_forwarded_for_from_an_untrusted_peer(
    gateway, fakes_in_loop, platform_key, settings
):
    settings.VIBEADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]
    await pool_of_four(gateway, fakes_in_loop, "ip_hash")
    first, _, second, _ = await two_clients_on_different_members(gateway, platform_key)
    peer = "192.0.2.10"  # not a trusted proxy: whatever it claims, it is the client
    peers_member = await served_by(gateway, platform_key, peer)

    assert await served_by(gateway, platform_key, peer, forwarded_for=first) == peers_member
    assert await served_by(gateway, platform_key, peer, forwarded_for=second) == peers_member
