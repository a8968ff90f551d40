"""Hints that cannot give the answer away, and "check my answer", on the server: the final
answer is worked out first out of sight, every hint is held whole and checked against it,
a leaking hint is asked again with a firmer instruction and, after two tries, replaced by
what is safe; only a passing hint is stored in the answer cache; a student's typed answer
is judged as a value without the answer being revealed. The members are
testing.fake_member servers (small fake OpenAI servers) answering scripted replies in turn:
the hidden solution first, then the hints, so what each try said is known exactly."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from pool.gateway.app import CHECK_PATH, SOLVE_PATH
from pool.gateway.hints import FIRMER, NEXT_STEP
from tests.asgi_driver import request
from tests.gateway_kit import set_policy

pytestmark = pytest.mark.asyncio
PROBLEM = "A rectangle has perimeter 30 cm and its length is twice its width. What is its area?"
SOLVED = "w = 5, l = 10, area \\boxed{50}"
GOOD = "Call the width w; what does the perimeter tell you about w?"
LEAK = "The width is 5 and the length 10, so the area is \\boxed{50}."


def hint_body() -> dict:
    return {"problem": PROBLEM, "task": "math", "max_tokens": 40}


def hint_text(reply) -> tuple[str, dict]:
    chunks = [json.loads(e) for e in reply.events() if e.startswith("{")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    return text, next(c["vibeadmin"] for c in chunks if "vibeadmin" in c)


def shown(reply) -> str:
    """Everything the student's page could show: each event's content and vibeadmin fields."""
    chunks = [json.loads(e) for e in reply.events() if e.startswith("{")]
    return json.dumps([(c["choices"], c.get("vibeadmin")) for c in chunks])


@pytest.fixture
def hints_mode(transactional_db):
    set_policy(solve_mode="hints", solve_cache=False)


async def test_a_hint_that_passes_the_check_is_shown(gateway, fakes_in_loop, hints_mode):
    (member,) = await fakes_in_loop(1, answers=f"{SOLVED}|{GOOD}")
    reply = await request(gateway, "POST", SOLVE_PATH, hint_body())

    assert reply.status == 200, reply.body
    assert hint_text(reply) == (GOOD, {"hint": {"checked": True, "tries": 1, "replaced": False}})
    assert member.stats.requests == 2  # the hidden solution, then the hint


async def test_a_leaking_hint_is_asked_again_with_a_firmer_instruction(gateway, fakes_in_loop, hints_mode):
    (member,) = await fakes_in_loop(1, answers=f"{SOLVED}|{LEAK}|{GOOD}")
    reply = await request(gateway, "POST", SOLVE_PATH, hint_body())

    assert hint_text(reply) == (GOOD, {"hint": {"checked": True, "tries": 2, "replaced": False}})
    last = member.stats.last_request["messages"][-1]["content"]
    assert last.endswith(FIRMER)
    assert "50" not in shown(reply)


async def test_after_two_leaks_the_student_gets_only_the_safe_part(gateway, fakes_in_loop, hints_mode):
    await fakes_in_loop(1, answers=f"{SOLVED}|{LEAK}|So the area is fifty.")
    reply = await request(gateway, "POST", SOLVE_PATH, hint_body())

    text, told = hint_text(reply)
    assert told == {"hint": {"checked": True, "tries": 2, "replaced": True}}
    assert text == NEXT_STEP  # nothing of the second try was safe to keep
    assert "50" not in shown(reply) and "fifty" not in shown(reply)


async def test_the_safe_part_keeps_the_sentences_before_the_answer(gateway, fakes_in_loop, hints_mode):
    leak = "Write the perimeter as 2(l + w) = 30 with l = 2w. Then the area is 50."
    await fakes_in_loop(1, answers=f"{SOLVED}|{leak}|{leak}")
    text, told = hint_text(await request(gateway, "POST", SOLVE_PATH, hint_body()))
    assert text == "Write the perimeter as 2(l + w) = 30 with l = 2w."
    assert told["hint"]["replaced"] is True


async def test_the_full_solution_is_not_checked(gateway, fakes_in_loop, hints_mode):
    (member,) = await fakes_in_loop(1, answers=LEAK)
    body = {
        "messages": [
            {"role": "user", "content": PROBLEM},
            {"role": "assistant", "content": GOOD},
            {"role": "user", "step": "solution"},
        ],
        "task": "math",
        "max_tokens": 40,
    }
    reply = await request(gateway, "POST", SOLVE_PATH, body)
    assert "\\\\boxed{50}" in reply.body.decode()
    assert member.stats.requests == 1


async def test_only_a_passing_hint_is_stored_and_the_hidden_answer_is_worked_out_once(
    gateway, fakes_in_loop, settings, tmp_path
):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"weights" * 100)
    settings.VIBEADMIN_MODEL = str(model)
    await sync_to_async(set_policy)(solve_mode="hints", solve_cache=True)
    (member,) = await fakes_in_loop(1, answers=f"{SOLVED}|{LEAK}|{LEAK}")
    replaced = await request(gateway, "POST", SOLVE_PATH, hint_body())
    assert hint_text(replaced)[1]["hint"]["replaced"] is True

    member.config.answers = GOOD
    again = await request(gateway, "POST", SOLVE_PATH, hint_body())
    assert again.headers["x-vibeadmin-cache"] == "miss"  # the replaced hint was not stored
    assert hint_text(again)[0] == GOOD
    assert member.stats.requests == 3 + 1  # the hidden solution came from the cache

    stored = await request(gateway, "POST", SOLVE_PATH, hint_body())
    assert stored.headers["x-vibeadmin-cache"] == "hit"
    assert member.stats.requests == 4


async def test_a_platforms_hint_is_checked_too(gateway, fakes_in_loop):
    from pool.services.keys import apikey_create

    await fakes_in_loop(1, answers=f"{SOLVED}|{LEAK}|{GOOD}")
    _, key = await sync_to_async(apikey_create)(name="school")
    body = {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": PROBLEM}],
        "max_tokens": 40,
        "vibeadmin": {"task": "math", "mode": "hints"},
    }
    reply = await request(gateway, "POST", "/v1/chat/completions", body, key=key)
    assert reply.json()["choices"][0]["message"]["content"] == GOOD
    assert reply.json()["vibeadmin"] == {"hint": {"checked": True, "tries": 2, "replaced": False}}


@pytest.mark.parametrize(
    ("typed", "verdict"),
    [
        ("50", "right"),
        ("50 cm²", "right"),
        ("fifty", "right"),
        ("\\boxed{50}", "right"),
        ("45", "not_yet"),
        ("no idea", "unreadable"),
    ],
)
async def test_check_my_answer_says_right_or_not_yet_without_the_answer(
    gateway, fakes_in_loop, typed, verdict
):
    await fakes_in_loop(1, answers=SOLVED)
    reply = await request(gateway, "POST", CHECK_PATH, {"problem": PROBLEM, "task": "math", "answer": typed})
    assert reply.status == 200, reply.body
    assert reply.json() == {"verdict": verdict}


async def test_check_my_answer_says_so_when_no_answer_could_be_worked_out(gateway, fakes_in_loop):
    await fakes_in_loop(1, answers="I cannot solve this")
    reply = await request(gateway, "POST", CHECK_PATH, {"problem": PROBLEM, "answer": "50"})
    assert reply.json() == {"verdict": "unknown"}


@pytest.mark.parametrize(
    "body", [{"problem": PROBLEM}, {"problem": PROBLEM, "answer": "x" * 201}, {"answer": "5"}, []]
)
async def test_a_bad_check_is_refused_in_openais_shape(gateway, fakes_in_loop, body):
    (member,) = await fakes_in_loop(1, answers=SOLVED)
    reply = await request(gateway, "POST", CHECK_PATH, body)
    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert member.stats.requests == 0
