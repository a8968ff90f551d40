"""The gateway's ASGI app: /v1/ (OpenAI-compatible) and the solve page's stream.

asgi.py routes these paths here before Django's handler: the hot path pays for parsing,
a dict lookup for the key, a strategy pick and the relay, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from pool import metrics
from pool.gateway import errors
from pool.gateway.admission import Admission, StudentCaps, estimate_prompt_tokens, pool_share
from pool.gateway.affinity import prefix_key
from pool.gateway.asgi_io import ClientGone, header, read_body, send_error, send_json
from pool.gateway.auth import Auth
from pool.gateway.backend import RouteContext
from pool.gateway.exchange import Exchange
from pool.gateway.fair import Tenant
from pool.gateway.hosts import check_host
from pool.gateway.limits import make_limits
from pool.gateway.openapi import openapi_document
from pool.gateway.outcome import CLIENT_GONE, Outcome
from pool.gateway.progress import Progress
from pool.gateway.prompts import prepare_messages
from pool.gateway.registry import MODEL_ALIAS, PoolPolicy, Registry
from pool.gateway.router import Router, Watch
from pool.gateway.tutor import HINTS, conversation, hinted, is_whole_text
from pool.gateway.validation import CHAT_FIELDS, COMPLETION_FIELDS, Field, Validated, parse_json, validate
from vibeadmin.proxies import client_address

log = logging.getLogger("pool.gateway")
SOLVE_PATH = "/solve/api/stream"
ROUTES = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "completion",
    ("GET", "/v1/models"): "models",
    ("GET", "/v1/openapi.json"): "openapi",
    ("POST", SOLVE_PATH): "solve",
}
Handler = Callable[[dict, Any, Any, Outcome], Awaitable[None]]


class Gateway:
    def __init__(self) -> None:
        self.registry = Registry()
        self.router = Router(self.registry)
        self.auth = Auth(self.registry)
        self.admission = Admission(make_limits())  # in this process, or in Redis: chosen once
        self.exchange = Exchange(self.registry, self.router)
        self.handlers: dict[str, Handler] = {
            "chat": functools.partial(self.api, fields=CHAT_FIELDS, path="/v1/chat/completions"),
            "completion": functools.partial(self.api, fields=COMPLETION_FIELDS, path="/v1/completions"),
            "solve": self.solve,
            "models": self.list_models,
            "openapi": self.openapi,
        }
        self._sampler: asyncio.Task | None = None

    async def start(self) -> None:
        """Start the background refresh (idempotent) and wait for the first picture of the pool."""
        self.registry.ensure_running()
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(self.sample_forever())
        if not self.registry.loaded.is_set():
            try:
                await self.registry.refresh()
            except Exception as exc:  # no picture of the pool yet: say so rather than a bare 500
                log.exception("could not read the pool from the database")
                raise errors.unavailable(
                    f"the gateway cannot read the pool's state from its database: {exc}",
                    code="database_unavailable",
                    retry_after=5,
                ) from None

    async def sample_forever(self) -> None:
        while True:
            self.router.sample()
            try:
                await self.router.slots.report_waiting()
            except Exception:  # Redis away for a moment: the next second tries again
                log.warning("could not report the queue depth to Redis", exc_info=True)
            await asyncio.sleep(1.0)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        outcome = Outcome(time.perf_counter())
        route = ROUTES.get((scope["method"], scope["path"].rstrip("/") or "/"))
        try:
            check_host(scope)
            await self.start()
            if route is None:
                raise self.no_route(scope)
            await self.handlers[route](scope, receive, send, outcome)
        except errors.ApiError as exc:
            outcome.status, outcome.member = exc.status, ""  # an error of the gateway's, not a member's
            await send_error(send, exc)
        except ClientGone:
            pass
        except Exception as exc:  # a bug or a lost Redis: still an answer in OpenAI's shape
            log.exception("unexpected error in the gateway")
            error = errors.ApiError(
                500,
                "internal error in the gateway; the operator's log has the details",
                type="server_error",
                code="internal_error",
            )
            if isinstance(exc, RedisError):
                error = errors.unavailable(
                    f"the gateway cannot reach Redis for the pool's shared state: {exc}",
                    code="shared_state_unavailable",
                    retry_after=5,
                )
            outcome.status = error.status
            with contextlib.suppress(Exception):  # fails harmlessly if the reply had started
                await send_error(send, error)
        finally:
            self.finish(outcome)

    # --- one coroutine per route ------------------------------------------------------------

    async def api(
        self, scope, receive, send, outcome: Outcome, *, fields: dict[str, Field], path: str
    ) -> None:
        """A platform's request on /v1/ (chat or completion): its key, then its key's limits."""
        raw = await read_body(receive, settings.VIBEADMIN_MAX_BODY_BYTES)
        caller = await self.auth.caller(header(scope, b"authorization"))
        outcome.label, outcome.key = caller.label, caller.key
        request = self.prepare(parse_json(raw), fields, outcome)
        reserved = outcome.prompt_estimate + outcome.max_tokens  # the most it may use, held until it ends
        outcome.admitted = await self.admission.key(caller.key, tokens=reserved)
        # A key is its own tenant of the fair line; keyless callers share the solve page's.
        tenant = caller.key.tenant if caller.key else self.registry.policy.solve_tenant
        await self.relay(receive, send, path, request, outcome, self.client_address(scope), tenant)

    async def solve(self, scope, receive, send, outcome: Outcome) -> None:
        """A student's problem from the solve page: no key, the caps per address and for all students."""
        raw = await read_body(receive, settings.VIBEADMIN_MAX_BODY_BYTES)
        outcome.label = "solve"
        policy = self.registry.policy
        client = self.client_address(scope)
        caps = StudentCaps(
            policy.solve_rpm,
            policy.solve_inflight_per_address,
            pool_share(policy.solve_pool_share, self.registry.slots()),
        )
        # Before parsing: a flood of junk costs a dict lookup, not a JSON parse each.
        outcome.admitted = await self.admission.student(client, caps)
        request = self.prepare(solve_request(parse_json(raw), policy), CHAT_FIELDS, outcome)
        await self.relay(receive, send, "/v1/chat/completions", request, outcome, client, policy.solve_tenant)

    async def list_models(self, scope, receive, send, outcome: Outcome) -> None:
        await self.auth.caller(header(scope, b"authorization"))
        await send_json(send, 200, self.models())

    async def openapi(self, scope, receive, send, outcome: Outcome) -> None:
        await send_json(send, 200, openapi_document(self.registry.policy.model_id))

    # --- what the generation routes share -----------------------------------------------------

    def prepare(self, body: dict, fields: dict[str, Field], outcome: Outcome) -> Validated:
        """Validate, name the served model, put the operator's prompts in."""
        policy: PoolPolicy = self.registry.policy
        request = validate(body, fields)
        if not policy.accepts_model(request.body["model"]):
            raise errors.not_found(
                f"the model {request.body['model']!r} does not exist; this pool serves "
                f"{policy.model_id!r} (alias {MODEL_ALIAS!r})",
                code="model_not_found",
            )
        request.body["model"] = policy.model_id
        if "messages" in request.body:
            messages = request.body["messages"]
            if request.mode == HINTS:  # the tutor's system prompt and first instruction, before the task's
                messages = hinted(messages, policy.tutor)
            request.body["messages"], _ = prepare_messages(messages, request.task, policy.prompts)
            outcome.prefix = prefix_key(request.body["messages"], request.task)
        outcome.stream = request.stream
        outcome.max_tokens = request.body["max_tokens"]  # validate() fills in the default
        outcome.prompt_estimate = estimate_prompt_tokens(request.body)
        return request

    async def relay(
        self, receive, send, path: str, request: Validated, outcome: Outcome, client: str, tenant: Tenant
    ) -> None:
        ctx = RouteContext(client, tokens=outcome.max_tokens, tenant=tenant, prefix=outcome.prefix)
        progress = None
        if request.progress:
            outcome.watch = Watch()
            progress = Progress(send, functools.partial(self.router.where, outcome.watch))
            send = progress.send
        work = self.exchange.run(send, path, request.body, ctx, outcome)
        try:
            if not await self.until_disconnect(receive, work if progress is None else told(progress, work)):
                outcome.status = CLIENT_GONE
        except errors.ApiError as exc:
            if progress is None or not progress.started:
                raise
            outcome.status, outcome.member = (
                exc.status,
                "",
            )  # the line's deadline passed while it was told its place
            await progress.fail(exc)

    def finish(self, outcome: Outcome) -> None:
        """The one place a request is accounted for: its limits settled, its key's usage and
        the metrics recorded."""
        if outcome.admitted is not None:
            self.admission.settle(outcome.admitted, outcome.key, tokens=outcome.tokens_used())
            if outcome.key is not None:
                outcome.key.count(outcome.prompt_tokens, outcome.completion_tokens, error=outcome.failed)
        if outcome.status:
            strategy = self.registry.policy.strategy if self.registry.loaded.is_set() else ""
            metrics.record_request(
                member=outcome.member,
                status=outcome.status,
                latency_s=time.perf_counter() - outcome.started,
                ttft_s=outcome.ttft_s,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                queue_wait_s=outcome.queue_wait_s,
                key=outcome.label,
                strategy=strategy,
            )

    @staticmethod
    async def until_disconnect(receive, work) -> bool:
        """Run `work`; if the client goes away first, cancel it, which closes the upstream
        request and frees the member's slot at once. False if the client went away."""
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            return False
        task.result()  # its ApiError, if any
        return True

    def models(self) -> dict:
        created = int(time.time())
        ids = [self.registry.policy.model_id, MODEL_ALIAS]
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": created, "owned_by": "vibeadmin"} for i in ids],
        }

    def client_address(self, scope) -> str:
        peer = (scope.get("client") or ("",))[0]
        return client_address(peer, header(scope, b"x-forwarded-for") or "")

    @staticmethod
    def no_route(scope) -> errors.ApiError:
        paths = {p for (_, p) in ROUTES}
        if scope["path"].rstrip("/") in paths:
            return errors.ApiError(
                405, f"{scope['method']} is not allowed on {scope['path']}", code="method_not_allowed"
            )
        return errors.not_found(f"no such endpoint: {scope['method']} {scope['path']}", code="unknown_url")


