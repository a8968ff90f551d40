"""The gateway in front of one real llama.cpp member (the small gemma GGUF, named: not the default), through the
official `openai` client: `manage.py serve` as an operator runs it, with VIBEADMIN_MEMBERS=1
and the llama-cpp-python engine.
Answers are short (max_tokens <= 32) so the whole file runs in seconds once the model loads."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import manage, wait_until
from tests.real_members import Served, serving_one_member

pytestmark = pytest.mark.real_model

COUNTING = [{"role": "user", "content": "Count from 1 to 50, separated by commas."}]


METRICS_TOKEN = "prometheus-scrape-token-123"


@pytest.fixture(scope="module")
def served(migrated_template, gemma_model, tmp_path_factory):
    # The small gemma GGUF, named explicitly (the default is the 1.5B). Set this
    # way, the model id clients see is the file's stem (pool.model_file.chosen_model).
    with serving_one_member(
        tmp_path_factory.mktemp("real-model"),
        migrated_template,
        gemma_model.path,
        VIBEADMIN_METRICS_TOKEN=METRICS_TOKEN,
        # llama-cpp-python's member, whose interrupts this file checks; llama-server's is
        # in test_engine_llama_server.py.
        VIBEADMIN_ENGINE="llama-cpp-python",
    ) as served:
        status = json.loads(manage("pool", "status", "--json", data_dir=served.data_dir).stdout)
        assert [(m["name"], m["state"]) for m in status] == [("m1", "ready")]
        yield served


def test_the_model_is_served_under_its_files_name(served):
    assert [m.id for m in served.client().models.list()] == [served.model_id, "vibethinker"]


def test_a_real_member_answers_with_content_and_usage(served):
    reply = served.client().chat.completions.create(
        model="vibethinker",
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        max_tokens=16,
        temperature=0,
    )

    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 16


def test_a_real_member_streams_its_answer_in_several_deltas(served):
    stream = served.client().chat.completions.create(
        model="vibethinker", messages=COUNTING, max_tokens=16, temperature=0, stream=True
    )

    chunks = list(stream)

    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3, deltas
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_a_request_that_reaches_the_member_mid_stream_does_not_cut_the_stream_short(served):
    # With the default capacity of one, the gateway would queue the second request until
    # the stream ends. Capacity two sends it on to llama.cpp while the stream runs, so what
    # keeps the stream whole is the member's `--interrupt_requests false` (docs/architecture.md: with
    # interrupts on, the stream ends early with [DONE] and no finish_reason). No operator
    # surface sets max_inflight yet, hence the direct write.
    with sqlite3.connect(served.data_dir / "db.sqlite3") as db:
        db.execute("UPDATE pool_member SET max_inflight = 2")
    time.sleep(1.0)  # several gateway refreshes (VIBEADMIN_REFRESH_S=0.1)
    client = served.client()
    stream = client.chat.completions.create(
        model="vibethinker", messages=COUNTING, max_tokens=32, temperature=0, stream=True
    )
    chunks = iter(stream)
    first = [next(chunks)]
    while not (first[-1].choices and first[-1].choices[0].delta.content):
        first.append(next(chunks))

    second = client.chat.completions.with_raw_response.create(
        model="vibethinker",
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        max_tokens=8,
        temperature=0,
    )

    assert second.headers["x-vibeadmin-queue-ms"] == "0.0"  # it went to the member, not the queue
    assert second.parse().choices[0].message.content.strip()
    rest = list(chunks)
    deltas = [c.choices[0].delta.content for c in first + rest if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3, deltas
    assert rest[-1].choices[0].finish_reason in ("stop", "length"), "the stream was cut short"


def test_content_sent_as_text_parts_reaches_the_model_as_its_text(served):
    # llama.cpp's chat formats read string content only: parts must not arrive as an empty turn.
    client = served.client()
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "2 + 2?"}]

    as_text = client.chat.completions.create(
        model="vibethinker", messages=[{"role": "user", "content": "What is 2 + 2?"}], max_tokens=1
    )
    as_parts = client.chat.completions.create(
        model="vibethinker", messages=[{"role": "user", "content": parts}], max_tokens=1
    )

    assert as_parts.usage.prompt_tokens == as_text.usage.prompt_tokens


def completion_tokens_counted(served: Served) -> float:
    """The gateway's own count of completion tokens for the member, from its /metrics."""
    scrape = urllib.request.Request(
        served.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(scrape, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vibeadmin_tokens_total" and sample.labels == {
                "member": "m1",
                "kind": "completion",
            }:
                return sample.value
    return 0.0


def test_a_streamed_answers_tokens_are_counted_exactly(served):
    # llama.cpp sends no usage in a stream: the gateway counts the token events itself.
    before = completion_tokens_counted(served)

    chunks = list(
        served.client().chat.completions.create(
            model="vibethinker", messages=COUNTING, max_tokens=16, temperature=0, stream=True
        )
    )

    assert chunks[-1].choices[0].finish_reason == "length"  # so exactly 16 tokens were generated
    # The gateway records a request just after its last byte: wait for that, then compare.
    counted = wait_until(
        lambda: completion_tokens_counted(served) - before, 10, what="the stream to be recorded"
    )
    assert counted == 16


def key_usage(served: Served) -> tuple[int, int]:
    """The key's prompt and completion tokens as the API keys page shows them (the database)."""
    with sqlite3.connect(served.data_dir / "db.sqlite3") as db:
        row = db.execute(
            "SELECT prompt_tokens, completion_tokens FROM pool_apikey WHERE name = 'algebra-school'"
        )
        return row.fetchone()


def settled_usage(served: Served) -> tuple[int, int]:
    """The key's usage once earlier requests' usage has been written (every 2 s)."""
    previous = None
    while (current := key_usage(served)) != previous:
        previous = current
        time.sleep(2.5)
    return current


def test_llama_cpp_python_ignores_stream_options_so_the_gateway_counts_a_streams_tokens(served):
    # Seen here: llama-cpp-python 0.3.36 accepts stream_options.include_usage and sends no
    # usage event. The client asks too, so the gateway would pass one on if it came.
    before = settled_usage(served)

    chunks = list(
        served.client().chat.completions.create(
            model="vibethinker",
            messages=COUNTING,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert chunks[-1].choices[0].finish_reason == "length"  # so exactly 16 tokens were generated
    assert all(c.usage is None for c in chunks)
    used = wait_until(
        lambda: key_usage(served)[1] > before[1] and key_usage(served), 10, what="usage to be flushed"
    )
    assert used[1] - before[1] == 16
    assert used[0] > before[0]  # its prompt, estimated where the member does not say
