"""The SSE framing of members' streams (pool.gateway.sse): whole events, [DONE], token
counts and the usage event, whatever the chunk boundaries. Plain bytes, no server."""

from __future__ import annotations

import json

import pytest

from pool.gateway.sse import EventSplitter, ask_for_usage


def event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def token(text: str) -> bytes:
    return event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


FINISH = event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
USAGE = event({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}})
# A token whose text names a usage: escaped inside JSON, it is no usage key.
STREAM = token("1") + token(' "usage" ') + token("3") + FINISH + USAGE + b"data: [DONE]\n\n"


def relay(raw: bytes, size: int, **options) -> tuple[EventSplitter, bytes]:
    splitter = EventSplitter(**options)
    sent = b"".join(splitter.feed(raw[i : i + size]) for i in range(0, len(raw), size))
    return splitter, sent


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)])
def test_the_usage_event_is_read_and_dropped_for_a_client_that_did_not_ask(size):
    splitter, sent = relay(STREAM, size, pass_usage=False)
    assert sent == STREAM.replace(USAGE, b"")
    assert (splitter.prompt_tokens(), splitter.completion_tokens()) == (12, 3)
    assert splitter.ended


@pytest.mark.parametrize("size", [5, len(STREAM)])
def test_a_client_that_asked_for_the_usage_gets_it(size):
    splitter, sent = relay(STREAM, size, pass_usage=True)
    assert sent == STREAM
    assert splitter.completion_tokens() == 3


def test_without_usage_the_token_events_are_counted():
    raw = STREAM.replace(USAGE, b"")
    whole, _ = relay(raw, 9)
    cut, _ = relay(token("1") + token("2"), 9)  # the client left: no finish event yet
    assert (whole.completion_tokens(), whole.prompt_tokens()) == (3, None)
    assert cut.completion_tokens() == 2


def test_a_members_usage_that_is_not_a_count_is_ignored():
    splitter, _ = relay(token("1") + event({"choices": [], "usage": {"completion_tokens": -5}}), 100)
    assert splitter.completion_tokens() == 1


def test_the_member_is_asked_for_usage_and_the_clients_own_options_kept():
    mine, theirs = {"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}
    assert ask_for_usage(mine) is False and mine["stream_options"] == {"include_usage": True}
    assert ask_for_usage(theirs) is True
