"""One request's trip through the pool: pick a member, send, retry on another member while
nothing has reached the client, relay the reply, and account for it.

A member's error about the request is the client's (blame.py): a 400, not retried, not
counted against the member. Client-facing messages name no member and quote none of a
member's text; the log keeps both.

An answer past the whole answer's limit (upstream.AnswerTooLong) is nobody's fault: the
client gets a 504 (or, mid-stream, an error event with code `timeout`), it is charged what
was generated, and no member is retried or ejected. A client that stops reading is the
client gone: once the buffers between it and the member fill, its request is cancelled,
which the member sees as the connection closing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings

from pool import metrics
from pool.gateway import blame, errors, sse
from pool.gateway.asgi_io import JSON_HEADERS, SSE_HEADERS
from pool.gateway.backend import Backend
from pool.gateway.outcome import Outcome
from pool.gateway.registry import Registry
from pool.gateway.router import Router
from pool.gateway.strategies import record_latency
from pool.gateway.tasks import spawn
from pool.gateway.types import RouteContext
from pool.gateway.upstream import AnswerTooLong, ConnectFailed, UpstreamError, post
from pool.models import Member, states
from pool.services.member_state import change_state

log = logging.getLogger("pool.gateway")


class Exchange:
    def __init__(self, registry: Registry, router: Router):
        self.registry = registry
        self.router = router

    async def run(self, send, path: str, payload: dict, ctx: RouteContext, outcome: Outcome) -> None:
        """Serve the request into `outcome`, which the caller holds: if the client leaves and
        this is cancelled, what was streamed until then is still counted there."""
        stream = outcome.stream
        pass_usage = sse.ask_for_usage(payload) if stream else True
        body = json.dumps(payload).encode()
        tried: set[int] = set()
        last_error = ""
        for attempt in range(settings.VIBEADMIN_MAX_RETRIES + 1):
            try:
                slot, waited = await self.router.acquire(ctx, frozenset(tried), outcome.watch)
            except errors.ApiError:
                if tried:  # no other member to retry on: report that members failed
                    raise _members_failed(last_error) from None
                raise
            backend = slot.backend
            outcome.queue_wait_s += waited
            outcome.member = backend.name
            # The alias's group spans two models during a rollout: each member is asked for its own.
            sent = body if backend.model in ("", payload.get("model")) else _for_model(payload, backend.model)
            try:  # whatever happens from here (the client leaving included), the slot goes back
                await self.attempt(send, backend, path, sent, outcome, pass_usage)
                return
            except AnswerTooLong as exc:  # a whole reply read to the limit: nothing was sent yet
                log.warning("%s: %s; the request ends with a 504", backend.name, exc)
                # It generated for the whole limit: charged its reservation, as the most it may have used.
                outcome.prompt_tokens = outcome.prompt_estimate
                outcome.completion_tokens = outcome.max_tokens
                raise errors.answer_timed_out(settings.VIBEADMIN_UPSTREAM_TIMEOUT_S) from None
            except (UpstreamError, TimeoutError, _MemberFault) as exc:
                # Nothing reached the client yet: count it against the member, try another.
                last_error = f"{backend.name}: {describe(exc)}"
                self.member_failed(backend, last_error, hard=isinstance(exc, ConnectFailed))
                tried.add(backend.id)
                if attempt < settings.VIBEADMIN_MAX_RETRIES:
                    metrics.RETRIES.labels(backend.name).inc()
            finally:
                self.router.release(slot, used=outcome.completion_tokens)
        raise _members_failed(last_error)

    async def attempt(
        self, send, backend: Backend, path: str, body: bytes, outcome: Outcome, pass_usage: bool
    ) -> None:
        """One try on one member. Raises a retryable error only while nothing has been sent."""
        sent_at = time.perf_counter()
        outcome.generated_since = time.time()
        async with post(backend.base_url + path, body, backend.api_key, stream=outcome.stream) as response:
            if response.status >= 400:
                detail = (await response.read())[: blame.READ_BYTES]
                if blame.about_the_request(response.status, detail):
                    log.info(
                        "%s refused a request as unusable: HTTP %s %s",
                        backend.name,
                        response.status,
                        detail[:300].decode(errors="replace"),
                    )
                    raise blame.client_error(response.status, detail)
                raise _MemberFault(response.status, detail[:200].decode(errors="replace"))
            extra = [(b"x-vibeadmin-member", backend.name.encode())]
            if outcome.cache_plan is not None:
                extra.append((b"x-vibeadmin-cache", outcome.cache_plan.label.encode()))
            if outcome.stream and response.status == 200:
                events = sse.EventSplitter(pass_usage=pass_usage)
                await self.relay_stream(send, response, backend, outcome, events, sent_at, extra)
            else:
                # A whole reply is read before anything reaches the client, so a reset while
                # reading it can still be retried.
                content = await response.read()
                await self.relay_whole(send, response.status, content, outcome, sent_at, extra)
        backend.extra["failures"] = 0
        record_latency(backend, outcome.ttft_s if outcome.ttft_s is not None else outcome.upstream_s)

    async def relay_whole(self, send, status: int, content: bytes, outcome: Outcome, sent_at, extra) -> None:
        outcome.upstream_s = time.perf_counter() - sent_at
        outcome.status = status
        usage = _usage(content)
        answered = outcome.prompt_estimate if status == 200 else 0  # the member's count, where it gave one
        outcome.prompt_tokens = sse.whole_number(usage.get("prompt_tokens")) or answered
        outcome.completion_tokens = sse.whole_number(usage.get("completion_tokens")) or 0
        overhead = time.perf_counter() - outcome.started - outcome.upstream_s - outcome.queue_wait_s
        headers = [*JSON_HEADERS, *extra, *_timing_headers(overhead, outcome.queue_wait_s)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def relay_stream(
        self,
        send,
        response,
        backend: Backend,
        outcome: Outcome,
        events: sse.EventSplitter,
        sent_at: float,
        extra,
    ) -> None:
        outcome.status = 200
        response.when_full(_cancel_this(asyncio.current_task()))
        header_wait = time.perf_counter() - sent_at
        overhead = time.perf_counter() - outcome.started - header_wait - outcome.queue_wait_s
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*SSE_HEADERS, *extra, *_timing_headers(overhead, outcome.queue_wait_s)],
            }
        )
        try:
            async for chunk in response.iter_chunks():
                whole = events.feed(chunk)
                if whole:
                    if outcome.ttft_s is None:
                        outcome.ttft_s = time.perf_counter() - outcome.started
                    if events.events > outcome.counted_tokens:  # on the charts as they pass
                        metrics.count_streamed(backend.name, events.events - outcome.counted_tokens)
                        outcome.counted_tokens = events.events
                    await send({"type": "http.response.body", "body": whole, "more_body": True})
                    if events.ended:
                        # Finish now, not at the member's EOF (llama.cpp's comes a moment later):
                        # clients hang up on [DONE], and a hang-up first made it a 499.
                        break
        except AnswerTooLong as exc:
            outcome.status = 504
            log.warning("%s: %s; the stream ends with a timeout event", backend.name, exc)
            error = errors.answer_timed_out(settings.VIBEADMIN_UPSTREAM_TIMEOUT_S)
            await send({"type": "http.response.body", "body": sse.error_event(error), "more_body": True})
        except (UpstreamError, TimeoutError) as exc:
            # A started stream is never replayed: the client gets an error event and the end.
            outcome.status = 502
            log.warning("%s broke off a stream: %s", backend.name, describe(exc))
            self.member_failed(backend, describe(exc), hard=True)
            error = errors.upstream_failed(
                "the model server writing this answer failed; the answer is cut short"
            )
            await send({"type": "http.response.body", "body": sse.error_event(error), "more_body": True})
        finally:  # the client leaving (a cancel) included: it is charged what was generated
            outcome.upstream_s = time.perf_counter() - sent_at
            outcome.completion_tokens = events.completion_tokens()
            outcome.prompt_tokens = events.prompt_tokens() or outcome.prompt_estimate
        await send({"type": "http.response.body", "body": b""})

    # --- passive health -------------------------------------------------------------------

    def member_failed(self, backend: Backend, error: str, *, hard: bool) -> None:
        """Connect errors eject at once; 5xx and timeouts after as many in a row as probes need."""
        failures = backend.extra.get("failures", 0) + 1
        backend.extra["failures"] = failures
        if (hard or failures >= settings.VIBEADMIN_UNHEALTHY_AFTER) and self.registry.eject(backend):
            spawn(sync_to_async(_mark_unhealthy)(backend.id, error))


class _MemberFault(Exception):
    """An error reply that is the member's doing: retried elsewhere and counted against it."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")


