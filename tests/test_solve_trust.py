"""What the solve page takes from a student, and from whom: its shared answers are not a
student's to replace (no-cache is ignored there), only its own page may call its stream
(a browser's Origin says which page did), and the old `problem` field is held to the
operator's cap as a conversation is. The members are testing.fake_member servers (small
fake OpenAI servers) on the test's loop."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from pool.gateway.app import SOLVE_PATH
from tests.asgi_driver import request
from tests.gateway_kit import set_policy

pytestmark = pytest.mark.asyncio


def problem(text: str = "Solve 2x+3=7") -> bytes:
    return json.dumps({"problem": text, "max_tokens": 50}).encode()


async def test_a_students_no_cache_does_not_replace_the_pages_stored_answer(
    gateway, fakes_in_loop, model_file
):
    (member,) = await fakes_in_loop(1, max_tokens=6)
    await sync_to_async(set_policy)(solve_rpm=100)
    await request(gateway, "POST", SOLVE_PATH, raw=problem())

    rerolled = await request(
        gateway, "POST", SOLVE_PATH, raw=problem(), headers={"cache-control": "no-cache"}, client="10.0.0.2"
    )

    assert rerolled.status == 200
    assert rerolled.headers["x-vibeadmin-cache"] == "hit"
    assert member.stats.requests == 1


async def test_the_stream_refuses_a_page_on_another_site(gateway, fakes_in_loop):
    (member,) = await fakes_in_loop(1, max_tokens=6)
    for origin in ("https://evil.example", "null", "http://127.0.0.1:8000.evil.example"):
        reply = await request(
            gateway, "POST", SOLVE_PATH, raw=problem(), headers={"host": "127.0.0.1:8000", "origin": origin}
        )
        assert reply.status == 403, origin
        assert reply.json()["error"]["code"] == "cross_site_request"
    assert member.stats.requests == 0


async def test_the_stream_takes_its_own_page_a_trusted_origin_and_a_client_with_no_origin(
    gateway, fakes_in_loop, settings
):
    settings.CSRF_TRUSTED_ORIGINS = ["https://school.example"]
    await fakes_in_loop(1, max_tokens=6)
    await sync_to_async(set_policy)(solve_rpm=100)
    for headers in (
        {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"},
        {"host": "127.0.0.1:8000", "origin": "https://school.example"},
        {"host": "127.0.0.1:8000"},
    ):
        reply = await request(gateway, "POST", SOLVE_PATH, raw=problem(), headers=headers)
        assert reply.status == 200, (headers, reply.body)


async def test_the_problem_field_is_held_to_the_operators_cap(gateway, fakes_in_loop):
    (member,) = await fakes_in_loop(1, max_tokens=6)
    await sync_to_async(set_policy)(solve_rpm=100, solve_max_chars=40)

    long = await request(gateway, "POST", SOLVE_PATH, raw=problem("x" * 41))
    exact = await request(gateway, "POST", SOLVE_PATH, raw=problem("x" * 40))

    assert long.status == 400
    assert long.json()["error"]["code"] == "prompt_too_long"
    assert "at most 40" in long.json()["error"]["message"]
    assert exact.status == 200
    assert member.stats.requests == 1


async def test_keyless_api_calls_are_held_to_the_students_caps(gateway, fakes_in_loop):
    from tests.gateway_kit import chat

    await fakes_in_loop(1, max_tokens=6)
    await sync_to_async(set_policy)(api_open=True, solve_rpm=2)

    replies = [
        await request(gateway, "POST", "/v1/chat/completions", chat(), client=f"2001:db8::{n}")
        for n in range(1, 4)
    ]

    assert [r.status for r in replies] == [200, 200, 429]  # one /64: one student
    assert replies[2].json()["error"]["code"] == "rate_limit_address"
    other = await request(gateway, "POST", "/v1/chat/completions", chat(), client="198.51.100.9")
    assert other.status == 200
