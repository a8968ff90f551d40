"""Member keys: the gateway sends each member its own key, a member that refuses it is the
member's failure (never the client's 401), and keys are checked where operators type them.
Exact tests with a raw asyncio server and fake members (testing/fake_member.py); the real
servers' 401 is tested in test_engine_llama_server.py."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from pool.gateway import upstream
from pool.models import Member
from pool.services import ActionError
from pool.services.members import member_add
from tests.asgi_driver import Call
from tests.gateway_kit import chat
from tests.raw_member import BODY, FakeServer, answer_json


async def test_the_upstream_client_sends_the_members_key_as_a_bearer_token():
    async with FakeServer(answer_json) as server, upstream.post(server.url, BODY, "k3y-of-m1") as response:
        assert response.status == 200
        await response.read()
    assert b"\r\nAuthorization: Bearer k3y-of-m1\r\n" in server.requests[0]


async def test_a_key_that_could_split_the_request_head_is_never_sent():
    async with (
        FakeServer(answer_json) as server,
        upstream.post(server.url, BODY, "evil\r\nX-Injected: 1") as r,
    ):
        await r.read()
    assert b"X-Injected" not in server.requests[0] and b"Authorization" not in server.requests[0]


@pytest.mark.asyncio
async def test_a_member_that_refuses_the_gateways_key_is_retried_elsewhere_not_shown_to_the_client(
    gateway, fakes_in_loop, platform_key
):
    refusing, good = await fakes_in_loop(2)
    refusing.config.fail_status = 401
    await sync_to_async(Member.objects.filter(name="a").update)(api_key="stale")
    await gateway.start()

    def call() -> Call:
        return Call(
            gateway,
            "POST",
            "/v1/chat/completions",
            json.dumps(chat()).encode(),
            {"authorization": f"Bearer {platform_key}", "content-type": "application/json"},
        )

    # Two at once on two members of one slot each: one of them is sent to the refusing one.
    at_once = [call(), call()]
    replies = [await c.done() for c in at_once] + [await call().done(), await call().done()]

    assert refusing.stats.failed >= 1  # it was tried
    assert [r.status for r in replies] == [200] * 4
    assert all(r.headers["x-vibeadmin-member"] == "b" for r in replies)


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["two words", "tab\there", "x" * 257, "naïve"])
def test_a_remote_key_with_spaces_or_odd_characters_is_refused(key):
    with pytest.raises(ActionError, match="printable"):
        member_add(url="http://gpu2:8080", api_key=key)


@pytest.mark.django_db
def test_a_local_member_takes_no_key_from_the_operator():
    with pytest.raises(ActionError, match="made by its supervisor"):
        member_add(api_key="mine")
