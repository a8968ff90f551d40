"""An honest wait: a streamed request that asked for it (`vibeadmin.progress`) hears its
place in the fair line and the line's predicted wait while it waits for a slot, as
`event: vibeadmin` lines, then its answer as usual. Off by default: plain OpenAI clients
see nothing new.

The reply starts (200, server-sent events) only once the request is really in line, so
refusals that come at once (the line full, a wait past the deadline) keep their status
and Retry-After; one that comes later (the deadline passed in line) is an error event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from pool.gateway import errors, sse
from pool.gateway.asgi_io import SSE_HEADERS

TICK_S = 0.5
EVENT = b"event: vibeadmin\ndata: "


def event(payload: dict) -> bytes:
    return EVENT + json.dumps(payload).encode() + sse.EVENT_END


class Progress:
    """Stands between the exchange and the client's `send`: tells the waiting request's
    place (from `where`, None while not in line) until the exchange starts its reply,
    whose head then becomes one more event (the reply has started already)."""

    def __init__(self, send, where: Callable[[], tuple[int, float | None] | None]) -> None:
        self._send = send
        self.where = where
        self.started = False  # the reply's head is sent
        self.relaying = False  # the exchange took over
        self.status = 200
        self.lock = asyncio.Lock()  # the ticker and the exchange never send at once

    async def send(self, message: dict) -> None:
        async with self.lock:
            if message["type"] == "http.response.start":
                self.relaying = True
                if not self.started:
                    self.started = True
                    await self._send(message)
                    return
                self.status = message["status"]
                await self._send(body(event({"started": _timing(message["headers"])})))
                return
            if self.started and self.status != 200 and message.get("body"):
                # A member's whole error reply, inside a stream that said 200 already.
                message = {**message, "body": sse.error_event(_as_error(self.status, message["body"]))}
            await self._send(message)

    async def tell(self) -> None:
        """Until the exchange takes over: each change of place or prediction, as an event."""
        last = None
        while not self.relaying:
            now = self.where()
            if now is not None:
                place, predicted = now
                shown = (place, None if predicted is None else round(predicted))
                if shown != last:
                    last = shown
                    await self._tell({"queue": {"place": place, "predicted_s": _seconds(predicted)}})
            await asyncio.sleep(TICK_S)

    async def _tell(self, payload: dict) -> None:
        async with self.lock:
            if self.relaying:
                return
            if not self.started:
                self.started = True
                await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await self._send(body(event(payload)))

    async def fail(self, error: errors.ApiError) -> None:
        """An error after the reply started: an event of OpenAI's shape, and the end."""
        async with self.lock:
            self.relaying = True
            await self._send(body(sse.error_event(error)))
            await self._send({"type": "http.response.body", "body": b""})


def body(data: bytes) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": True}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _timing(headers) -> dict:
    named = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
    try:
        queue_ms = float(named.get("x-vibeadmin-queue-ms", "0"))
    except ValueError:
        queue_ms = 0.0
    return {"queue_ms": queue_ms}


def _as_error(status: int, content: bytes) -> errors.ApiError:
    try:
        error = json.loads(content)["error"]
        message = str(error["message"])[:500]
    except (ValueError, KeyError, TypeError):
        message = f"the member answered {status}"
    return errors.ApiError(status, message, type="server_error" if status >= 500 else "invalid_request_error")
