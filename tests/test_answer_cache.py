"""The answer cache: a repeated problem is answered from a stored answer, keyed on the
model file's sha256, the task, the prompts (normalised) and the sampling settings; only
answers that ended by themselves are stored; a hit streams like a live answer, uses no
tokens and never reaches a member. The members are testing.fake_member servers (small
fake OpenAI servers whose generations are counted exactly); with `echo` their answer
repeats the problem, so an answer served for the wrong problem shows."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from pool import metrics
from pool.gateway import tasks
from pool.gateway.cache_key import cache_key, normalise
from pool.gateway.replies import Answer
from pool.models import CacheEntry, UsageDay
from pool.services.cache import empty_answer_cache
from pool.services.keys import apikey_create
from tests.asgi_driver import request
from tests.gateway_kit import chat, set_policy

pytestmark = pytest.mark.asyncio
PATH = "/v1/chat/completions"


async def cached_key(**options) -> str:
    _, raw = await sync_to_async(apikey_create)(name="judge", **options)
    return raw


async def written() -> None:
    """The answers stored so far are in the table (they are written behind the reply)."""
    await asyncio.gather(*list(tasks._running), return_exceptions=True)


def generations(members) -> int:
    return sum(m.stats.requests for m in members)


def text_of(reply) -> str:
    return reply.json()["choices"][0]["message"]["content"]


async def test_a_repeated_problem_is_answered_from_the_cache_without_a_member(
    gateway, fakes_in_loop, model_file
):
    members = await fakes_in_loop(1, echo=True, max_tokens=6)
    key = await cached_key(cache=True)
    body = chat("Solve 2x+3=7", max_tokens=50, temperature=0)

    first = await request(gateway, "POST", PATH, body, key=key)
    second = await request(gateway, "POST", PATH, body, key=key)

    assert (first.status, second.status) == (200, 200)
    assert first.headers["x-vibeadmin-cache"] == "miss"
    assert second.headers["x-vibeadmin-cache"] == "hit"
    assert text_of(second) == text_of(first) and "2x+3=7" in text_of(first)
    assert generations(members) == 1
    usage = second.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] > 0
    assert usage["vibeadmin"] == {"cache": "hit", "generated_tokens": 0}


async def test_a_hit_streams_in_the_shape_of_a_live_answer(gateway, fakes_in_loop, model_file):
    members = await fakes_in_loop(1, echo=True, max_tokens=6)
    key = await cached_key(cache=True)
    body = chat(
        "Solve 2x+3=7", max_tokens=50, temperature=0, stream=True, stream_options={"include_usage": True}
    )

    live = await request(gateway, "POST", PATH, body, key=key)
    hit = await request(gateway, "POST", PATH, body, key=key)

    assert hit.headers["x-vibeadmin-cache"] == "hit" and hit.headers["content-type"] == "text/event-stream"
    for reply in (live, hit):
        events = reply.events()
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    words = [
        "".join(c["choices"][0]["delta"].get("content", "") for c in map(json.loads, r.events()[:-2]))
        for r in (live, hit)
    ]
    assert words[0] == words[1]
    assert json.loads(hit.events()[-2])["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert generations(members) == 1


async def test_spacing_and_line_endings_are_the_same_problem_but_a_digit_or_its_form_is_not(
    gateway, fakes_in_loop, model_file
):
    members = await fakes_in_loop(1, echo=True, max_tokens=6)
    key = await cached_key(cache=True)

    def ask(problem: str):
        return request(gateway, "POST", PATH, chat(problem, max_tokens=50, temperature=0), key=key)

    await ask("Solve  2x + 3 = 7 ")
    same = await ask("Solve 2x  +\t3 = 7\r\n")  # runs of spaces, a tab, a line ending
    wide = await ask(
        "Solve ２x + 3 = 7"
    )  # a fullwidth digit: kept as written (tests/test_cache_key_meaning.py)
    other = await ask("Solve 2x + 3 = 8")
    upper = await ask("SOLVE 2x + 3 = 7")

    assert same.headers["x-vibeadmin-cache"] == "hit"
    assert wide.headers["x-vibeadmin-cache"] == other.headers["x-vibeadmin-cache"] == "miss"
    assert upper.headers["x-vibeadmin-cache"] == "miss"
    assert "8" in text_of(other) and "7" not in text_of(other).replace("tok", "")
    assert generations(members) == 4  # the first, the fullwidth one, the other digit, the upper case


async def test_the_key_covers_the_model_the_task_the_prompts_and_the_sampling():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "2x+3=7"}],
        "max_tokens": 9,
        "temperature": 0,
    }
    base = cache_key("a" * 64, PATH, "math", body, "key:1")
    assert cache_key("a" * 64, PATH, "math", {**body, "stream": True, "user": "u1"}, "key:1") == base
    assert cache_key("b" * 64, PATH, "math", body, "key:1") != base
    assert cache_key("a" * 64, PATH, "code", body, "key:1") != base
    assert cache_key("a" * 64, PATH, "math", {**body, "temperature": 0.5}, "key:1") != base
    assert cache_key("a" * 64, PATH, "math", {**body, "max_tokens": 10}, "key:1") != base
    system = [{"role": "system", "content": "Be brief."}, *body["messages"]]
    assert cache_key("a" * 64, PATH, "math", {**body, "messages": system}, "key:1") != base
    assert cache_key("a" * 64, PATH, "math", body, "key:2") != base  # tenants never share
    assert cache_key("a" * 64, PATH, "math", {**body, "temperature": 0.0}, "key:1") == base
    assert normalise("2x\t+3  = 7 \r\n") == "2x +3 = 7" and normalise("x²") != normalise("X²")


async def test_an_answer_cut_by_max_tokens_is_not_stored(gateway, fakes_in_loop, model_file):
    members = await fakes_in_loop(1, max_tokens=64)
    key = await cached_key(cache=True)
    body = chat("Count to a hundred", max_tokens=5, temperature=0)  # the fake stops at 5: "length"

    first = await request(gateway, "POST", PATH, body, key=key)
    second = await request(gateway, "POST", PATH, body, key=key)

    assert first.json()["choices"][0]["finish_reason"] == "length"
    assert second.headers["x-vibeadmin-cache"] == "miss"
    assert generations(members) == 2
    assert await sync_to_async(CacheEntry.objects.count)() == 0


async def test_no_cache_from_the_client_asks_for_a_fresh_answer(gateway, fakes_in_loop, model_file):
    members = await fakes_in_loop(1, max_tokens=6)
    key = await cached_key(cache=True)
    body = chat("Solve 2x+3=7", max_tokens=50, temperature=0)
    await request(gateway, "POST", PATH, body, key=key)
    refreshes = metrics.CACHE_REQUESTS.labels("judge", "refresh")
    before = refreshes._value.get()

    fresh = await request(gateway, "POST", PATH, body, key=key, headers={"cache-control": "no-cache"})

    assert fresh.headers["x-vibeadmin-cache"] == "refresh"
    assert generations(members) == 2
    assert refreshes._value.get() == before + 1  # audited in the cache's figures


async def test_a_key_without_the_cache_and_sampled_requests_on_a_key_that_refuses_them_bypass(
    gateway, fakes_in_loop, model_file
):
    members = await fakes_in_loop(1, max_tokens=6)
    _, plain = await sync_to_async(apikey_create)(name="plain")
    _, deterministic_only = await sync_to_async(apikey_create)(name="strict", cache=True)
    _, sampled_too = await sync_to_async(apikey_create)(name="relaxed", cache=True, cache_sampled=True)
    warm = chat("Solve 2x+3=7", max_tokens=50)  # no temperature: the member's default, above 0

    for key, expected in ((plain, "bypass"), (plain, "bypass"), (deterministic_only, "bypass")):
        reply = await request(gateway, "POST", PATH, warm, key=key)
        assert reply.headers["x-vibeadmin-cache"] == expected
    relaxed = [
        (await request(gateway, "POST", PATH, warm, key=sampled_too)).headers["x-vibeadmin-cache"]
        for _ in "ab"
    ]
    assert relaxed == ["miss", "hit"]
    assert generations(members) == 4


async def test_two_keys_never_share_answers(gateway, fakes_in_loop, model_file):
    members = await fakes_in_loop(1, max_tokens=6)
    _, one = await sync_to_async(apikey_create)(name="school-a", cache=True)
    _, other = await sync_to_async(apikey_create)(name="school-b", cache=True)
    body = chat("Solve 2x+3=7", max_tokens=50, temperature=0)

    labels = [
        (await request(gateway, "POST", PATH, body, key=k)).headers["x-vibeadmin-cache"]
        for k in (one, other, one)
    ]

    assert labels == ["miss", "miss", "hit"]
    assert generations(members) == 2


async def test_a_corrupt_entry_or_one_from_another_model_is_a_miss(gateway, fakes_in_loop, model_file):
    members = await fakes_in_loop(1, echo=True, max_tokens=6)
    key = await cached_key(cache=True)
    body = chat("Solve 2x+3=7", max_tokens=50, temperature=0)
    await request(gateway, "POST", PATH, body, key=key)
    await written()
    gateway.answers.cache.front.clear()  # as another gateway would: only the table has it

    await sync_to_async(CacheEntry.objects.update)(answer='{"deltas": [{"content": 5}]')
    corrupt = await request(gateway, "POST", PATH, body, key=key)
    gateway.answers.cache.front.clear()
    await written()
    row = await sync_to_async(CacheEntry.objects.get)()
    other = Answer(**{**json.loads(row.answer), "model_sha256": "f" * 64})
    await sync_to_async(CacheEntry.objects.update)(answer=other.to_json())
    foreign = await request(gateway, "POST", PATH, body, key=key)

    assert corrupt.headers["x-vibeadmin-cache"] == foreign.headers["x-vibeadmin-cache"] == "miss"
    assert "2x+3=7" in text_of(corrupt) and "2x+3=7" in text_of(foreign)
    assert generations(members) == 3


async def test_a_hit_counts_against_the_keys_requests_per_minute_but_not_its_tokens(
    gateway, fakes_in_loop, model_file
):
    members = await fakes_in_loop(1, max_tokens=6)
    key = await cached_key(cache=True, rpm=3, tpm=200)
    body = chat("Solve 2x+3=7", max_tokens=150, temperature=0)  # reserves most of the 200 tokens

    replies = [await request(gateway, "POST", PATH, body, key=key) for _ in range(4)]

    assert [r.status for r in replies] == [200, 200, 200, 429]
    assert replies[3].json()["error"]["code"] == "rate_limit_requests"
    assert generations(members) == 1


async def test_a_changed_model_file_misses_and_empties_the_previous_models_answers(
    gateway, fakes_in_loop, model_file
):
    members = await fakes_in_loop(1, max_tokens=6)
    key = await cached_key(cache=True)
    body = chat("Solve 2x+3=7", max_tokens=50, temperature=0)
    await request(gateway, "POST", PATH, body, key=key)
    await written()

    model_file.write_bytes(b"GGUF" + b"other weights" * 100)
    await gateway.registry.refresh()
    after = await request(gateway, "POST", PATH, body, key=key)
    await written()
    await gateway.keep_books()

    assert after.headers["x-vibeadmin-cache"] == "miss"
    shas = await sync_to_async(lambda: set(CacheEntry.objects.values_list("model_sha256", flat=True)))()
    assert shas == {gateway.registry.policy.model_sha256}
    assert generations(members) == 2


async def test_empty_cache_empties_every_gateways_memory_too(gateway, fakes_in_loop, model_file):
    members = await fakes_in_loop(1, max_tokens=6)
    key = await cached_key(cache=True)
    body = chat("Solve 2x+3=7", max_tokens=50, temperature=0)
    await request(gateway, "POST", PATH, body, key=key)
    await written()

    await sync_to_async(empty_answer_cache)()
    await gateway.registry.refresh()
    after = await request(gateway, "POST", PATH, body, key=key)

    assert after.headers["x-vibeadmin-cache"] == "miss"
    assert generations(members) == 2


async def test_the_least_recently_used_answers_go_beyond_the_entries_limit(
    gateway, fakes_in_loop, model_file, settings
):
    settings.VIBEADMIN_CACHE_ENTRIES = 2
    members = await fakes_in_loop(1, max_tokens=6)
    key = await cached_key(cache=True)

    def ask(n: int):
        return request(gateway, "POST", PATH, chat(f"Solve x+{n}=9", max_tokens=50, temperature=0), key=key)

    for n in (1, 2, 1, 3):  # 1 is used again: 2 is then the least recent
        await ask(n)
        await written()
        await gateway.keep_books()
    gateway.answers.cache.front.clear()

    results = [(await ask(n)).headers["x-vibeadmin-cache"] for n in (1, 3, 2)]

    assert results == ["hit", "hit", "miss"]
    assert generations(members) == 4


async def test_the_solve_page_is_cached_by_default_and_its_usage_is_kept_per_day(
    gateway, fakes_in_loop, model_file
):
    members = await fakes_in_loop(1, max_tokens=6)
    await sync_to_async(set_policy)(solve_rpm=100)
    problem = json.dumps({"problem": "Solve 2x+3=7", "max_tokens": 50}).encode()

    first = await request(gateway, "POST", "/solve/api/stream", raw=problem)
    second = await request(gateway, "POST", "/solve/api/stream", raw=problem, client="10.0.0.2")
    await gateway.keep_books()

    assert (first.headers["x-vibeadmin-cache"], second.headers["x-vibeadmin-cache"]) == ("miss", "hit")
    assert generations(members) == 1
    day = await sync_to_async(UsageDay.objects.get)(tenant="solve")
    assert (day.requests, day.cache_hits, day.cache_misses) == (2, 1, 1)
    assert day.completion_tokens == 6 and day.saved_tokens > 6


async def test_metrics_count_hits_misses_and_what_the_cache_saved_per_tenant(
    gateway, fakes_in_loop, model_file, settings
):
    from prometheus_client.parser import text_string_to_metric_families

    from vibeadmin.asgi import application

    settings.VIBEADMIN_METRICS_TOKEN = "scrape-token-for-the-cache"

    async def scrape() -> dict:
        reply = await request(
            application, "GET", "/metrics", headers={"authorization": "Bearer scrape-token-for-the-cache"}
        )
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.body.decode())
            for s in family.samples
        }

    await fakes_in_loop(1, max_tokens=6)
    key = await cached_key(cache=True)
    body = chat("Solve 2x+3=7", max_tokens=50, temperature=0)
    before = await scrape()
    for _ in range(3):
        await request(gateway, "POST", PATH, body, key=key)
    await written()
    await gateway.keep_books()
    after = await scrape()

    def grew(name: str, **labels: str) -> float:
        sample = (name, frozenset(labels.items()))
        return after.get(sample, 0.0) - before.get(sample, 0.0)

    assert grew("vibeadmin_cache_requests_total", tenant="judge", result="hit") == 2
    assert grew("vibeadmin_cache_requests_total", tenant="judge", result="miss") == 1
    assert grew("vibeadmin_cache_saved_tokens_total", tenant="judge") > 12
    assert grew("vibeadmin_cache_saved_member_seconds_total", tenant="judge") > 0
    assert after[("vibeadmin_cache_entries", frozenset())] == 1
