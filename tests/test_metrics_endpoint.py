"""What the gateway measures shows at /metrics (Prometheus text, served by Django through
django-prometheus) and in pool.metrics.summary(), the dashboard's rolling window.

Prometheus series live for the whole test process, so these tests compare a scrape taken
before the requests with one taken after."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from pool import metrics
from pool.models import Member, states
from tests.asgi_driver import Call, request
from tests.gateway_kit import chat

SCRAPE_TOKEN = "prometheus-scrape-token-123"


@pytest.fixture(autouse=True)
def scrape_token(settings):
    """/metrics answers Prometheus only with the token its scrape config sends."""
    settings.VIBEADMIN_METRICS_TOKEN = SCRAPE_TOKEN


async def scrape() -> dict[tuple[str, frozenset], float]:
    """/metrics through the project's ASGI app, as Prometheus would fetch it."""
    from vibeadmin.asgi import application

    reply = await request(application, "GET", "/metrics", headers={"authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert reply.status == 200, reply.body[:300]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.body.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def serve_a_few(gateway, key: str) -> None:
    """Three whole answers of 8 tokens, one stream of 5, one unknown model."""
    for _ in range(3):
        assert (await request(gateway, "POST", "/v1/chat/completions", chat(), key=key)).status == 200
    stream = chat(stream=True, max_tokens=5)
    assert (await request(gateway, "POST", "/v1/chat/completions", stream, key=key)).status == 200
    assert (await request(gateway, "POST", "/v1/chat/completions", chat(model="nope"), key=key)).status == 404


async def test_requests_are_counted_by_member_and_status(gateway, fakes_in_loop, platform_key):
    await fakes_in_loop(1)
    before = await scrape()

    await serve_a_few(gateway, platform_key)

    after = await scrape()
    assert grew(before, after, "vibeadmin_requests_total", member="a", status="200") == 4
    assert grew(before, after, "vibeadmin_requests_total", member="-", status="404") == 1


async def test_latency_time_to_first_token_and_tokens_are_recorded_per_member(
    gateway, fakes_in_loop, platform_key
):
    await fakes_in_loop(1)
    before = await scrape()

    await serve_a_few(gateway, platform_key)

    after = await scrape()
    assert grew(before, after, "vibeadmin_request_latency_seconds_count", member="a") == 4
    assert grew(before, after, "vibeadmin_request_latency_seconds_bucket", member="a", le="+Inf") == 4
    assert grew(before, after, "vibeadmin_request_latency_seconds_sum", member="a") > 0
    assert grew(before, after, "vibeadmin_time_to_first_token_seconds_count", member="a") == 1  # the stream
    assert grew(before, after, "vibeadmin_tokens_total", member="a", kind="completion") == 3 * 8 + 5
    assert grew(before, after, "vibeadmin_tokens_total", member="a", kind="prompt") > 0


async def wait_for_scrape(check, what: str) -> dict:
    """Scrape until `check(samples)` holds: the gauges are sampled once a second."""
    for _ in range(100):
        samples = await scrape()
        if check(samples):
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"/metrics never showed {what}")


async def test_in_flight_and_queue_depth_show_a_busy_member_and_a_waiting_request(
    gateway, fakes_in_loop, platform_key
):
    await fakes_in_loop(1, hang=True)  # answers nothing until the client leaves
    await gateway.start()
    headers = {"authorization": f"Bearer {platform_key}", "content-type": "application/json"}
    body = json.dumps(chat()).encode()
    calls = [Call(gateway, "POST", "/v1/chat/completions", body, headers) for _ in range(2)]
    try:
        await wait_for_scrape(
            lambda s: (
                value(s, "vibeadmin_member_inflight", member="a") == 1
                and value(s, "vibeadmin_queue_depth") == 1
            ),
            "one request in flight on a and one waiting",
        )
    finally:
        for call in calls:
            call.disconnect()
        for call in calls:
            await call.done()
    await wait_for_scrape(
        lambda s: (
            value(s, "vibeadmin_member_inflight", member="a") == 0 and value(s, "vibeadmin_queue_depth") == 0
        ),
        "the member idle and the queue empty once both clients left",
    )


async def test_the_summary_for_the_dashboard_reflects_the_requests(
    gateway, fakes_in_loop, platform_key, monkeypatch
):
    monkeypatch.setattr(metrics, "window", metrics.Window())  # only this test's requests
    (fake,) = await fakes_in_loop(1)

    await serve_a_few(gateway, platform_key)
    fake.config.update({"fail_status": 500, "fail_times": 1})  # no other member to retry on: 502
    assert (await request(gateway, "POST", "/v1/chat/completions", chat(), key=platform_key)).status == 502

    summary = metrics.summary(60)
    assert summary["requests"] == 6
    assert summary["error_rate"] == pytest.approx(1 / 6)
    assert summary["tokens_per_s"] * 60 == pytest.approx(3 * 8 + 5)
    assert summary["p50_s"] is not None and summary["ttft_p50_s"] is not None
    assert set(summary["members"]) == {"a"}
    assert summary["members"]["a"]["rps"] * 60 == pytest.approx(4)
    assert summary["members"]["a"]["errors"] == 0


class LeavesAfterDone(Call):
    """A client that hangs up as soon as it has read [DONE], as the openai package does."""

    async def _send(self, message):
        await super()._send(message)
        if b"data: [DONE]" in message.get("body", b""):
            self.disconnect()


async def lingering_member(request: web.Request) -> web.StreamResponse:
    """Streams like llama-cpp-python's server, which ends the response a moment after [DONE]."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(llama_cpp_stream(["1", ",", " 2"], role_event=True))
    await asyncio.sleep(0.5)
    await response.write_eof()
    return response


async def test_a_stream_whose_client_hangs_up_after_done_is_recorded_as_served(gateway, platform_key):
    app = web.Application()
    app.router.add_post("/v1/chat/completions", lingering_member)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        await sync_to_async(Member.objects.create)(name="a", kind=states.REMOTE, url=url, state=states.READY)
        headers = {"authorization": f"Bearer {platform_key}", "content-type": "application/json"}
        before = await scrape()

        body = json.dumps(chat(stream=True)).encode()
        reply = await LeavesAfterDone(gateway, "POST", "/v1/chat/completions", body, headers).done()

        assert reply.events()[-1] == "[DONE]"
        after = await scrape()
        assert grew(before, after, "vibeadmin_requests_total", member="-", status="499") == 0
        assert grew(before, after, "vibeadmin_requests_total", member="a", status="200") == 1
        assert grew(before, after, "vibeadmin_tokens_total", member="a", kind="completion") == 3
    finally:
        await runner.cleanup()


def llama_cpp_stream(tokens: list[str], *, role_event: bool) -> bytes:
    """A chat stream as llama-cpp-python's server writes it (json.dumps, one event per token)."""

    def event(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return (
            b"data: "
            + json.dumps({"object": "chat.completion.chunk", "choices": [choice]}).encode()
            + b"\n\n"
        )

    opener = [event({"role": "assistant"})] if role_event else []
    return b"".join(
        [*opener, *(event({"content": t}) for t in tokens), event({}, "length"), b"data: [DONE]\n\n"]
    )


def test_the_role_only_event_that_opens_a_llama_cpp_stream_is_not_counted_as_a_token():
    from pool.gateway.sse import EventSplitter

    counts = []
    for role_event in (True, False):
        splitter = EventSplitter()
        raw = llama_cpp_stream(["1", ",", " 2"], role_event=role_event)
        for i in range(0, len(raw), 7):  # chunk boundaries fall anywhere
            splitter.feed(raw[i : i + 7])
        counts.append(splitter.events)
    assert counts[0] == counts[1]


async def test_requests_are_counted_by_key_and_strategy(gateway, fakes_in_loop, platform_key):
    await fakes_in_loop(1)
    before = await scrape()

    await serve_a_few(gateway, platform_key)

    after = await scrape()
    strategy = gateway.registry.policy.strategy

    def by_key(status: str) -> float:
        return grew(
            before,
            after,
            "vibeadmin_key_requests_total",
            key="algebra-school",
            strategy=strategy,
            status=status,
        )

    assert by_key("200") == 4
    assert by_key("404") == 1
