"""A member's error about the request is the client's error: a 400 in OpenAI's shape, not
retried elsewhere, not counted against the member; what is the member's own fault still
is. Client-facing errors name no member and quote none of a member's text.

The members here are testing.fake_member processes (small fake OpenAI servers) that answer
with a chosen status and body; tests/test_gateway_llama_server_blame.py checks the same
judgement against llama-server's own replies.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from pool.gateway.blame import about_the_request
from tests.asgi_driver import request
from tests.gateway_kit import chat

pytestmark = pytest.mark.asyncio


async def test_a_members_500_whose_error_type_names_the_request_is_the_clients_400_and_ejects_no_one(
    gateway, fake_members, platform_key, settings
):
    fakes = await sync_to_async(fake_members)(2)
    for fake in fakes:
        fake.configure(fail_status=500, fail_about_request=True)

    for _ in range(3 * settings.VIBEADMIN_UNHEALTHY_AFTER):
        reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
        assert reply.status == 400, reply.body
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "rejected_by_model_server"
        assert "fake" not in error["message"]  # the member's own text stays in the log

    assert sorted(m.name for m in gateway.registry.routable()) == ["a", "b"]
    assert sum(f.stats()["failed"] for f in fakes) == 3 * settings.VIBEADMIN_UNHEALTHY_AFTER  # never retried


async def test_a_members_4xx_is_a_400_and_is_not_retried_on_another_member(
    gateway, fake_members, platform_key
):
    a, b = await sync_to_async(fake_members)(2)
    a.configure(fail_status=422, fail_about_request=True)
    b.configure(fail_status=422, fail_about_request=True)

    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)

    assert reply.status == 400
    assert a.stats()["failed"] + b.stats()["failed"] == 1


async def test_a_members_error_page_is_its_own_fault_and_the_502_names_no_member(
    gateway, fake_members, platform_key, settings
):
    fakes = await sync_to_async(fake_members)(2)
    for fake in fakes:
        fake.configure(fail_status=500)  # plain text, as a crashed process or a proxy answers

    reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)

    assert reply.status == 502
    message = reply.json()["error"]["message"]
    assert "fake member failure" not in message
    for fake in fakes:
        assert fake.url.rsplit(":", 1)[1] not in message
        assert f"{fake.config.name}:" not in message


async def test_a_members_typed_server_error_is_its_own_fault_and_ejects_it(
    gateway, fake_members, platform_key, settings
):
    a, b = await sync_to_async(fake_members)(2)
    a.configure(fail_status=500, fail_about_request=True, fail_type="server_error")

    for _ in range(10 * settings.VIBEADMIN_UNHEALTHY_AFTER):  # until the strategy has tried it often enough
        reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
        assert reply.status == 200, reply.body
        if a.stats()["failed"] >= settings.VIBEADMIN_UNHEALTHY_AFTER:
            break  # retried on the other member

    assert [m.name for m in gateway.registry.routable()] == ["b"]


async def test_a_proxys_html_400_in_front_of_a_member_is_the_members_fault(
    gateway, fake_members, platform_key, settings
):
    a, b = await sync_to_async(fake_members)(2)
    a.configure(fail_status=400)  # plain text, as a proxy in front of a remote member answers

    for _ in range(10 * settings.VIBEADMIN_UNHEALTHY_AFTER):  # until the strategy has tried it often enough
        reply = await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)
        assert reply.status == 200, reply.body
        if a.stats()["failed"] >= settings.VIBEADMIN_UNHEALTHY_AFTER:
            break

    assert [m.name for m in gateway.registry.routable()] == ["b"]


async def test_whose_fault_each_kind_of_error_reply_is():
    loading = b'{"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}'
    assert not about_the_request(503, loading)
    assert not about_the_request(500, b"<html>Internal Server Error</html>")
    assert not about_the_request(401, b'{"error": {"message": "Invalid API Key"}}')
    assert not about_the_request(500, b'{"error": {"message": "failed to decode", "type": "server_error"}}')
    assert not about_the_request(400, b"<html><body>400 Bad Request</body><hr>nginx</html>")
    assert not about_the_request(413, b"anything")
    assert about_the_request(400, b'{"error": {"message": "bad", "type": "invalid_request_error"}}')
    assert about_the_request(422, b'{"detail": [{"msg": "field required"}]}')  # llama-cpp-python's
    assert about_the_request(
        500, b'{"error": {"message": "context too long", "type": "exceed_context_size_error"}}'
    )
