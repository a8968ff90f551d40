"""Server-sent events as members stream them: cut into whole events, the end ([DONE])
found, tokens counted and the member's usage read, at a cost per chunk of a few byte
searches (every token of every stream passes through here).

A member that honours `stream_options.include_usage` (llama.cpp's llama-server) ends its
stream with an event of empty `choices` that holds the usage; llama-cpp-python 0.3's server
ignores the option, so there the token events are counted instead. The usage event is
passed on only to clients that asked for it themselves: OpenAI's clients read
`chunk.choices[0]` of every chunk unless they did.
"""

from __future__ import annotations

import json
import re

from pool.gateway.errors import ApiError

EVENT_END = b"\n\n"
DONE = b"data: [DONE]"
# llama-cpp-python opens a chat stream with an event that names the role and holds no token.
ROLE_ONLY = re.compile(rb'"delta":\s*\{\s*"role":\s*"assistant"\s*\}')
# As a key, not in a token's text: there JSON escapes the quotes (\"usage\").
USAGE_KEY = b'"usage"'
INCLUDE_USAGE = {"include_usage": True}


def error_event(error: ApiError) -> bytes:
    """A started stream cannot change its status: the error goes as an event of OpenAI's shape."""
    return b"data: " + error.body() + EVENT_END


def ask_for_usage(body: dict) -> bool:
    """Ask the member to end its stream with the usage; True if the client asked itself."""
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return True
    body["stream_options"] = {**options, **INCLUDE_USAGE} if isinstance(options, dict) else INCLUDE_USAGE
    return False


class EventSplitter:
    """Cuts a byte stream into whole events, counts the token events and keeps the usage."""

    __slots__ = ("pending", "events", "usage", "pass_usage", "ended")

    def __init__(self, *, pass_usage: bool = True) -> None:
        self.pending = b""
        self.events = 0
        self.usage: dict | None = None
        self.pass_usage = pass_usage  # False: the gateway asked for it, the client did not
        self.ended = False

    def feed(self, chunk: bytes) -> bytes:
        """The whole events in `chunk` and before it (b"" while an event is incomplete)."""
        data = self.pending + chunk if self.pending else chunk
        end = data.rfind(EVENT_END)
        if end < 0:
            self.pending = data
            return b""
        whole, self.pending = data[: end + 2], data[end + 2 :]
        self.events += whole.count(b"data: {")
        if b'"role"' in whole:  # the role-only event is no token: it counted one too many
            self.events -= len(ROLE_ONLY.findall(whole))
        if USAGE_KEY in whole:
            whole = self.read_usage(whole)
        if DONE in whole:
            self.ended = True
        return whole

    def read_usage(self, whole: bytes) -> bytes:
        """Keep the usage of the event that holds it; drop a usage-only event the client did
        not ask for. Runs once a stream, and parses only the events that name a usage."""
        at = whole.find(USAGE_KEY)
        while at >= 0:
            before = whole.rfind(EVENT_END, 0, at)
            start = before + 2 if before >= 0 else 0
            end = whole.find(EVENT_END, at) + 2  # the key is inside a whole event: its end follows
            payload = _json(whole[start:end].rstrip())
            usage = payload.get("usage") if payload is not None else None
            if payload is not None and isinstance(usage, dict):
                self.usage = usage
                if not payload.get("choices"):
                    self.events -= 1  # an event of its own, no token
                    if not self.pass_usage:
                        whole, end = whole[:start] + whole[end:], start
            at = whole.find(USAGE_KEY, end)
        return whole

    def completion_tokens(self) -> int:
        """The member's count where it gave one, else the token events seen (the last event
        of a whole stream carries finish_reason only)."""
        counted = whole_number((self.usage or {}).get("completion_tokens"))
        if counted is not None:
            return counted
        return max(0, self.events - 1) if self.ended else self.events

    def prompt_tokens(self) -> int | None:
        return whole_number((self.usage or {}).get("prompt_tokens"))


def _json(event: bytes) -> dict | None:
    if not event.startswith(b"data: {"):
        return None
    try:
        payload = json.loads(event[6:])
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def whole_number(value) -> int | None:
    """A member's count, if it is one (its reply is as untrusted as any input)."""
    return value if type(value) is int and 0 <= value < 1 << 31 else None