async def told(progress: Progress, work: Awaitable[None]) -> None:
    """`work`, with the request told its place in line until the exchange takes over."""
    teller = asyncio.ensure_future(progress.tell())
    try:
        await work
    finally:
        teller.cancel()
        await asyncio.gather(teller, return_exceptions=True)


async def _wait_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def solve_request(body: dict, policy: PoolPolicy) -> dict:
    """The solve page sends {"problem" or "messages" (the conversation so far, tutor.py),
    "task", "max_tokens", "progress"}; it becomes a streamed chat request in the page's mode."""
    if "messages" in body:
        messages = conversation(body["messages"], policy.tutor, settings.VIBEADMIN_MAX_PROMPT_CHARS)
    else:
        problem = body.get("problem")
        if not isinstance(problem, str) or not problem.strip():
            raise errors.invalid("type a problem first", param="problem")
        if not is_whole_text(problem):
            raise errors.invalid(
                "the problem holds an unpaired surrogate, which is not text", param="problem"
            )
        messages = [{"role": "user", "content": problem}]
    ceiling = policy.solve_max_tokens
    max_tokens = body.get("max_tokens", min(settings.VIBEADMIN_DEFAULT_MAX_TOKENS, ceiling))
    if type(max_tokens) is int and max_tokens > ceiling:  # validate() refuses other types
        raise errors.invalid(
            f"answers on this page are limited to {ceiling} tokens; choose a shorter answer",
            param="max_tokens",
            code="max_tokens_over_solve_limit",
        )
    return {
        "model": policy.model_id,
        "messages": messages,
        "stream": True,
        "vibeadmin": {
            "task": body.get("task", "math"),
            "mode": policy.tutor.mode,
            "progress": body.get("progress", False),
        },
        "max_tokens": max_tokens,
    }


gateway = Gateway()
