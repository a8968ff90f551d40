"""The gateway's ASGI app: /v1/ (OpenAI-compatible) and the solve page's stream.

asgi.py routes these paths here before Django's handler: the hot path pays for parsing,
a dict lookup for the key, a strategy pick and the relay, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
from typing import TypedDict

from django.conf import settings
from redis.exceptions import RedisError

from pool import metrics
from pool.gateway import errors
from pool.gateway.asgi_io import ClientGone, header, read_body, send_error, send_json
from pool.gateway.auth import AddressLimit, Auth, Caller
from pool.gateway.backend import RouteContext
from pool.gateway.exchange import Exchange
from pool.gateway.openapi import openapi_document
from pool.gateway.prompts import prepare_messages
from pool.gateway.registry import MODEL_ALIAS, Registry
from pool.gateway.router import Router
from pool.gateway.validation import CHAT_FIELDS, COMPLETION_FIELDS, parse_json, validate

log = logging.getLogger("pool.gateway")
SOLVE_PATH = "/solve/api/stream"
ROUTES = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "completion",
    ("GET", "/v1/models"): "models",
    ("GET", "/v1/openapi.json"): "openapi",
    ("POST", SOLVE_PATH): "solve",
}


class Labels(TypedDict):
    """Who asked and how it was routed, for the per-key series."""

    key: str
    strategy: str


class Gateway:
    def __init__(self) -> None:
        self.registry = Registry()
        self.router = Router(self.registry)
        self.auth = Auth(self.registry)
        self.exchange = Exchange(self.registry, self.router)
        self.solve_limit = AddressLimit()
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
                raise errors.unavailable(f"the gateway cannot read the pool's state from its database: {exc}",
                                         code="database_unavailable", retry_after=5) from None  # fmt: skip

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
        started = time.perf_counter()
        route = ROUTES.get((scope["method"], scope["path"].rstrip("/") or "/"))
        try:
            await self.start()
            if route is None:
                raise self.no_route(scope)
            if route == "openapi":
                return await send_json(send, 200, openapi_document(self.registry.policy.model_id))
            if route == "models":
                await self.auth.caller(header(scope, b"authorization"))
                return await send_json(send, 200, self.models())
            await self.generate(scope, receive, send, route, started)
        except errors.ApiError as exc:
            await send_error(send, exc)
            metrics.record_request(member="", status=exc.status, latency_s=time.perf_counter() - started,
                                   **self.labels(scope))  # fmt: skip
        except ClientGone:
            pass
        except Exception as exc:  # a bug or a lost Redis: still an answer in OpenAI's shape
            log.exception("unexpected error in the gateway")
            error = errors.ApiError(500, "internal error in the gateway; the operator's log has the details",
                                    type="server_error", code="internal_error")  # fmt: skip
            if isinstance(exc, RedisError):
                error = errors.unavailable(f"the gateway cannot reach Redis for the pool's shared state: {exc}",
                                           code="shared_state_unavailable", retry_after=5)  # fmt: skip
            with contextlib.suppress(Exception):  # fails harmlessly if the reply had started
                await send_error(send, error)
            metrics.record_request(member="", status=error.status, latency_s=time.perf_counter() - started,
                                   **self.labels(scope))  # fmt: skip

    async def generate(self, scope, receive, send, route: str, started: float) -> None:
        raw = await read_body(receive, settings.VIBEADMIN_MAX_BODY_BYTES)
        policy = self.registry.policy
        client = self.client_address(scope)
        if route == "solve":
            caller = Caller("solve")
            body = solve_request(parse_json(raw), policy.model_id)
            self.solve_limit.admit(client, policy.solve_rpm)
        else:
            caller = await self.auth.caller(header(scope, b"authorization"))
            body = parse_json(raw)
        scope["vibeadmin.caller"] = caller.label
        fields = COMPLETION_FIELDS if route == "completion" else CHAT_FIELDS
        request = validate(body, fields)
        if not policy.accepts_model(request.body["model"]):
            raise errors.not_found(f"the model {request.body['model']!r} does not exist; this pool serves "
                                   f"{policy.model_id!r} (alias {MODEL_ALIAS!r})", code="model_not_found")  # fmt: skip
        request.body["model"] = policy.model_id
        if "messages" in request.body:
            request.body["messages"], _ = prepare_messages(request.body["messages"], request.task, policy.prompts)
        path = "/v1/completions" if route == "completion" else "/v1/chat/completions"
        tenant = caller.key.tenant if caller.key else policy.solve_tenant  # keyless callers share the solve page's
        ctx = RouteContext(client, tokens=request.body["max_tokens"], tenant=tenant)  # validate() fills max_tokens
        await self.auth.admit(caller)
        outcome = None
        try:
            outcome = await self.until_disconnect(
                receive, self.exchange.run(send, path, request.body, request.stream, ctx, started)
            )
        finally:
            failed = outcome is None or outcome.status >= 500
            self.auth.done(caller, prompt_tokens=outcome.prompt_tokens if outcome else 0,
                           completion_tokens=outcome.completion_tokens if outcome else 0, error=failed)  # fmt: skip
        if outcome is None:  # the client went away; 499 as nginx logs it
            metrics.record_request(member="", status=499, latency_s=time.perf_counter() - started,
                                   **self.labels(scope))  # fmt: skip
        else:
            metrics.record_request(
                member=outcome.member, status=outcome.status, latency_s=time.perf_counter() - started,
                ttft_s=outcome.ttft_s, prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens, queue_wait_s=outcome.queue_wait_s,
                **self.labels(scope),
            )  # fmt: skip

    def labels(self, scope) -> Labels:
        strategy = self.registry.policy.strategy if self.registry.loaded.is_set() else ""
        return {"key": scope.get("vibeadmin.caller", ""), "strategy": strategy}

    @staticmethod
    async def until_disconnect(receive, work):
        """Run `work`; if the client goes away first, cancel it, which closes the upstream
        request and frees the member's slot at once."""
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return None if task.cancelled() else task.result()

    def models(self) -> dict:
        created = int(time.time())
        ids = [self.registry.policy.model_id, MODEL_ALIAS]
        return {"object": "list",
                "data": [{"id": i, "object": "model", "created": created, "owned_by": "vibeadmin"} for i in ids]}  # fmt: skip

    def client_address(self, scope) -> str:
        peer = (scope.get("client") or ("",))[0]
        forwarded = header(scope, b"x-forwarded-for")
        if not forwarded or not _is_trusted(peer):
            return peer
        # The nearest address that is not one of our own proxies is the client.
        for address in reversed([a.strip() for a in forwarded.split(",") if a.strip()]):
            if not _is_trusted(address):
                return address
        return peer

    @staticmethod
    def no_route(scope) -> errors.ApiError:
        paths = {p for (_, p) in ROUTES}
        if scope["path"].rstrip("/") in paths:
            return errors.ApiError(405, f"{scope['method']} is not allowed on {scope['path']}", code="method_not_allowed")
        return errors.not_found(f"no such endpoint: {scope['method']} {scope['path']}", code="unknown_url")


async def _wait_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(settings.VIBEADMIN_TRUSTED_PROXIES)))


@functools.cache
def _networks(proxies: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parsed once per setting, not on every request."""
    return [ipaddress.ip_network(net, strict=False) for net in proxies]


def solve_request(body: dict, model_id: str) -> dict:
    """The solve page sends {"problem", "task"}; it becomes a streamed chat request."""
    problem = body.get("problem")
    if not isinstance(problem, str) or not problem.strip():
        raise errors.invalid("type a problem first", param="problem")
    task = body.get("task", "math")
    return {"model": model_id, "messages": [{"role": "user", "content": problem}], "stream": True,
            "vibeadmin": {"task": task}, "max_tokens": body.get("max_tokens", settings.VIBEADMIN_DEFAULT_MAX_TOKENS)}  # fmt: skip


gateway = Gateway()
