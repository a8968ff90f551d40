"""The students' solve page: the page itself (Django test client) and its stream,
/solve/api/stream, in-process through the ASGI app against fake members."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.staticfiles import finders
from django.utils.html import escape

import vibeadmin.asgi
from pool.gateway.app import SOLVE_PATH
from pool.gateway.prompts import is_mainly_cjk
from pool.models import PoolSettings
from pool.views.solve import examples
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat, set_policy
from tests.helpers import wait_until

VENDOR_FILES = [
    "vendor/marked/marked.umd.js",
    "vendor/dompurify/purify.min.js",
    "vendor/katex/katex.min.js",
    "vendor/katex/katex.min.css",
    "vendor/highlight/highlight.min.js",
    "vendor/highlight/styles/github.min.css",
    "js/solve.js",
    "css/solve.css",
]


def solve(problem: str = "What is 17 * 23?", **extra) -> dict:
    return {"problem": problem, "task": "math", "max_tokens": 5, **extra}


def text_of(events: list[str]) -> str:
    return "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events if e != "[DONE]")


# --- the page ------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_anonymous_student_gets_the_page_with_its_examples(client):
    page = client.get("/solve/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="problem"' in html
    assert 'value="math"' in html and 'value="code"' in html
    for example in examples():
        assert f'data-problem="{escape(example["problem"])}"' in html


@pytest.mark.django_db
def test_the_page_knows_the_servers_limits_and_where_to_stream_from(client, settings):
    settings.VIBEADMIN_MAX_PROMPT_CHARS = 1234
    settings.VIBEADMIN_MAX_TOKENS = 4096
    settings.VIBEADMIN_DEFAULT_MAX_TOKENS = 1024
    page = client.get("/solve/")
    config = page.context["solve_config"]
    assert (config["streamUrl"], config["maxChars"]) == (SOLVE_PATH, 1234)
    assert config["maxConversationChars"] == 1234  # the Routing page's 8000, under the server's limit
    html = page.content.decode()
    assert '"maxChars": 1234' in html  # json_script, read by solve.js
    assert "0 / 1234 characters" in html
    assert page.context["budgets"] == [512, 1024, 2048]  # the Routing page's ceiling, 2048 by default
    assert '<option value="1024" selected>' in html


@pytest.mark.django_db
def test_the_pages_scripts_and_styles_are_served_from_npm_and_the_project(client):
    html = client.get("/solve/").content.decode()
    for name in VENDOR_FILES:
        assert f"/static/{name}" in html, name
        assert finders.find(name), f"{name} is not found by the static files finders (npm install?)"


def test_the_examples_cover_both_tasks_easy_and_hard_and_chinese():
    rows = examples()
    assert {row["task"] for row in rows} == {"math", "code"}
    assert {"easy", "hard"} <= {row["difficulty"] for row in rows}
    assert any(is_mainly_cjk(row["problem"]) for row in rows)
    assert all(row["problem"].strip() and row["title"] for row in rows)


# --- the stream ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_problem_streams_back_through_the_asgi_app(gateway, fake_members, monkeypatch):
    (fake,) = await sync_to_async(fake_members)(1)
    monkeypatch.setattr(vibeadmin.asgi, "gateway", gateway)  # the app routes the stream to this gateway
    reply = await request(vibeadmin.asgi.application, "POST", SOLVE_PATH, solve(task="code"))
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "text/event-stream"
    events = reply.events()
    assert events[-1] == "[DONE]"
    assert text_of(events) == "tok0 tok1 tok2 tok3 tok4"
    sent = fake.stats()["last_request"]
    assert sent["stream"] is True and sent["max_tokens"] == 5
    assert sent["messages"][0] == {"role": "system", "content": PoolSettings().prompt_code}


@pytest.mark.asyncio
async def test_a_chinese_problem_is_sent_with_the_language_hint(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1)
    reply = await request(gateway, "POST", SOLVE_PATH, solve("求方程 x^2 - 7x + 12 = 0 的所有实数解。"))
    assert reply.status == 200
    user = fake.stats()["last_request"]["messages"][-1]["content"]
    assert user.endswith(PoolSettings().language_hint)


@pytest.mark.asyncio
async def test_stop_on_the_page_cancels_the_request_on_the_member(gateway, fake_members):
    (fake,) = await sync_to_async(fake_members)(1, tpt=0.05, max_tokens=1000)
    call = Call(gateway, "POST", SOLVE_PATH, json.dumps(solve(max_tokens=1000)).encode())
    await call.first_chunk.wait()
    call.disconnect()  # what the browser does when the page's AbortController aborts the fetch
    await call.done()
    stats = await sync_to_async(wait_until)(
        lambda: (s := fake.stats())["cancelled"] == 1 and s, 5, what="cancel"
    )
    assert stats["in_flight"] == 0 and stats["served"] == 0


@pytest.mark.asyncio
async def test_an_empty_or_too_long_problem_is_refused_with_400(gateway, settings):
    settings.VIBEADMIN_MAX_PROMPT_CHARS = 50
    empty = await request(gateway, "POST", SOLVE_PATH, solve("   "))
    assert empty.status == 400
    assert empty.json()["error"]["param"] == "problem"
    long = await request(gateway, "POST", SOLVE_PATH, solve("x" * 51))
    assert long.status == 400
    assert long.json()["error"]["code"] == "prompt_too_long"
    assert "50 characters" in long.json()["error"]["message"]


@pytest.mark.asyncio
async def test_a_busy_pool_answers_503_with_retry_after_once_the_queue_deadline_passes(
    gateway, fake_members, platform_key
):
    await sync_to_async(fake_members)(1, ttft=2.0)
    await sync_to_async(set_policy)(queue_timeout_s=0.3)
    # A platform's request, not a student's: students' own share of the pool is test_solve_caps.py's.
    first = Call(
        gateway,
        "POST",
        "/v1/chat/completions",
        json.dumps(chat(stream=True)).encode(),
        {"authorization": f"Bearer {platform_key}", "content-type": "application/json"},
    )
    await first.started.wait()  # the only member is busy with it
    second = await request(gateway, "POST", SOLVE_PATH, solve(), client="10.0.0.2")
    assert second.status == 503
    assert second.json()["error"]["code"] == "queue_timeout"
    assert int(second.headers["retry-after"]) >= 1
    first.disconnect()
    await first.done()


@pytest.mark.asyncio
async def test_a_student_over_the_per_address_limit_gets_429_with_retry_after(gateway, fake_members):
    await sync_to_async(fake_members)(1)
    await sync_to_async(set_policy)(solve_rpm=2)
    for _ in range(2):
        assert (await request(gateway, "POST", SOLVE_PATH, solve())).status == 200
    refused = await request(gateway, "POST", SOLVE_PATH, solve())
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "rate_limit_address"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    other = await request(gateway, "POST", SOLVE_PATH, solve(), client="10.0.0.9")
    assert other.status == 200  # the limit is per address
