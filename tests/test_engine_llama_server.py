"""llama.cpp's own server as a member, against REAL llama-server processes (the binary that
`make install` builds, bin/build-llama-server) serving the small gemma GGUF (named, not the default): its
lifecycle under the supervisor, its probe (503 while loading, then 200), its key, and its
slots in use at once through the gateway, without cutting a running answer short."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
from asgiref.sync import sync_to_async

from pool.models import Member, states
from pool.services.members import member_add, member_stop
from pool.supervisor import health, process
from testing.helpers import fetch
from tests.asgi_driver import Call
from tests.helpers import manage, reconcile_until, wait_until
from tests.real_members import chat_request, serving_one_member, start_llama_server

pytestmark = [pytest.mark.real_model]

LOAD_TIMEOUT_S = 120
KEY = "hand-started-key"
LONG = "Write the numbers from one to two hundred in words, separated by commas."


@pytest.fixture
def by_hand(built_llama_server, gemma_model):
    """`by_hand(parallel=4, api_key=...)` -> its URL, once /health answers 200."""
    children = []

    def start(**options) -> str:
        child, url = start_llama_server(gemma_model.path, **options)
        children.append(child)
        wait_until(
            lambda: health.probe(url, 1.0, "/health").ok,
            LOAD_TIMEOUT_S,
            interval=0.1,
            what="the hand-started llama-server to load its model",
        )
        return url

    yield start
    for child in children:
        child.kill()
        child.wait()


def get(url: str, key: str = "") -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


# --- the probe ----------------------------------------------------------------------------


def test_health_answers_503_while_the_model_loads_then_200(built_llama_server, gemma_model):
    child, url = start_llama_server(gemma_model.path, parallel=2)
    statuses: list[int] = []
    try:
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline and 200 not in statuses:
            result = health.probe(url, 1.0, "/health")
            if result.status:
                statuses.append(result.status)
                assert result.ok == (result.status == 200)
            time.sleep(0.005)
    finally:
        child.kill()
        child.wait()

    assert statuses[-1] == 200
    assert set(statuses) <= {503, 200}
    assert 503 in statuses  # the server listens before its model is loaded, and says so


# --- a local member under the supervisor --------------------------------------------------


@pytest.mark.django_db
def test_a_local_llama_server_member_starts_with_its_slots_and_key_and_stops(
    make_supervisor, gemma_model, built_llama_server
):
    supervisor = make_supervisor(model=gemma_model, command_for=process.member_command)
    member = member_add(engine=states.LLAMA_SERVER, slots=4)

    reconcile_until(
        supervisor,
        lambda: fetch(member).state == states.READY,
        LOAD_TIMEOUT_S,
        what="the llama-server member to be ready",
    )

    cmdline = psutil.Process(member.pid).children()[0].cmdline()  # the server, under its watchdog
    assert cmdline[0] == str(built_llama_server)
    assert cmdline[cmdline.index("--parallel") + 1] == "4"
    assert cmdline[cmdline.index("--ctx-size") + 1] == str(4 * member.n_ctx)  # n_ctx is per slot
    assert member.api_key not in " ".join(cmdline)  # the key travels in its environment
    status, props = get(member.base_url + "/props", member.api_key)
    assert status == 200 and props["total_slots"] == 4
    assert member.max_inflight == 4
    assert chat_request(member.base_url, "") == 401  # around the gateway: refused
    assert chat_request(member.base_url, member.api_key) == 200

    member_stop(member=member)
    reconcile_until(supervisor, lambda: fetch(member).state == states.STOPPED, 30, what="stopped")
    assert not process.is_alive(member.pid or 0)


# --- a remote llama-server started by hand ------------------------------------------------


@pytest.mark.django_db
def test_a_remote_llama_server_started_by_hand_becomes_ready_with_its_slots_read(supervisor, by_hand):
    url = by_hand(parallel=4, api_key=KEY)
    member = member_add(url=url, api_key=KEY)

    reconcile_until(
        supervisor, lambda: fetch(member).state == states.READY, 30, what="the remote to be ready"
    )

    assert member.max_inflight == 4
    assert member.engine == states.LLAMA_SERVER


@pytest.mark.django_db
def test_a_remote_llama_server_without_its_key_is_unhealthy_and_says_why(supervisor, by_hand):
    url = by_hand(parallel=1, api_key=KEY)
    member = member_add(url=url)

    reconcile_until(supervisor, lambda: fetch(member).state == states.UNHEALTHY, 30, what="unhealthy")

    assert "HTTP 401 from /props" in member.last_error


# --- slots through the gateway ------------------------------------------------------------


def gateway_call(gateway, key: str, max_tokens: int) -> Call:
    body = {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": LONG}],
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0.8,
    }
    return Call(
        gateway,
        "POST",
        "/v1/chat/completions",
        json.dumps(body).encode(),
        {"authorization": f"Bearer {key}", "content-type": "application/json"},
    )


def watch_slots(url: str, key: str, stop: threading.Event, seen: list[int]) -> None:
    """The most slots llama-server's /slots showed processing at once, while `stop` is unset."""
    while not stop.is_set():
        status, slots = get(url + "/slots", key)
        if status == 200:
            seen.append(sum(1 for slot in slots if slot.get("is_processing")))
        time.sleep(0.02)


