"""One request's trip through the pool: pick a member, send, retry on another member while
nothing has reached the client, relay the reply, and account for it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from pool import metrics
from pool.gateway import errors
from pool.gateway.asgi_io import JSON_HEADERS, SSE_HEADERS
from pool.gateway.backend import Backend, RouteContext
from pool.gateway.registry import Registry
from pool.gateway.router import Router
from pool.gateway.strategies import record_latency
from pool.gateway.tasks import spawn
from pool.gateway.upstream import DONE, ConnectFailed, EventSplitter, UpstreamError, post
from pool.models import Member, states
from pool.supervisor.transitions import change_state

log = logging.getLogger("pool.gateway")
@dataclass
class Outcome:
    """What the request cost and produced, filled in as it goes."""

    member: str = ""
    status: int = 0
    ttft_s: float | None = None
    queue_wait_s: float = 0.0
    upstream_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Exchange:
    def __init__(self, registry: Registry, router: Router):
        self.registry = registry
        self.router = router

    async def run(self, send, path: str, payload: dict, stream: bool, ctx: RouteContext, started: float) -> Outcome:
        outcome = Outcome()
        body = json.dumps(payload).encode()
        tried: set[int] = set()
        last_error = ""
        for attempt in range(settings.VIBEADMIN_MAX_RETRIES + 1):
            try:
                slot, waited = await self.router.acquire(ctx, frozenset(tried))
            except errors.ApiError:
                if tried:  # no other member to retry on: report what went wrong upstream
                    raise errors.upstream_failed(f"the pool's members failed this request: {last_error}") from None
                raise
            backend = slot.backend
            outcome.queue_wait_s += waited
            outcome.member = backend.name
            try:  # whatever happens from here (the client leaving included), the slot goes back
                await self.attempt(send, backend, path, body, stream, outcome, started)
                return outcome
            except (UpstreamError, TimeoutError, _RetryableStatus) as exc:
                # Nothing reached the client yet: count it against the member, try another.
                last_error = f"{backend.name}: {describe(exc)}"
                self.member_failed(backend, last_error, hard=isinstance(exc, ConnectFailed))
                tried.add(backend.id)
                if attempt < settings.VIBEADMIN_MAX_RETRIES:
                    metrics.RETRIES.labels(backend.name).inc()
            finally:
                self.router.release(slot)
        raise errors.upstream_failed(f"the pool's members failed this request: {last_error}")

    async def attempt(self, send, backend: Backend, path: str, body: bytes, stream: bool, outcome: Outcome,
                      started: float) -> None:  # fmt: skip
        """One try on one member. Raises a retryable error only while nothing has been sent."""
        sent_at = time.perf_counter()
        async with post(backend.base_url + path, body, backend.api_key) as response:
            # 401/403: the member refused the gateway's own key (a remote's key is wrong or
            # missing), not the client's: the member's fault, like a 5xx.
            if response.status >= 500 or response.status in (401, 403):
                detail = (await response.read())[:200].decode(errors="replace")
                raise _RetryableStatus(response.status, detail)
            extra = [(b"x-vibeadmin-member", backend.name.encode())]
            if stream and response.status == 200:
                await self.relay_stream(send, response, backend, outcome, started, sent_at, extra)
            else:
                # A whole reply is read before anything reaches the client, so a reset while
                # reading it can still be retried.
                content = await response.read()
                await self.relay_whole(send, response.status, content, outcome, started, sent_at, extra)
        backend.extra["failures"] = 0
        record_latency(backend, outcome.ttft_s if outcome.ttft_s is not None else outcome.upstream_s)

    async def relay_whole(self, send, status: int, content: bytes, outcome: Outcome, started, sent_at, extra) -> None:
        outcome.upstream_s = time.perf_counter() - sent_at
        outcome.status = status
        usage = _usage(content)
        outcome.prompt_tokens = usage.get("prompt_tokens", 0)
        outcome.completion_tokens = usage.get("completion_tokens", 0)
        overhead = time.perf_counter() - started - outcome.upstream_s - outcome.queue_wait_s
        headers = [*JSON_HEADERS, *extra, *_timing_headers(overhead, outcome.queue_wait_s)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def relay_stream(self, send, response, backend: Backend, outcome: Outcome, started, sent_at, extra) -> None:
        outcome.status = 200
        header_wait = time.perf_counter() - sent_at
        overhead = time.perf_counter() - started - header_wait - outcome.queue_wait_s
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, *extra, *_timing_headers(overhead, outcome.queue_wait_s)]})  # fmt: skip
        events = EventSplitter()
        try:
            async for chunk in response.iter_chunks():
                whole = events.feed(chunk)
                if whole:
                    if outcome.ttft_s is None:
                        outcome.ttft_s = time.perf_counter() - started
                    await send({"type": "http.response.body", "body": whole, "more_body": True})
                    if DONE in whole:
                        # Finish now, not at the member's EOF (llama.cpp's comes a moment later):
                        # clients hang up on [DONE], and a hang-up first made it a 499.
                        break
        except (UpstreamError, TimeoutError) as exc:
            # A started stream is never replayed: the client gets an error event and the end.
            outcome.status = 502
            self.member_failed(backend, describe(exc), hard=True)
            error = {"error": {"message": f"the member serving this stream failed: {describe(exc)}",
                               "type": "server_error", "param": None, "code": "upstream_error"}}  # fmt: skip
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(error).encode() + b"\n\n",
                        "more_body": True})  # fmt: skip
        finally:
            outcome.upstream_s = time.perf_counter() - sent_at
            outcome.completion_tokens = max(0, events.events - 1)  # the last event carries finish_reason only
        await send({"type": "http.response.body", "body": b""})

    # --- passive health -------------------------------------------------------------------

    def member_failed(self, backend: Backend, error: str, *, hard: bool) -> None:
        """Connect errors eject at once; 5xx and timeouts after as many in a row as probes need."""
        failures = backend.extra.get("failures", 0) + 1
        backend.extra["failures"] = failures
        if (hard or failures >= settings.VIBEADMIN_UNHEALTHY_AFTER) and self.registry.eject(backend):
            spawn(sync_to_async(_mark_unhealthy)(backend.id, error))


class _RetryableStatus(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"  # the client says which: connecting, or the whole reply
    return str(exc) or type(exc).__name__


def _usage(content: bytes) -> dict:
    try:
        return json.loads(content).get("usage") or {}
    except (ValueError, AttributeError):
        return {}


def _timing_headers(overhead_s: float, queue_s: float) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-vibeadmin-overhead-ms", f"{max(0.0, overhead_s) * 1000:.2f}".encode()),
        (b"x-vibeadmin-queue-ms", f"{queue_s * 1000:.1f}".encode()),
    ]


def _mark_unhealthy(member_id: int, error: str) -> None:
    member = Member.objects.filter(pk=member_id, state=states.READY).first()
    if member is not None:
        # ready -> unhealthy: real traffic failed on it (passive check), before the next probe
        change_state(member, states.UNHEALTHY, reason=f"passive check: {error}", last_error=error,
                     failures=max(member.failures, 1), successes=0)  # fmt: skip
