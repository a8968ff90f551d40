"""Collapsed in-flight requests: identical requests that arrive while one generation for
their cache key is under way wait for it instead of starting their own.

A Flight is that one generation. It runs in a task of its own (the exchange streams into
the flight, not into a client), and every request for the key, the first one included,
is a subscriber that renders the flight's deltas in its own shape: streamed (what was
generated so far at once, then the rest live) or whole at the end. The first client
leaving does not stop the answer others wait for; the generation is cancelled only when
no subscriber is left. If it fails before a subscriber has been sent anything, that
subscriber goes on its own (a fresh flight); one that already has part of a stream gets
the error event, as a live stream would.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from pool.gateway import errors
from pool.gateway.asgi_io import JSON_HEADERS, SSE_HEADERS
from pool.gateway.replies import DELTA_FIELDS, Answer, StreamWriter, whole_reply
from pool.gateway.sse import EVENT_END, error_event

log = logging.getLogger("pool.gateway")


class Served(Enum):
    WHOLE = "whole"  # the subscriber got the whole answer
    NOTHING = "nothing"  # the flight failed before anything was sent: go on alone
    CUT = "cut"  # the flight failed mid-stream: the subscriber got the error event


class Flight:
    """One generation that any number of identical requests share."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.answer = Answer()
        self.status = 0  # the member's reply status (0 until it answers)
        self.headers: list[tuple[bytes, bytes]] = []
        self.error_reply = b""  # a member's non-200 reply, for the first request
        self.error: errors.ApiError | None = None  # the gateway's own refusal (queue full...)
        self.broken = False  # an error event in the stream
        self.done = False
        self.subscribers = 0
        self.task: asyncio.Task | None = None
        self._changed = asyncio.Event()

    @property
    def ok(self) -> bool:
        """Ended with an answer (by itself or at max_tokens), not an error."""
        return self.done and self.status == 200 and not self.broken and self.answer.finish_reason is not None

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    # --- the exchange's `send`: the member's stream goes into the flight ---------------------

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if (k.startswith(b"x-vibeadmin-") and k != b"x-vibeadmin-cache") or k == b"retry-after"
            ]
            self.notify()  # streams send their headers now, as a live stream does
            return
        body = message.get("body", b"")
        if not body:
            return
        if self.status != 200:
            self.error_reply += body
            return
        for event in body.split(EVENT_END):
            self.read_event(event.strip())
        self.notify()

    def read_event(self, event: bytes) -> None:
        if not event.startswith(b"data: {"):
            return  # [DONE], comments, blank
        try:
            payload = json.loads(event[6:])
        except ValueError:
            self.broken = True
            return
        if not isinstance(payload, dict) or "error" in payload:
            self.broken = True
            return
        choices = payload.get("choices")
        if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
            return  # the usage event: the exchange counts it
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            kept = {k: v for k, v in delta.items() if k in DELTA_FIELDS and isinstance(v, str) and v}
            if kept:
                self.answer.deltas.append(kept)
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.answer.finish_reason = reason

    def fail(self, error: errors.ApiError) -> None:
        self.error = error
        self.broken = True

    def end(self) -> None:
        self.done = True
        self.notify()


class Flights:
    """This gateway's generations under way, by cache key. (Gateways do not share theirs:
    each one's first copy generates, later ones find the stored answer.)"""

    def __init__(self) -> None:
        self.by_key: dict[str, Flight] = {}

    def get(self, key: str) -> Flight | None:
        return self.by_key.get(key)

    def start(self, key: str, generate: Callable[[Flight], Awaitable[None]], *, share: bool = True) -> Flight:
        """A new flight running `generate(flight)`; found by `get` while it runs if `share`."""
        flight = Flight(key)
        if share and key not in self.by_key:
            self.by_key[key] = flight
        flight.task = asyncio.get_running_loop().create_task(self._run(flight, generate))
        return flight

    async def _run(self, flight: Flight, generate: Callable[[Flight], Awaitable[None]]) -> None:
        try:
            await generate(flight)
        except errors.ApiError as exc:
            flight.fail(exc)
        except asyncio.CancelledError:
            flight.broken = True
            raise
        except Exception as exc:  # a bug: every subscriber goes on alone
            log.exception("a shared generation failed")
            flight.fail(errors.upstream_failed(f"the shared generation failed: {exc}"))
        finally:
            if self.by_key.get(flight.key) is flight:
                del self.by_key[flight.key]
            flight.end()


@dataclass
class Delivery:
    """One client's reply, which may outlive a flight: a stream's headers go out when the
    member answers, and a follower whose flight failed before any token goes on with the
    next one in the same reply."""

    send: Callable[[dict], Awaitable[None]]
    stream: bool
    include_usage: bool
    model: str
    headers: list[tuple[bytes, bytes]]
    cached: bool = False  # served from someone else's generation
    leader: bool = False  # its own generation: the member's headers (which member, timings) go too
    writer: StreamWriter | None = None  # set once the stream's headers went out

    async def start_stream(self, flight: Flight) -> StreamWriter:
        if self.writer is None:
            self.writer = StreamWriter(self.model)
            own = flight.headers if self.leader else []
            await self.send(
                {"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *own, *self.headers]}
            )
        return self.writer


async def subscribe(flight: Flight, delivery: Delivery) -> Served:
    """Serve `flight`'s answer to one client, as it comes. Leaving (a cancel) unsubscribes;
    the last subscriber to leave stops the generation."""
    flight.subscribers += 1
    try:
        if delivery.stream:
            return await _stream(flight, delivery)
        while not flight.done:
            await flight.changed()
        if not flight.ok:
            return Served.NOTHING
        body = whole_reply(flight.answer, delivery.model, cached=delivery.cached)
        own = flight.headers if delivery.leader else []
        send = delivery.send
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*JSON_HEADERS, *own, *delivery.headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return Served.WHOLE
    finally:
        flight.subscribers -= 1
        if flight.subscribers == 0 and flight.task is not None and not flight.task.done():
            flight.task.cancel()


async def _stream(flight: Flight, delivery: Delivery) -> Served:
    sent = 0
    send = delivery.send
    while True:
        if flight.status == 200 and not flight.broken:
            writer = await delivery.start_stream(flight)  # as soon as the member answers, as live
            deltas = flight.answer.deltas
            if len(deltas) > sent:
                out = b"".join(writer.delta(d) for d in deltas[sent:])
                sent = len(deltas)
                await send({"type": "http.response.body", "body": out, "more_body": True})
        if flight.done:
            if flight.ok:
                writer = await delivery.start_stream(flight)
                end = writer.end(flight.answer, include_usage=delivery.include_usage, cached=delivery.cached)
                await send({"type": "http.response.body", "body": end})
                return Served.WHOLE
            if delivery.writer is None or (sent == 0 and not delivery.leader):
                return Served.NOTHING  # nothing of this answer was sent: the next flight may serve it
            error = flight.error or errors.upstream_failed("the member generating this answer failed")
            await send({"type": "http.response.body", "body": error_event(error) + b"data: [DONE]\n\n"})
            return Served.CUT
        await flight.changed()