@pytest.mark.asyncio
async def test_four_answers_on_a_four_slot_member_run_at_once_and_none_is_cut_short(
    gateway, by_hand, platform_key
):
    url = await sync_to_async(by_hand)(parallel=4, api_key=KEY)
    await sync_to_async(Member.objects.create)(
        name="gpu1",
        kind=states.REMOTE,
        url=url,
        state=states.READY,
        engine=states.LLAMA_SERVER,
        max_inflight=4,
        api_key=KEY,
    )
    await gateway.start()
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=watch_slots, args=(url, KEY, stop, seen), daemon=True)
    watcher.start()
    try:
        first = gateway_call(gateway, platform_key, 48)
        await first.first_chunk.wait()  # the first answer is streaming ...
        others = [gateway_call(gateway, platform_key, 48) for _ in range(3)]  # ... when three more arrive
        replies = [await call.done(60) for call in [first, *others]]  # a busy machine is slow, not wrong
    finally:
        stop.set()
        watcher.join()

    assert [r.status for r in replies] == [200] * 4
    assert max(seen) == 4  # all four slots busy together: the member batched them
    for reply in replies:
        assert reply.events()[-1] == "[DONE]"
        assert finish_reasons(reply) in (["length"], ["stop"])  # each ended once, not cut
    assert finish_reasons(replies[0]) == ["length"]  # all 48 tokens, though three more came


def finish_reasons(reply) -> list[str]:
    events = [json.loads(e) for e in reply.events() if e != "[DONE]"]
    return [c["finish_reason"] for e in events for c in e.get("choices") or [] if c.get("finish_reason")]


# --- the product path: `manage.py serve` with its default engine, and the openai client ----


@pytest.fixture(scope="module")
def served(migrated_template, gemma_model, built_llama_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama-server-serve")
    with serving_one_member(folder, migrated_template, gemma_model.path, VIBEADMIN_SLOTS="4") as served:
        yield served


def test_the_default_pool_runs_llama_server_members_with_slots(served):
    status = json.loads(manage("pool", "status", "--json", data_dir=served.data_dir).stdout)

    assert [(m["name"], m["engine"], m["slots"], m["state"]) for m in status] == [
        ("m1", "llama-server", 4, "ready")
    ]


def test_the_openai_client_streams_through_the_gateway_from_a_llama_server_member(served):
    client = served.client()

    reply = client.chat.completions.create(
        model="vibethinker",
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        max_tokens=16,
        temperature=0,
    )
    chunks = list(
        client.chat.completions.create(
            model="vibethinker",
            messages=[{"role": "user", "content": LONG}],
            max_tokens=16,
            temperature=0,
            stream=True,
        )
    )

    assert reply.choices[0].message.content.strip() and 0 < reply.usage.completion_tokens <= 16
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3


def test_the_whole_prompt_reaches_a_llama_server_member(served):
    """The member's own prompt count grows with the prompt. With Jinja on (llama-server's
    default), `--chat-template gemma` was read as a template's text: every chat became 3
    tokens, system prompt and question dropped, and nothing was left to cache."""
    client = served.client()
    system = "You are a careful math tutor."

    def prompt_tokens(question: str) -> int:
        reply = client.chat.completions.create(
            model="vibethinker",
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
            max_tokens=1,
            temperature=0,
        )
        return reply.usage.prompt_tokens

    short, long = prompt_tokens("Hi."), prompt_tokens(LONG)
    assert short > len(system.split())
    assert long > short + len(LONG.split()) // 2


def test_a_llama_server_member_reuses_its_cache_for_a_repeated_system_prompt(served):
    """What prompt-cache affinity relies on: the second request with the same system prompt
    has most of its prompt from the member's cache (llama-server's own count), as the
    gemma GGUF's sliding-window cache allows only with --swa-full."""
    client = served.client()
    system = "You are a careful tutor. " + " ".join(f"Rule {i}: check step {i} twice." for i in range(40))

    def cached_tokens(question: str):
        reply = client.chat.completions.create(
            model="vibethinker",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            max_tokens=4,
            temperature=0,
        )
        return reply.usage.prompt_tokens, reply.usage.prompt_tokens_details.cached_tokens

    first_prompt, first_cached = cached_tokens("What is 2 + 2?")
    _, again_cached = cached_tokens("Name a prime above 100.")
    assert first_prompt > 200 and first_cached < first_prompt // 2
    assert again_cached > first_prompt // 2


def test_a_request_straight_to_the_members_port_gets_401(served):
    status = json.loads(manage("pool", "status", "--json", data_dir=served.data_dir).stdout)

    assert chat_request(status[0]["url"], "") == 401
    assert chat_request(status[0]["url"], served.key) == 401  # a platform's key is no member's key
