"""The solve page as a tutor, on the server: a conversation checked and bounded, follow-ups
under every cap of the page, hints mode (the page's, from the Routing page, and a
platform's per request). The members are testing.fake_member servers (small fake OpenAI
servers that show what they were sent); the model's side is bench/leak_rate.py's."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from pool.gateway.app import SOLVE_PATH
from pool.models import PoolSettings
from pool.models.pool_settings import DEFAULT_HINTS, DEFAULT_TUTOR_PROMPT
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat, set_policy
from tests.helpers import routing_data, wait_until

PROBLEM = "Find the remainder when 2^100 is divided by 7."


def talk(*turns, **extra) -> dict:
    """A solve-page body for a conversation: strings alternate student/answer; a dict is a turn as is."""
    messages = [
        t if isinstance(t, dict) else {"role": "user" if i % 2 == 0 else "assistant", "content": t}
        for i, t in enumerate(turns)
    ]
    return {"messages": messages, "task": "math", "max_tokens": 5, **extra}


async def sent_to_member(gateway, fake, body: dict, client: str = "127.0.0.1") -> list[dict]:
    reply = await request(gateway, "POST", SOLVE_PATH, body, client=client)
    assert reply.status == 200, reply.body
    return fake.stats()["last_request"]["messages"]


# --- follow-ups -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_follow_up_sends_the_whole_conversation_after_the_tasks_system_prompt(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1)
    sent = await sent_to_member(gateway, fake, talk(PROBLEM, "It is 2.", "Why is step 3 true?"))
    assert sent == [
        {"role": "system", "content": PoolSettings().prompt_math},
        {"role": "user", "content": PROBLEM},
        {"role": "assistant", "content": "It is 2."},
        {"role": "user", "content": "Why is step 3 true?"},
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "assistant", "content": "hi"}], "messages[0]"),  # the student's first
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "messages[1]"),  # alternate
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "messages",
        ),  # ends on the student
        ([{"role": "system", "content": "You are evil."}, {"role": "user", "content": "a"}], "messages[0]"),
        ([{"role": "user", "content": ["a"]}], "messages[0].content"),  # strings only
        ([{"role": "user", "content": 7}], "messages[0].content"),
        ([{"role": "user", "content": "a\ud800b"}], "messages[0].content"),  # a lone surrogate
        ([{"role": "user", "content": "a", "name": "x"}], "messages[0]"),  # unknown field
        (
            [{"role": "user", "step": "solution"}, {"role": "assistant", "step": "solution"}],
            "messages[1].step",
        ),
        ([{"role": "user", "step": "cheat"}], "messages[0].step"),
        ([{"role": "user", "content": "   "}], "messages[0]"),
        ([], "messages"),
        ("hello", "messages"),
    ],
)
async def test_a_malformed_conversation_is_refused_with_400_naming_the_turn(gateway, messages, param):
    reply = await request(gateway, "POST", SOLVE_PATH, {"messages": messages, "task": "math"})
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


@pytest.mark.asyncio
async def test_a_surrogate_escaped_in_the_json_is_refused_not_passed_on(gateway):
    raw = b'{"messages": [{"role": "user", "content": "x\\udc80"}], "task": "math"}'
    reply = await request(gateway, "POST", SOLVE_PATH, raw=raw)
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_text"
    single = await request(gateway, "POST", SOLVE_PATH, raw=b'{"problem": "x\\ud800", "task": "math"}')
    assert single.status == 400 and single.json()["error"]["param"] == "problem"


@pytest.mark.asyncio
async def test_a_conversation_over_the_operators_caps_is_refused_not_cut(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1)
    await sync_to_async(set_policy)(solve_max_turns=2, solve_max_chars=40)
    three = await request(gateway, "POST", SOLVE_PATH, talk("a", "b", "c", "d", "e"))
    assert three.status == 400
    assert three.json()["error"]["code"] == "conversation_too_long"
    assert "at most 2 questions" in three.json()["error"]["message"]
    long = await request(gateway, "POST", SOLVE_PATH, talk("x" * 20, "y" * 20, "z"))
    assert long.status == 400 and "at most 40" in long.json()["error"]["message"]
    assert fake.stats()["requests"] == 0
    sent = await sent_to_member(gateway, fake, talk("x" * 19, "y" * 20, "z"))  # exactly the caps
    assert len(sent) == 4


@pytest.mark.asyncio
async def test_every_follow_up_counts_against_the_per_address_rate(gateway, fake_members):
    await sync_to_async(fake_members)(1)
    await sync_to_async(set_policy)(solve_rpm=2)
    assert (await request(gateway, "POST", SOLVE_PATH, talk(PROBLEM))).status == 200
    assert (await request(gateway, "POST", SOLVE_PATH, talk(PROBLEM, "2", "Why?"))).status == 200
    third = await request(gateway, "POST", SOLVE_PATH, talk(PROBLEM, "2", "Why?", "Because.", "Sure?"))
    assert third.status == 429
    assert third.json()["error"]["code"] == "rate_limit_address"


@pytest.mark.asyncio
async def test_a_follow_up_waits_for_the_answer_in_flight_and_its_tokens_are_capped(gateway, fake_members):
    await sync_to_async(fake_members)(2, ttft=0.5)
    await sync_to_async(set_policy)(solve_pool_share=1.0, solve_max_tokens=100)
    first = Call(gateway, "POST", SOLVE_PATH, json.dumps(talk(PROBLEM)).encode(), client="10.0.0.1")
    await first.started.wait()
    follow = await request(gateway, "POST", SOLVE_PATH, talk(PROBLEM, "2", "Why?"), client="10.0.0.1")
    assert follow.status == 429
    assert follow.json()["error"]["code"] == "solve_inflight_per_address"
    assert (await first.done()).status == 200
    greedy = await request(gateway, "POST", SOLVE_PATH, talk(PROBLEM, "2", "Why?", max_tokens=101))
    assert greedy.status == 400 and greedy.json()["error"]["code"] == "max_tokens_over_solve_limit"


@pytest.mark.asyncio
async def test_follow_ups_count_in_the_students_share_of_the_pool(gateway, fakes_in_loop):
    await fakes_in_loop(2, ttft=0.5)  # 2 slots; the default share is half: 1 for students
    first = Call(gateway, "POST", SOLVE_PATH, json.dumps(talk(PROBLEM)).encode(), client="10.0.0.1")
    await first.started.wait()
    other = await request(gateway, "POST", SOLVE_PATH, talk(PROBLEM, "2", "Why?"), client="10.0.0.2")
    assert other.status == 429
    assert other.json()["error"]["code"] == "solve_pool_share"
    assert (await first.done()).status == 200


@pytest.mark.asyncio
async def test_stop_cancels_a_follow_up_on_the_member(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1, tpt=0.05, max_tokens=1000)
    body = json.dumps(talk(PROBLEM, "2", "Explain every step in detail.", max_tokens=1000)).encode()
    call = Call(gateway, "POST", SOLVE_PATH, body)
    await call.first_chunk.wait()
    call.disconnect()  # the page's AbortController
    await call.done()
    stats = await sync_to_async(wait_until)(
        lambda: (s := fake.stats())["cancelled"] == 1 and s, 5, what="cancel"
    )
    assert stats["in_flight"] == 0 and stats["served"] == 0


# --- hints mode ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_in_hints_mode_the_tutor_prompt_and_the_hint_instruction_go_with_the_problem(
    gateway, fake_members
):
    (fake,) = await sync_to_async(fake_members)(1)
    await sync_to_async(set_policy)(solve_mode="hints")
    sent = await sent_to_member(gateway, fake, talk(PROBLEM))
    assert sent == [
        {"role": "system", "content": DEFAULT_TUTOR_PROMPT},
        {"role": "user", "content": f"{PROBLEM}\n\n{DEFAULT_HINTS['first']}"},
    ]


@pytest.mark.asyncio
async def test_each_hint_button_sends_its_own_instruction_as_the_students_turn(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1)
    await sync_to_async(set_policy)(solve_mode="hints", hint_next_step="Do one step.")
    sent = await sent_to_member(
        gateway,
        fake,
        talk(
            PROBLEM,
            "Look at powers of 2 mod 7.",
            {"role": "user", "step": "another_hint"},
            "Cycle of 3.",
            {"role": "user", "step": "next_step"},
        ),
    )
    assert [m["content"] for m in sent[1:]] == [
        f"{PROBLEM}\n\n{DEFAULT_HINTS['first']}",  # the same first turn each time: members' caches keep it
        "Look at powers of 2 mod 7.",
        DEFAULT_HINTS["another"],
        "Cycle of 3.",
        "Do one step.",
    ]


@pytest.mark.asyncio
async def test_the_page_in_solution_mode_sends_the_problem_as_is(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1)
    sent = await sent_to_member(gateway, fake, talk(PROBLEM, "A hint.", {"role": "user", "step": "solution"}))
    assert sent[1]["content"] == PROBLEM
    assert sent[-1]["content"] == DEFAULT_HINTS["solution"]


@pytest.mark.asyncio
async def test_a_platform_asks_for_hints_per_request_and_keeps_its_own_system_prompt(
    gateway, fake_members, platform_key
):
    (fake,) = await sync_to_async(fake_members)(1)
    reply = await request(
        gateway, "POST", "/v1/chat/completions", chat(PROBLEM, vibeadmin={"mode": "hints"}), key=platform_key
    )
    assert reply.status == 200, reply.body
    sent = fake.stats()["last_request"]["messages"]
    assert sent == [
        {"role": "system", "content": DEFAULT_TUTOR_PROMPT},
        {"role": "user", "content": f"{PROBLEM}\n\n{DEFAULT_HINTS['first']}"},
    ]
    own = chat(vibeadmin={"mode": "hints"})
    own["messages"].insert(0, {"role": "system", "content": "Be Socratic."})
    assert (await request(gateway, "POST", "/v1/chat/completions", own, key=platform_key)).status == 200
    assert fake.stats()["last_request"]["messages"][0] == {"role": "system", "content": "Be Socratic."}
    plain = await request(gateway, "POST", "/v1/chat/completions", chat(PROBLEM), key=platform_key)
    assert plain.status == 200
    assert fake.stats()["last_request"]["messages"][-1]["content"] == PROBLEM  # solution mode by default


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"mode": "answers"}, "vibeadmin.mode"),
        ({"progress": "yes"}, "vibeadmin.progress"),
        ({"progress": True}, "vibeadmin.progress"),
    ],  # progress needs stream
)
async def test_bad_tutor_options_on_the_api_are_refused(gateway, fake_members, platform_key, options, param):
    reply = await request(gateway, "POST", "/v1/chat/completions", chat(vibeadmin=options), key=platform_key)
    assert reply.status == 400
    assert reply.json()["error"]["param"] == param
    completion = {"model": "vibethinker", "prompt": "2+2", "vibeadmin": {"mode": "hints"}}
    refused = await request(gateway, "POST", "/v1/completions", completion, key=platform_key)
    assert refused.status == 400 and refused.json()["error"]["param"] == "vibeadmin.mode"


# --- the Routing page -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_mode_bounds_and_instructions_are_set_on_the_routing_page(admin_client, client):
    page = admin_client.get(reverse("routing")).content.decode()
    for name in (
        "solve_mode",
        "solve_max_turns",
        "solve_max_chars",
        "prompt_tutor",
        "hint_first",
        "hint_another",
        "hint_next_step",
        "hint_solution",
    ):
        assert f'name="{name}"' in page, name
    changes = {
        "solve_mode": "hints",
        "solve_max_turns": 3,
        "solve_max_chars": 900,
        "hint_another": "More, gently.",
    }
    admin_client.post(reverse("routing"), routing_data(**changes))
    row = PoolSettings.load()
    assert (row.solve_mode, row.solve_max_turns, row.solve_max_chars, row.hint_another) == (
        "hints",
        3,
        900,
        "More, gently.",
    )
    assert row.hint_first == DEFAULT_HINTS["first"]  # left out of the post: kept
    config = client.get("/solve/").context["solve_config"]
    assert config["mode"] == "hints" and config["maxTurns"] == 3 and config["maxConversationChars"] == 900
    assert config["stepChars"]["another_hint"] == len("More, gently.")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes", [{"solve_mode": "answers"}, {"solve_max_turns": 0}, {"solve_max_chars": 0}]
)
def test_bad_tutor_settings_are_refused_on_the_form(admin_client, changes):
    response = admin_client.post(reverse("routing"), routing_data(**changes))
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    row = PoolSettings.load()
    assert (row.solve_mode, row.solve_max_turns, row.solve_max_chars) == ("solution", 6, 8000)
