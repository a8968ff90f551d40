"""The pooled HTTP client to members (aiohttp's: httpx's async pool is many times slower
under concurrency, httpx issue 3215) and the relay of a streamed reply.

A streamed reply is relayed event by event, never a partial event: if a member dies
mid-stream, the client's last event is whole and the error event after it parses.
"""

from __future__ import annotations

import re

import aiohttp
from django.conf import settings

EVENT_END = b"\n\n"
DONE = b"data: [DONE]"
# llama-cpp-python opens a chat stream with an event that names the role and holds no token.
ROLE_ONLY = re.compile(rb'"delta":\s*\{\s*"role":\s*"assistant"\s*\}')

_sessions: dict[int, aiohttp.ClientSession] = {}


def session() -> aiohttp.ClientSession:
    """One pooled session per event loop (tests run several loops in one process)."""
    import asyncio

    loop = asyncio.get_running_loop()
    current = _sessions.get(id(loop))
    if current is None or current.closed or current._loop is not loop:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(
            total=settings.VIBEADMIN_UPSTREAM_TIMEOUT_S, sock_connect=settings.VIBEADMIN_CONNECT_TIMEOUT_S
        )
        current = _sessions[id(loop)] = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
    return current


class EventSplitter:
    """Cuts a byte stream into whole server-sent events and counts the token events."""

    def __init__(self) -> None:
        self.pending = b""
        self.events = 0

    def feed(self, chunk: bytes) -> bytes:
        data = self.pending + chunk
        end = data.rfind(EVENT_END)
        if end < 0:
            self.pending = data
            return b""
        whole, self.pending = data[: end + 2], data[end + 2 :]
        self.events += whole.count(b"data: {")
        if b'"role"' in whole:  # the role-only event is no token: it counted one too many
            self.events -= len(ROLE_ONLY.findall(whole))
        return whole


async def close() -> None:
    """Close this event loop's session (at shutdown, and after each test's loop)."""
    import asyncio

    current = _sessions.pop(id(asyncio.get_running_loop()), None)
    if current is not None:
        await current.close()