def _cancel_this(task: asyncio.Task | None):
    """The relay waits on a client that stopped reading while the member's bytes pile up:
    cancel it, as if the client had left, so the member stops and the slot comes back."""

    def cancel() -> None:
        if task is not None and not task.done():
            log.info("a client stopped reading its stream; the request is cancelled")
            task.cancel()

    return cancel


def _for_model(payload: dict, model: str) -> bytes:
    return json.dumps({**payload, "model": model}).encode()


def _members_failed(last_error: str) -> errors.ApiError:
    log.warning("no member could serve a request; the last error: %s", last_error)
    return errors.upstream_failed("the pool's model servers failed this request; try again shortly")


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"  # the client says which: connecting, or the whole reply
    return str(exc) or type(exc).__name__


def _usage(content: bytes) -> dict:
    try:
        usage = json.loads(content).get("usage")
    except (ValueError, AttributeError):
        return {}
    return usage if isinstance(usage, dict) else {}


def _timing_headers(overhead_s: float, queue_s: float) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-vibeadmin-overhead-ms", f"{max(0.0, overhead_s) * 1000:.2f}".encode()),
        (b"x-vibeadmin-queue-ms", f"{queue_s * 1000:.1f}".encode()),
    ]


def _mark_unhealthy(member_id: int, error: str) -> None:
    member = Member.objects.filter(pk=member_id, state=states.READY).first()
    if member is not None:
        # ready -> unhealthy: real traffic failed on it (passive check), before the next probe
        change_state(
            member,
            states.UNHEALTHY,
            reason=f"passive check: {error}",
            last_error=error,
            failures=max(member.failures, 1),
            successes=0,
        )
