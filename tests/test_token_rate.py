"""Tokens per second as the pool produces them: a stream's tokens counted as they pass, a
whole answer's spread over the time it was generated, so the chart never draws an answer as
a lump in the second it ended, and the chart and the figure above it are the same numbers.

The load runs through the real gateway on fake members (testing/fake_member.py) whose pace
is known: each makes one token every `tpt` seconds, one answer at a time."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from pool import metrics
from pool.dashboard import snapshot
from tests.asgi_driver import request
from tests.gateway_kit import chat

TPT, TOKENS = 0.02, 100  # a member makes at most 50 tokens a second; an answer takes 2 s or more
ANSWERS = 4


@pytest.fixture(autouse=True)
def empty_window(monkeypatch):
    monkeypatch.setattr(metrics, "window", metrics.Window())
    metrics.take_revised()


def test_a_whole_answer_is_spread_over_the_seconds_it_was_generated_in():
    now = time.time() // 1 * 1.0
    metrics.add_tokens("a", 100, now - 10, now)
    seconds = {s.at: s.completion_tokens for s in metrics.window.seconds}
    assert seconds == pytest.approx({t: 10.0 for t in range(int(now) - 10, int(now))} | {int(now): 0.0})
    assert metrics.take_revised() == int(now) - 10  # the snapshot resends what was drawn already


def test_a_streamed_token_counts_in_the_second_it_passed():
    metrics.count_streamed("a", 3, now=1000.2)
    metrics.count_streamed("a", 2, now=1001.7)
    assert [(s.at, s.completion_tokens, s.by_member["a"].tokens) for s in metrics.window.seconds] == [
        (1000, 3, 3),
        (1001, 2, 2),
    ]


def test_an_answer_older_than_the_window_is_kept_to_the_window():
    short = metrics.Window(seconds=5)
    short.current(100)
    short.current(104)
    assert short.at(102).at == 102 and [s.at for s in short.seconds] == [100, 102, 104]
    short.current(106)
    short.current(107)  # five seconds held: full
    assert short.at(99) is None  # older than all it holds
    assert short.at(101).at == 101  # in place; the oldest goes, as it would for a new second
    assert [s.at for s in short.seconds] == [101, 102, 104, 106, 107]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_chart_holds_the_pools_real_pace_and_the_figure_is_the_charts_mean(
    gateway, fake_members, platform_key, stream
):
    await sync_to_async(fake_members)(2, tpt=TPT, max_tokens=TOKENS, ttft=TPT)
    body = chat(max_tokens=TOKENS, stream=stream)
    started = time.time()
    replies = await asyncio.gather(
        *(request(gateway, "POST", "/v1/chat/completions", body, key=platform_key) for _ in range(ANSWERS))
    )
    assert all(r.status == 200 for r in replies)
    now = time.time()

    points = snapshot.chart_history(now + 1)
    drawn = [p for p in points if p["t"] >= int(started)]
    # One answer at a time per member: never more than 1 / TPT tokens a second each, 2 / TPT
    # in all (counted when they ended, an answer's 100 tokens would be one second's, 200 with
    # both members'); a stream's chunks may cross a second's edge late, hence the margin.
    margin = 1.25 if stream else 1.0
    assert max(p["tokens"] for p in drawn) <= 2 / TPT * margin + 0.05, drawn
    assert max(v for p in drawn for v in p["by_member"].values()) <= 1 / TPT * margin + 0.05
    assert sum(p["tokens"] for p in drawn) == pytest.approx(ANSWERS * TOKENS, abs=0.05 * len(drawn))
    # The figure above the chart is the chart's last minute, per second.
    figure = float((await sync_to_async(snapshot.totals)(now + 1))["tokens"])
    last_minute = sum(p["tokens"] for p in points[-60:])
    assert figure == pytest.approx(last_minute / 60, abs=0.05)


def test_the_snapshot_resends_the_seconds_a_whole_answer_changed_once():
    now = float(int(time.time()))
    metrics.add_tokens("a", 30, now - 3, now)
    revised = snapshot.revised_tokens(now + 1)
    assert [(p["t"], p["tokens"], p["by_member"]) for p in revised] == [
        (int(now) - 3, 10.0, {"a": 10.0}),
        (int(now) - 2, 10.0, {"a": 10.0}),
        (int(now) - 1, 10.0, {"a": 10.0}),
        (int(now), 0.0, {}),
    ]
    assert snapshot.revised_tokens(now + 1) == []  # sent once
