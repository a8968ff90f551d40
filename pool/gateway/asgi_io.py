"""The few raw-ASGI moves the gateway needs: read a capped body, send JSON, stream SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from pool.gateway.errors import ApiError

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # so an nginx in front does not hold tokens back
]


class ClientGone(Exception):
    """The client disconnected while we read its request."""


async def read_body(receive, limit: int, deadline_s: float | None = None) -> bytes:
    """The whole body, at most `limit` bytes (413 beyond), within `deadline_s` (408 after:
    a client sending a byte now and then must not hold its connection and task for ever)."""
    try:
        async with asyncio.timeout(deadline_s):
            return await _read_body(receive, limit)
    except TimeoutError:
        raise ApiError(
            408, f"the request body did not arrive within {deadline_s:g} s", code="request_timeout"
        ) from None


async def _read_body(receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413,
                f"request body is larger than the {limit} bytes this gateway accepts",
                code="request_too_large",
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_bytes(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send, status: int, payload: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send_bytes(send, status, json.dumps(payload).encode(), [*JSON_HEADERS, *headers])


async def send_error(send, error: ApiError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send_bytes(send, error.status, error.body(), [*JSON_HEADERS, *error.headers(), *headers])


def header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def header_joined(scope, name: bytes) -> str:
    """Every line of a header that may come more than once, joined with commas as HTTP
    says they mean (RFC 9110 5.3), and as Django's META holds them."""
    return ",".join(value.decode("latin-1") for key, value in scope["headers"] if key == name)
