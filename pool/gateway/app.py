"""The gateway's ASGI app: /v1/ (OpenAI-compatible) and the solve page's stream.

asgi.py routes these paths here before Django's handler: the hot path pays for parsing,
a dict lookup for the key, a strategy pick and the relay, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from redis.exceptions import RedisError

from pool import metrics
from pool.gateway import assembly, errors, students, usage_api
from pool.gateway.admission import Admission, StudentCaps, estimate_prompt_tokens, pool_share
from pool.gateway.affinity import prefix_key
from pool.gateway.answers import Answers, wants_fresh
from pool.gateway.asgi_io import ClientGone, header, header_joined, read_body, send_error, send_json
from pool.gateway.auth import Auth
from pool.gateway.exchange import Exchange
from pool.gateway.hints import HIDDEN_MAX_TOKENS, Hidden, Hints, hidden_body, verdict
from pool.gateway.hosts import check_host, check_origin
from pool.gateway.openapi import openapi_document
from pool.gateway.outcome import CLIENT_GONE, Outcome
from pool.gateway.progress import Progress
from pool.gateway.prompts import prepare_messages
from pool.gateway.quotas import Quota, make_quotas, student_quota
from pool.gateway.registry import MODEL_ALIAS, PoolPolicy, Registry
from pool.gateway.replies import Answer
from pool.gateway.router import Router, Watch
from pool.gateway.sampling import Sampling, apply_defaults
from pool.gateway.tasks import spawn
from pool.gateway.tutor import HINTS, conversation, first_question, hinted, is_whole_text
from pool.gateway.types import HIT, MISS, RouteContext, Tenant
from pool.gateway.usage_book import UsageBook
from pool.gateway.validation import CHAT_FIELDS, COMPLETION_FIELDS, Field, Validated, parse_json, validate
from pool.gateway.voting import Voting, samples_for
from pool.proxies import client_address, client_network

log = logging.getLogger("pool.gateway")
SOLVE_PATH = "/solve/api/stream"
CHECK_PATH = "/solve/api/check"
MAX_TYPED_CHARS = 200  # a student's typed answer, at most
ROUTES = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "completion",
    ("GET", "/v1/models"): "models",
    ("GET", "/v1/openapi.json"): "openapi",
    ("GET", "/v1/usage"): "usage",
    ("GET", "/v1/usage/users"): "usage_users",
    ("POST", SOLVE_PATH): "solve",
    ("POST", CHECK_PATH): "check",
}
Handler = Callable[[dict, Any, Any, Outcome], Awaitable[None]]


class Gateway:
    def __init__(self) -> None:
        self.registry = Registry()
        # Each part with two homes (this process, or Redis) is chosen once, in assembly.py.
        self.router = Router(self.registry, assembly.slots())
        self.auth = Auth(self.registry)
        self.admission = Admission(assembly.limits())
        self.exchange = Exchange(self.registry, self.router)
        self.answers = Answers()  # the answer cache and the generations identical requests share
        self.voting = Voting(
            self.exchange, self.router, self.answers.cache
        )  # k independent answers, the majority's shown
        self.hints = Hints(self.voting, self.answers.cache)  # hints checked against the hidden answer
        self.quotas = make_quotas()  # tokens per day and month: in this process, or in Redis
        self.usage = UsageBook()
        self.handlers: dict[str, Handler] = {
            "chat": functools.partial(self.api, fields=CHAT_FIELDS, path="/v1/chat/completions"),
            "completion": functools.partial(self.api, fields=COMPLETION_FIELDS, path="/v1/completions"),
            "solve": self.solve,
            "check": self.check,
            "models": self.list_models,
            "openapi": self.openapi,
            "usage": functools.partial(self.usage_report, students=False),
            "usage_users": functools.partial(self.usage_report, students=True),
        }
        self._sampler: asyncio.Task | None = None
        self._books: asyncio.Task | None = None
        self._kept_models: frozenset = frozenset()  # the models whose cached answers are kept

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
        ticks = 0
        while True:
            self.router.sample()
            try:
                await self.router.slots.report_waiting()
            except Exception:  # Redis away for a moment: the next second tries again
                log.warning("could not report the queue depth to Redis", exc_info=True)
            ticks += 1
            if (
                ticks % 2 == 0
                and self.registry.loaded.is_set()
                and (self._books is None or self._books.done())
            ):
                self._books = spawn(self.keep_books())  # one at a time, however slow the database
            await asyncio.sleep(1.0)

    async def keep_books(self) -> None:
        """Every two seconds, off the loop: usage per day written, the cache's upkeep."""
        try:
            await sync_to_async(self.usage.flush, thread_sensitive=False)()
            await sync_to_async(self.answers.cache.maintain, thread_sensitive=False)()
            policy = self.registry.policy
            shas = {m.sha256 for m in policy.models.values() if m.sha256}
            if policy.model_sha256 is not None and shas | {policy.model_sha256} != self._kept_models:
                shas.add(policy.model_sha256)
                deleted = await sync_to_async(self.answers.cache.forget_other_models, thread_sensitive=False)(
                    shas
                )
                if deleted:
                    log.info("a model file changed or left the library: %d cached answers deleted", deleted)
                self._kept_models = frozenset(shas)
        except Exception as exc:  # the database busy: the next round writes it
            self.answers.cache.fail("keep", exc)
        metrics.set_degraded("cache", self.answers.cache.failing)
        metrics.set_degraded("quotas", self.quotas.failing)

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
        # The key first, from the headers: a caller without one never gets its body read.
        caller = await self.auth.caller(header(scope, b"authorization"))
        raw = await read_body(receive, settings.VIBEADMIN_MAX_BODY_BYTES, settings.VIBEADMIN_BODY_TIMEOUT_S)
        outcome.label, outcome.key = caller.label, caller.key
        key = caller.key
        if key is None:  # an open API: keyless callers are students, under the solve page's caps
            outcome.admitted = await self.admission.student(self.client_address(scope), self.student_caps())
        request = self.prepare(parse_json(raw), fields, outcome, ceiling=settings.VIBEADMIN_MAX_TOKENS)
        outcome.user = students.from_request(request.user, header(scope, students.HEADER))
        policy = self.registry.policy
        # A key is its own tenant of the fair line; keyless callers share the solve page's.
        tenant = key.tenant if key else policy.solve_tenant
        self.choose_canary(request, outcome, tenant)
        samples = self.samples(request, key.samples if key else 1)
        # The cache is a key's choice; keyless callers (an open API) have none to make.
        on, sampled_ok = (key.cache, key.cache_sampled) if key else (False, False)
        answer = await self.plan_cache(
            scope, path, request, outcome, on=on, sampled_ok=sampled_ok, samples=samples
        )
        if answer is not None:  # counts against the key's requests per minute, not its tokens
            if key is not None:
                outcome.admitted = await self.admission.key(key, tokens=0, user=outcome.user)
            await self.answers.serve_hit(send, answer, request, outcome)
            return
        # The most it may use (every sample's), held until it ends.
        reserved = (outcome.prompt_estimate + outcome.max_tokens) * samples
        await self.reserve_quotas(key, outcome, reserved)
        if key is not None:
            outcome.admitted = await self.admission.key(key, tokens=reserved, user=outcome.user)
        hidden = self.hidden(
            request, cache_on=on, tenant=f"key:{key.id}" if key else "open", default=key.samples if key else 1
        )
        client = self.client_address(scope)
        # The fair line's second level: the key's students in turn; keyless callers by network.
        student = outcome.user or ("" if key else client_network(client))
        await self.relay(
            receive,
            send,
            path,
            request,
            outcome,
            client,
            tenant,
            student,
            samples=samples,
            hidden=hidden,
        )

    async def reserve_quotas(self, key, outcome: Outcome, reserved: int) -> None:
        """The student's quota, then the key's; a request the key's refuses gives the
        student's back (each is checked and taken at once, so neither is overspent)."""
        student = student_quota(key, outcome.user) if key is not None else None
        if student is not None:
            outcome.student_quota = await self.quotas.reserve(student, reserved)
        try:
            outcome.quota = await self.quotas.reserve(self.quota(key), reserved)
        except errors.ApiError:
            self.quotas.settle(outcome.student_quota, 0)
            outcome.student_quota = None
            raise

    async def solve(self, scope, receive, send, outcome: Outcome) -> None:
        """A student's problem from the solve page: no key, the caps per address and for all students."""
        check_origin(scope)
        raw = await read_body(receive, settings.VIBEADMIN_MAX_BODY_BYTES, settings.VIBEADMIN_BODY_TIMEOUT_S)
        outcome.label = "solve"
        policy = self.registry.policy
        client = self.client_address(scope)
        # Before parsing: a flood of junk costs a dict lookup, not a JSON parse each.
        outcome.admitted = await self.admission.student(client, self.student_caps())
        request = self.prepare(
            solve_request(parse_json(raw), policy), CHAT_FIELDS, outcome, ceiling=policy.solve_max_tokens
        )
        path = "/v1/chat/completions"
        self.choose_canary(request, outcome, policy.solve_tenant)
        samples = self.samples(request, policy.solve_samples)
        # The page's answers are every student's: no student may ask to replace them (no-cache).
        answer = await self.plan_cache(
            scope,
            path,
            request,
            outcome,
            on=policy.solve_cache,
            samples=samples,
            sampled_ok=policy.solve_cache_sampled,
            may_refresh=False,
        )
        if answer is not None:
            await self.answers.serve_hit(send, answer, request, outcome)
            return
        outcome.quota = await self.quotas.reserve(
            self.quota(None), (outcome.prompt_estimate + outcome.max_tokens) * samples
        )
        hidden = self.hidden(
            request, cache_on=policy.solve_cache, tenant="solve", default=policy.solve_samples
        )
        await self.relay(
            receive,
            send,
            path,
            request,
            outcome,
            client,
            policy.solve_tenant,
            client_network(client),
            samples=samples,
            live=True,
            hidden=hidden,
        )

    async def check(self, scope, receive, send, outcome: Outcome) -> None:
        """ "Check my answer": {"problem", "answer", "task"} -> {"verdict": right, not_yet,
        unreadable or unknown}, compared as a value with the problem's hidden final answer
        (hints.py), never revealing it. Counts as a student's request."""
        check_origin(scope)
        raw = await read_body(receive, settings.VIBEADMIN_MAX_BODY_BYTES, settings.VIBEADMIN_BODY_TIMEOUT_S)
        outcome.label = "solve"
        policy = self.registry.policy
        client = self.client_address(scope)
        outcome.admitted = await self.admission.student(client, self.student_caps())
        body = parse_json(raw)
        typed = body.get("answer") if isinstance(body, dict) else None
        if not isinstance(typed, str) or not typed.strip() or len(typed) > MAX_TYPED_CHARS:
            raise errors.invalid(
                f"type your final answer first (at most {MAX_TYPED_CHARS} characters)", param="answer"
            )
        asked = {k: body[k] for k in ("problem", "task") if k in body}
        request = self.prepare(
            solve_request(asked, policy), CHAT_FIELDS, outcome, ceiling=policy.solve_max_tokens
        )
        problem = asked["problem"]
        hidden = Hidden(
            policy.solve_cache,
            "solve",
            policy.model_sha256,
            samples_for(request, policy.solve_samples, policy.max_samples),
            HIDDEN_MAX_TOKENS,
        )
        ctx = RouteContext(
            client,
            tokens=HIDDEN_MAX_TOKENS,
            tenant=policy.solve_tenant,
            prefix=outcome.prefix,
            student=client_network(client),
        )
        outcome.quota = await self.quotas.reserve(
            self.quota(None), (outcome.prompt_estimate + HIDDEN_MAX_TOKENS) * hidden.samples
        )
        path = "/v1/chat/completions"
        hidden_request = hidden_body(problem, request.body, request.task, policy.prompts, HIDDEN_MAX_TOKENS)
        answer = await self.hints.answer(path, hidden_request, request.task, hidden, ctx, outcome)
        outcome.status = 200
        await send_json(send, 200, {"verdict": verdict(typed, answer)})

    async def plan_cache(
        self,
        scope,
        path: str,
        request: Validated,
        outcome: Outcome,
        *,
        on: bool,
        sampled_ok: bool,
        may_refresh: bool = True,
        samples: int = 1,
    ) -> Answer | None:
        """What the answer cache does for this request; the stored answer if it has one. A
        key's no-cache refreshes its own entries (the cache is per tenant): `may_refresh`."""
        policy = self.registry.policy
        return await self.answers.find(
            path,
            request,
            outcome,
            on=on,
            sampled_ok=sampled_ok,
            fresh=may_refresh and wants_fresh(header(scope, b"cache-control")),
            model_sha256=policy.sha_of(outcome.model),
            epoch=policy.cache_epoch,
            tenant=f"key:{outcome.key.id}" if outcome.key is not None else "solve",
            samples=samples,
        )

    def hidden(self, request: Validated, *, cache_on: bool, tenant: str, default: int) -> Hidden | None:
        """Where hints mode keeps its hidden answer and how many samples vote on it; None
        where the reply is not a hint to check."""
        if not request.check_hint:
            return None
        policy = self.registry.policy
        k = samples_for(request, default, policy.max_samples)
        return Hidden(cache_on, tenant, policy.model_sha256, k, HIDDEN_MAX_TOKENS)

    def samples(self, request: Validated, default: int) -> int:
        """Independent answers to vote on; hints mode answers with one hint (its check votes)."""
        k = samples_for(request, default, self.registry.policy.max_samples)
        return 1 if request.mode == HINTS else k

    def student_caps(self) -> StudentCaps:
        policy = self.registry.policy
        return StudentCaps(
            policy.solve_rpm,
            policy.solve_inflight_per_address,
            pool_share(policy.solve_pool_share, self.registry.slots()),
        )

    def quota(self, key) -> Quota:
        if key is not None:
            return Quota(f"key:{key.id}", f"the key {key.name!r}", key.tokens_per_day, key.tokens_per_month)
        policy = self.registry.policy
        return Quota("solve", "the solve page", policy.solve_tokens_per_day, policy.solve_tokens_per_month)

    async def list_models(self, scope, receive, send, outcome: Outcome) -> None:
        await self.auth.caller(header(scope, b"authorization"))
        await send_json(send, 200, self.models())

    async def usage_report(self, scope, receive, send, outcome: Outcome, *, students: bool) -> None:
        """A key's usage, or its students' (usage_api.py): only with a key, only its own."""
        caller = await self.auth.caller(header(scope, b"authorization"))
        if caller.key is None:
            raise errors.unauthorized("usage is kept per API key: send 'Authorization: Bearer YOUR_KEY'")
        allowed = ("period", "limit", "offset") if students else ("user",)
        query = usage_api.parse_query(scope.get("query_string", b""), allowed)
        today = self.usage.today()
        if students:
            answer = await sync_to_async(usage_api.students_page, thread_sensitive=False)(
                caller.key, query, today
            )
        else:
            unwritten = {
                period: usage_api.pending(
                    self.usage, caller.key, query.user, usage_api.bounds(period, today)[0]
                )
                for period in usage_api.PERIODS
            }
            answer = await sync_to_async(usage_api.report, thread_sensitive=False)(
                caller.key, query, unwritten, today
            )
        await send_json(send, 200, answer)

    async def openapi(self, scope, receive, send, outcome: Outcome) -> None:
        await send_json(send, 200, openapi_document(self.registry.policy.model_id))

    # --- what the generation routes share -----------------------------------------------------

    def prepare(self, body: dict, fields: dict[str, Field], outcome: Outcome, *, ceiling: int) -> Validated:
        """Validate, name the served model, put the operator's prompts and sampling defaults
        in; a default max_tokens is held within `ceiling` (a client's own was checked already)."""
        policy: PoolPolicy = self.registry.policy
        request = validate(body, fields)
        apply_defaults(body, request.body, policy.sampling.get(request.task, Sampling()), ceiling=ceiling)
        asked = request.body["model"]
        served = policy.resolve(asked)
        if served is None:
            raise errors.not_found(
                f"the model {asked!r} does not exist; this pool serves {self.served_names()}",
                code="model_not_found",
            )
        outcome.by_alias = asked == MODEL_ALIAS
        # The alias routes to its group (the primary's members; during a rollout, the new model's too).
        request.body["model"], outcome.model = served, MODEL_ALIAS if outcome.by_alias else served
        if "messages" in request.body:
            messages = request.body["messages"]
            if request.mode == HINTS:  # the tutor's system prompt and first instruction, before the task's
                request.problem = first_question(messages)
                request.check_hint = messages[-1]["content"] != policy.tutor.steps["solution"]
                messages = hinted(messages, policy.tutor)
            request.body["messages"], _ = prepare_messages(messages, request.task, policy.prompts)
            outcome.prefix = prefix_key(request.body["messages"], request.task)
        outcome.stream = request.stream
        outcome.max_tokens = request.body["max_tokens"]  # validate() fills in the default
        outcome.prompt_estimate = estimate_prompt_tokens(request.body)
        return request

    def choose_canary(self, request: Validated, outcome: Outcome, tenant: Tenant) -> None:
        """A rollout's canary takes its share of the primary alias's traffic (of one tenant's
        only, where it names one) while one of its members is ready; a request that names a
        model goes to that model."""
        canary = self.registry.policy.canary
        if (
            canary is None
            or not outcome.by_alias
            or (canary.tenant and canary.tenant != tenant.id)
            or not self.registry.by_model.get(canary.model)
            or random.random() * 100 >= canary.percent
        ):
            return
        request.body["model"] = outcome.model = canary.model

    def served_names(self) -> str:
        """The models a client may name now: the primary (and its alias), and every model a
        ready member serves, each with its alias."""
        policy = self.registry.policy
        names = [f"{policy.model_id!r} (alias {MODEL_ALIAS!r})"]
        for name in sorted(self.registry.by_model):
            if name not in (policy.model_id, MODEL_ALIAS):
                alias = policy.models[name].alias if name in policy.models else ""
                names.append(f"{name!r}" + (f" (alias {alias!r})" if alias else ""))
        return ", ".join(names)

    async def relay(
        self,
        receive,
        send,
        path: str,
        request: Validated,
        outcome: Outcome,
        client: str,
        tenant: Tenant,
        student: str = "",
        *,
        samples: int = 1,
        live: bool = False,
        hidden: Hidden | None = None,
    ) -> None:
        ctx = RouteContext(
            client,
            tokens=outcome.max_tokens,
            tenant=tenant,
            prefix=outcome.prefix,
            student=student,
            model=outcome.model,
        )
        progress = None
        if request.progress:
            outcome.watch = Watch()
            progress = Progress(send, functools.partial(self.router.where, outcome.watch))
            send = progress.send
        plan = outcome.cache_plan
        if hidden is not None:
            body = hidden_body(
                request.problem, request.body, request.task, self.registry.policy.prompts, hidden.max_tokens
            )
            work = self.hints.run(send, path, request, body, hidden, ctx, outcome, plan)
        elif samples > 1:
            work = self.voting.run(send, path, request, ctx, outcome, samples, live=live, plan=plan)
        elif plan is not None and plan.key:
            work = self.answers.relay(send, path, request, ctx, outcome, plan, self.exchange)
        else:
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
        used = outcome.tokens_used() if outcome.admitted is not None else 0
        if outcome.quota is not None:
            self.quotas.settle(outcome.quota, used)
        if outcome.student_quota is not None:
            self.quotas.settle(outcome.student_quota, used)
        if outcome.admitted is not None:
            self.admission.settle(outcome.admitted, outcome.key, tokens=outcome.tokens_used())
            if outcome.key is not None:
                outcome.key.count(outcome.prompt_tokens, outcome.completion_tokens, error=outcome.failed)
        if outcome.status and (outcome.admitted is not None or outcome.cache_served):
            self.count_usage(outcome)
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
                counted_tokens=outcome.counted_tokens,
                generated_since=outcome.generated_since,
            )

    def count_usage(self, outcome: Outcome) -> None:
        """The day's usage per tenant, and the answer cache's figures."""
        plan = outcome.cache_plan
        tenant = f"key:{outcome.key.id}" if outcome.key is not None else "solve"
        hit = outcome.cache_served
        miss = plan is not None and plan.label == MISS and not hit
        self.usage.add(
            tenant,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            hit=hit,
            miss=miss,
            saved_tokens=outcome.saved_tokens,
            saved_s=outcome.saved_s,
        )
        if outcome.user and outcome.key is not None:
            self.usage.add_student(
                outcome.key.id,
                outcome.user,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
            )
        if plan is not None:
            metrics.record_cache(
                outcome.label,
                HIT if hit else plan.label,
                saved_tokens=outcome.saved_tokens,
                saved_s=outcome.saved_s,
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
        """The primary model under its name and the alias, and every model a ready member
        serves, each with what its GGUF says of itself."""
        created = int(time.time())
        policy = self.registry.policy
        names = [
            policy.model_id,
            *sorted(n for n in self.registry.by_model if n not in (policy.model_id, MODEL_ALIAS)),
        ]
        data = []
        for name in names:
            served = policy.models.get(name)
            meta = (
                {k: v for k, v in served.facts.items() if k not in ("path", "hash_progress")}
                if served
                else {}
            )
            entry = {"id": name, "object": "model", "created": created, "owned_by": "vibeadmin"}
            data.append(
                {**entry, "vibeadmin": {**meta, "primary": name == policy.model_id}} if meta else entry
            )
            if name == policy.model_id:
                data.append({**entry, "id": MODEL_ALIAS, "vibeadmin": {"alias_of": name}})
        return {"object": "list", "data": data}

    def client_address(self, scope) -> str:
        peer = (scope.get("client") or ("",))[0]
        return client_address(peer, header_joined(scope, b"x-forwarded-for"))

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
        limit = min(policy.tutor.max_chars, settings.VIBEADMIN_MAX_PROMPT_CHARS)
        if len(problem) > limit:  # the operator's cap, as a conversation's (tutor.py)
            raise errors.invalid(
                f"the problem is {len(problem)} characters long; this page sends at most {limit} characters",
                param="problem",
                code="prompt_too_long",  # the single-problem field's code, as platforms already read it
            )
        messages = [{"role": "user", "content": problem}]
    ceiling = policy.solve_max_tokens
    max_tokens = body.get("max_tokens")  # none: the task's default, within the ceiling (prepare)
    if type(max_tokens) is int and max_tokens > ceiling:  # validate() refuses other types
        raise errors.invalid(
            f"answers on this page are limited to {ceiling} tokens; choose a shorter answer",
            param="max_tokens",
            code="max_tokens_over_solve_limit",
        )
    return {
        "model": MODEL_ALIAS,
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
