"""The fake llama.cpp member: OpenAI shapes, one generation at a time, failure modes."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request

import aiohttp
import pytest

from testing.fake_member import FakeConfig, FakeMember, FakeMemberProcess, start

HELLO = [
    {"role": "system", "content": "You are a math tutor.\nBe brief. é"},
    {"role": "user", "content": "what is two plus two"},
]


@pytest.fixture
async def member():
    member = FakeMember(FakeConfig(ttft=0.001, tpt=0.0, max_tokens=32, model="fake-gguf"))
    runner, url = await start(member)
    async with aiohttp.ClientSession(url) as session:
        member.session = session
        yield member
    await runner.cleanup()


async def eventually(check, tries: int = 500) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def chat(member, **body) -> aiohttp.ClientResponse:
    body.setdefault("messages", HELLO)
    async with member.session.post("/v1/chat/completions", json=body) as response:
        await response.read()
        return response


async def events(response: aiohttp.ClientResponse) -> list:
    """The SSE data payloads, decoded; "[DONE]" kept as the string."""
    out = []
    async for line in response.content:
        if line.startswith(b"data: "):
            data = line[6:].strip().decode()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def hold_generation(member, **body):
    """A chat request that stays inside the generation lock until cancelled."""
    member.config.ttft = 60.0
    return asyncio.create_task(chat(member, **body))


async def let_go(task, member) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: member.stats.in_flight == 0 and not member.lock.locked())


# -- answers in OpenAI's shapes ---------------------------------------------------------


async def test_chat_answer_is_openai_json_with_deterministic_content_and_usage(member):
    response = await chat(member, model="vibethinker", max_tokens=3)
    body = await response.json()
    assert response.status == 200
    assert body["object"] == "chat.completion"
    assert body["model"] == "vibethinker"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 tok2"}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 13, "completion_tokens": 3, "total_tokens": 16}


async def test_completion_answer_carries_the_text_in_choices_text(member):
    async with member.session.post(
        "/v1/completions", json={"prompt": "1 + 1 =", "max_tokens": 2}
    ) as response:
        body = await response.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "tok0 tok1"
    assert body["usage"]["completion_tokens"] == 2


async def test_it_generates_16_tokens_when_the_request_names_no_max(member):
    body = await (await chat(member)).json()
    assert body["usage"]["completion_tokens"] == 16
    assert body["choices"][0]["message"]["content"].split()[-1] == "tok15"


async def test_the_configured_cap_stops_the_answer_early_with_finish_reason_stop(member):
    body = await (await chat(member, max_tokens=100)).json()
    assert body["usage"]["completion_tokens"] == 32
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_it_echoes_the_system_prompt_url_quoted_in_a_header(member):
    response = await chat(member, max_tokens=1)
    assert urllib.parse.unquote(response.headers["X-Fake-System"]) == HELLO[0]["content"]
    alone = await chat(member, messages=HELLO[1:], max_tokens=1)
    assert "X-Fake-System" not in alone.headers


async def test_streamed_chat_sends_openai_chunks_then_a_finish_then_done(member):
    async with member.session.post(
        "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 3, "stream": True}
    ) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        chunks = await events(response)
    assert chunks[-1] == "[DONE]"
    *tokens, last = chunks[:-1]
    assert {c["object"] for c in chunks[:-1]} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks[:-1]}) == 1
    assert tokens[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"]["content"] for c in tokens) == "tok0 tok1 tok2"
    assert all(c["choices"][0]["finish_reason"] is None for c in tokens)
    assert last["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}


async def test_streamed_completion_sends_text_chunks_and_usage_when_asked(member):
    body = {"prompt": "count", "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}}
    async with member.session.post("/v1/completions", json=body) as response:
        chunks = await events(response)
    assert [c["choices"][0]["text"] for c in chunks[:2]] == ["tok0", " tok1"]
    assert chunks[2]["choices"][0]["finish_reason"] == "length"
    assert chunks[3]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert chunks[4] == "[DONE]"


async def test_models_lists_the_configured_model(member):
    async with member.session.get("/v1/models") as response:
        body = await response.json()
    assert [m["id"] for m in body["data"]] == ["fake-gguf"]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": ["hello"]},
        {"messages": HELLO, "max_tokens": "ten"},
        {"messages": HELLO, "max_tokens": -1},
    ],
)
async def test_bad_requests_get_400_and_generate_nothing(member, body):
    async with member.session.post("/v1/chat/completions", json=body) as response:
        assert response.status == 400
        assert "message" in (await response.json())["error"]
    assert member.stats.served == 0


async def test_a_body_that_is_not_json_gets_400(member):
    async with member.session.post("/v1/chat/completions", data=b"{nope") as response:
        assert response.status == 400


# -- one generation at a time, like llama-cpp-python with interrupts off ----------------


async def test_concurrent_requests_wait_and_generate_one_at_a_time(member):
    async with member.lock:
        tasks = [asyncio.create_task(chat(member, max_tokens=4, stream=s)) for s in (True, False) * 2]
        await eventually(lambda: member.stats.waiting == 4)
    responses = await asyncio.gather(*tasks)
    assert [r.status for r in responses] == [200] * 4
    assert member.stats.max_concurrent == 4
    assert member.stats.max_generating == 1
    assert member.stats.served == 4


async def test_a_concurrent_fake_generates_many_at_once_for_gateway_benchmarks(member):
    member.config.concurrent = True
    member.config.ttft = 0.2
    responses = await asyncio.gather(*(chat(member, max_tokens=2) for _ in range(4)))
    assert [r.status for r in responses] == [200] * 4
    assert member.stats.max_generating == 4


async def test_openapi_answers_while_a_generation_holds_the_lock(member):
    busy = hold_generation(member)
    await eventually(lambda: member.stats.generating == 1)
    async with member.session.get("/openapi.json") as response:
        assert response.status == 200
    assert member.stats.generating == 1 and not busy.done()
    await let_go(busy, member)


async def test_models_waits_behind_a_running_generation(member):
    busy = hold_generation(member)
    await eventually(lambda: member.stats.generating == 1)
    models = asyncio.create_task(member.session.get("/v1/models"))
    await eventually(lambda: member.stats.waiting == 1)
    assert not models.done()
    await let_go(busy, member)
    response = await models
    assert response.status == 200
    response.release()


async def test_a_client_that_hangs_up_frees_the_member_at_once(member):
    busy = hold_generation(member)
    await eventually(lambda: member.stats.generating == 1)
    await let_go(busy, member)
    assert member.stats.cancelled == 1
    member.config.ttft = 0.0
    assert (await chat(member, max_tokens=1)).status == 200


# -- failure modes, set at run time -----------------------------------------------------


async def configure(member, **options) -> aiohttp.ClientResponse:
    async with member.session.post("/_fake/config", json=options) as response:
        await response.read()
        return response


async def test_fail_status_answers_every_request_with_it_until_cleared(member):
    await configure(member, fail_status=503)
    response = await chat(member)
    assert response.status == 503
    assert await response.text() == "fake member failure"
    async with member.session.get("/openapi.json") as probe:
        assert probe.status == 503
    await configure(member, fail_status=0)
    assert (await chat(member)).status == 200
    assert member.stats.failed == 2


async def test_fail_times_fails_only_the_next_n_requests(member):
    await configure(member, fail_status=500, fail_times=2)
    assert [(await chat(member)).status for _ in range(3)] == [500, 500, 200]


async def test_drop_after_tokens_cuts_a_stream_without_finish_or_done(member):
    await configure(member, drop_after_tokens=2)
    seen = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with member.session.post(
            "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 5, "stream": True}
        ) as response:
            async for line in response.content:
                if line.startswith(b"data: "):
                    seen.append(line)
    assert len(seen) == 2
    assert b"[DONE]" not in b"".join(seen)
    assert member.stats.dropped == 1


async def test_drop_after_tokens_disconnects_a_plain_answer(member):
    await configure(member, drop_after_tokens=0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await chat(member, max_tokens=5)
    await configure(member, drop_after_tokens=-1)
    assert (await chat(member, max_tokens=5)).status == 200


async def test_hang_accepts_and_never_answers(member):
    await configure(member, hang=True)
    with pytest.raises(TimeoutError):
        async with member.session.post(
            "/v1/chat/completions", json={"messages": HELLO}, timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass
    await eventually(lambda: member.stats.in_flight == 0)
    assert member.stats.cancelled == 1
    assert member.stats.served == 0


async def test_delay_s_holds_a_request_back_before_it_reaches_the_lock(member):
    await configure(member, delay_s=60.0)
    task = asyncio.create_task(chat(member))
    await eventually(lambda: member.stats.in_flight == 1)
    assert member.stats.waiting == 0 and member.stats.generating == 0
    await let_go(task, member)


async def test_config_rejects_unknown_options_and_wrong_types(member):
    assert (await configure(member, fail_stauts=500)).status == 400
    assert (await configure(member, hang="yes")).status == 400
    assert member.config.hang is False


async def test_reset_restores_the_start_config_and_zeroes_the_counts(member):
    await configure(member, fail_status=500)
    await chat(member)
    async with member.session.post("/_fake/reset") as response:
        assert (await response.json())["fail_status"] == 0
    async with member.session.get("/_fake/stats") as response:
        stats = await response.json()
    assert stats["requests"] == 0 and stats["failed"] == 0


# -- as its own process -----------------------------------------------------------------


@pytest.fixture(scope="module")
def process():
    with FakeMemberProcess(name="alpha", max_tokens=3, ttft=0.0, tpt=0.0) as member:
        yield member


def post(url: str, body: dict):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return urllib.request.urlopen(request, timeout=5)


def test_the_process_serves_chat_with_the_options_it_was_started_with(process):
    process.reset()
    with post(process.url + "/v1/chat/completions", {"messages": HELLO, "max_tokens": 10}) as response:
        body = json.loads(response.read())
        assert response.headers["X-Fake-Name"] == "alpha"
    assert body["choices"][0]["message"]["content"] == "tok0 tok1 tok2"
    assert process.stats()["served"] == 1


def test_the_process_takes_config_at_run_time_and_refuses_nonsense(process):
    process.reset()
    assert process.configure(fail_status=500)["fail_status"] == 500
    with pytest.raises(urllib.error.HTTPError) as failed:
        post(process.url + "/v1/completions", {"prompt": "x"})
    assert failed.value.code == 500
    with pytest.raises(ValueError, match="unknown option"):
        process.configure(no_such_option=1)
    assert process.reset()["fail_status"] == 0


def test_two_processes_get_different_free_ports_and_stop_cleanly(process):
    other = FakeMemberProcess().start()
    proc = other.proc
    assert other.url != process.url
    other.stop()
    assert proc.returncode is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(other.url + "/openapi.json", timeout=2)


def test_the_process_exits_when_its_parent_goes_away():
    member = FakeMemberProcess().start()
    member.proc.stdin.close()  # what the OS does when the test process dies
    assert member.proc.wait(timeout=10) == 0
    member.stop()
