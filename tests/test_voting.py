"""Voting: a request asks for k independent answers (`vibeadmin.samples`, or its tenant's
default for math), the reply is the majority final answer's solution with
`vibeadmin.agreement`; ties and no answer are said; every sample is charged and waits as a
request of its own; the samples share one member's slots where it has room. The members
are testing.fake_member servers (small fake OpenAI servers) answering scripted solutions in
turn, so which sample said what is known exactly."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from pool.gateway.app import SOLVE_PATH
from pool.models import ApiKey, Member
from pool.services.keys import apikey_create
from tests.asgi_driver import request
from tests.gateway_kit import chat, set_policy

pytestmark = pytest.mark.asyncio
PATH = "/v1/chat/completions"
THREE = "so \\boxed{399}|so \\boxed{400}|it is \\boxed{399}"


def voting(k: int | None = None, **extra) -> dict:
    options = {"task": "math", **({"samples": k} if k is not None else {})}
    return chat("What is 19 * 21?", max_tokens=50, temperature=0.6, vibeadmin=options, **extra)


async def a_key(**fields) -> str:
    key, raw = await sync_to_async(apikey_create)(name="school")
    if fields:
        await sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(**fields)
    return raw


async def test_the_reply_is_the_majority_answers_solution_with_the_agreement(gateway, fakes_in_loop):
    (member,) = await fakes_in_loop(1, answers=THREE)
    reply = await request(gateway, "POST", PATH, voting(3), key=await a_key())

    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == "so \\boxed{399}"
    assert body["vibeadmin"]["agreement"] == {"answer": "399", "votes": 2, "of": 3}
    assert member.stats.requests == 3
    assert body["usage"]["completion_tokens"] == 2 + 2 + 3  # every sample's tokens


async def test_a_stream_is_the_majority_answers_solution_and_its_last_event_holds_the_agreement(
    gateway, fakes_in_loop
):
    await fakes_in_loop(1, answers="so \\boxed{400}|so \\boxed{399}|yes \\boxed{399}")
    reply = await request(gateway, "POST", PATH, voting(3, stream=True), key=await a_key())

    events = reply.events()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "so \\boxed{399}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["vibeadmin"]["agreement"] == {"answer": "399", "votes": 2, "of": 3}


async def test_a_tie_and_no_answer_are_said_as_such(gateway, fakes_in_loop):
    (member,) = await fakes_in_loop(1, answers="so \\boxed{3}|so \\boxed{4}")
    key = await a_key()
    tie = await request(gateway, "POST", PATH, voting(2), key=key)
    assert tie.json()["vibeadmin"]["agreement"] == {"answer": None, "votes": 1, "of": 2, "tie": True}

    member.config.answers = "no idea|none"
    none = await request(gateway, "POST", PATH, voting(2), key=key)
    assert none.json()["vibeadmin"]["agreement"] == {"answer": None, "votes": 0, "of": 2}


async def test_the_samples_share_one_members_slots_where_it_has_room(gateway, fakes_in_loop):
    members = await fakes_in_loop(2, answers=THREE, concurrent=True, tpt=0.02)
    await sync_to_async(Member.objects.update)(max_inflight=4)
    await request(gateway, "POST", PATH, voting(3), key=await a_key())

    assert sorted(m.stats.requests for m in members) == [0, 3]
    assert max(m.stats.max_concurrent for m in members) == 3  # together, not one after another


async def test_a_keys_default_applies_to_math_and_a_request_over_the_cap_is_refused(gateway, fakes_in_loop):
    (member,) = await fakes_in_loop(1, answers=THREE)
    key = await a_key(samples=3)
    await sync_to_async(set_policy)(max_samples=4)

    by_default = await request(gateway, "POST", PATH, voting(), key=key)
    assert by_default.json()["vibeadmin"]["agreement"]["of"] == 3
    general = await request(gateway, "POST", PATH, chat(max_tokens=50), key=key)
    assert "vibeadmin" not in general.json()

    over = await request(gateway, "POST", PATH, voting(5), key=key)
    assert over.status == 400
    assert over.json()["error"]["code"] == "too_many_samples"
    assert over.json()["error"]["param"] == "vibeadmin.samples"
    assert member.stats.requests == 3 + 1


async def test_samples_at_temperature_zero_are_refused(gateway, fakes_in_loop):
    await fakes_in_loop(1, answers=THREE)
    body = voting(3)
    body["temperature"] = 0
    reply = await request(gateway, "POST", PATH, body, key=await a_key())
    assert reply.status == 400 and reply.json()["error"]["code"] == "samples_need_temperature"


async def test_every_samples_tokens_count_against_the_quota(gateway, fakes_in_loop):
    (member,) = await fakes_in_loop(1, answers=THREE)
    key = await a_key(tokens_per_day=10**6)

    reply = await request(gateway, "POST", PATH, voting(3), key=key)

    usage = reply.json()["usage"]
    assert usage["completion_tokens"] == 7
    assert usage["prompt_tokens"] == 3 * (usage["prompt_tokens"] // 3) > 0  # each sample's prompt
    assert list(gateway.quotas.levels.values()) == [usage["total_tokens"]]


async def test_the_solve_page_streams_the_first_sample_then_the_agreement_and_the_majoritys_solution(
    gateway, fakes_in_loop
):
    await fakes_in_loop(1, answers="so \\boxed{400}|so \\boxed{399}|yes \\boxed{399}")
    await sync_to_async(set_policy)(solve_samples=3)
    reply = await request(gateway, "POST", SOLVE_PATH, {"problem": "What is 19 * 21?", "task": "math"})

    assert reply.status == 200, reply.body
    text = reply.body.decode()
    told = json.loads(text.split("event: vibeadmin\ndata: ")[1].split("\n\n")[0])
    assert told == {
        "agreement": {"answer": "399", "votes": 2, "of": 3},
        "majority": {"content": "so \\boxed{399}"},
    }
    streamed = [json.loads(e) for e in reply.events() if e.startswith("{") and '"choices"' in e]
    first = "".join(c["choices"][0]["delta"].get("content", "") for c in streamed if c["choices"])
    assert first == "so \\boxed{400}"  # the first sample, as it came
    assert reply.events()[-1] == "[DONE]"


async def test_a_voted_answer_is_stored_with_its_agreement_and_served_to_the_next_student(
    gateway, fakes_in_loop, settings, tmp_path
):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"weights" * 100)
    settings.VIBEADMIN_MODEL = str(model)
    (member,) = await fakes_in_loop(1, answers=THREE)
    key = await a_key(cache=True, cache_sampled=True)

    first = await request(gateway, "POST", PATH, voting(3), key=key)
    again = await request(gateway, "POST", PATH, voting(3, stream=True), key=key)
    one = await request(gateway, "POST", PATH, voting(1), key=key)

    assert first.headers["x-vibeadmin-cache"] == "miss"
    assert again.headers["x-vibeadmin-cache"] == "hit"
    chunks = [json.loads(e) for e in again.events()[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "so \\boxed{399}"
    assert chunks[-1]["vibeadmin"]["agreement"] == {"answer": "399", "votes": 2, "of": 3}
    assert one.headers["x-vibeadmin-cache"] == "miss"  # one sample's answer is another answer
    assert member.stats.requests == 3 + 1
