"""The gateway's side of the answer cache: for one request, what the cache does and the
stored answer it may serve (`find`), a stored answer served like a live one (`serve_hit`),
and a miss relayed through a shared generation (`relay`) whose answer is stored when it
ends by itself. The parts it calls each do one thing and return: the key (cache_key.py),
the store (answer_store.py), the reply shapes (replies.py), the shared generations
(collapse.py).

Who may be served a stored answer: the solve page (on by default, Routing page) and keys
that opted in (`apikey create --cache`). With temperature above 0 only where the tenant
allows sampled answers too. `Cache-Control: no-cache` from a key asks for a fresh
answer, which replaces that key's own stored one (the cache is per tenant), and is counted
as a refresh in the cache's figures; the solve page's answers are every student's, so there
it is ignored (app.py).
"""

from __future__ import annotations

import asyncio
import dataclasses

from pool.gateway.answer_store import AnswerStore
from pool.gateway.asgi_io import JSON_HEADERS, SSE_HEADERS
from pool.gateway.cache_key import cache_key, is_sampled
from pool.gateway.collapse import Delivery, Flight, Flights, Served, subscribe
from pool.gateway.exchange import Exchange
from pool.gateway.outcome import Outcome
from pool.gateway.replies import Answer, StreamWriter, whole_reply
from pool.gateway.types import BYPASS, HIT, MISS, REFRESH, Plan, RouteContext
from pool.gateway.validation import Validated

CHAT_PATH = "/v1/chat/completions"
MAX_TURNS = 3  # a follower whose flight failed tries a fresh one this many times, then alone


def wants_fresh(cache_control: str | None) -> bool:
    return cache_control is not None and "no-cache" in cache_control.lower()


class Answers:
    def __init__(self) -> None:
        self.cache = AnswerStore()
        self.flights = Flights()

    async def find(
        self,
        path: str,
        request: Validated,
        outcome: Outcome,
        *,
        on: bool,
        sampled_ok: bool,
        fresh: bool,
        model_sha256: str | None,
        epoch: int,
        tenant: str,
        samples: int = 1,
    ) -> Answer | None:
        """What the cache does for this request (into `outcome.cache_plan`), and the stored
        answer if it may serve one."""
        self.cache.sync_epoch(epoch)
        plan = outcome.cache_plan = self.plan(
            path,
            request,
            on=on,
            sampled_ok=sampled_ok,
            fresh=fresh,
            model_sha256=model_sha256,
            tenant=tenant,
            samples=samples,
        )
        if not plan.serve:
            return None
        return await self.cache.lookup(plan.key, plan.model_sha256)

    @staticmethod
    def plan(
        path: str,
        request: Validated,
        *,
        on: bool,
        sampled_ok: bool,
        fresh: bool,
        model_sha256: str | None,
        tenant: str,
        samples: int = 1,
    ) -> Plan:
        body = request.body
        if not on or path != CHAT_PATH or model_sha256 is None or body.get("n", 1) != 1:
            return Plan(BYPASS)
        if is_sampled(body) and not sampled_ok:
            return Plan(BYPASS)  # never served to this tenant: not worth storing either
        # A voted answer is another answer than one sample's: its own key, per k.
        keyed = {**body, "_samples": samples} if samples > 1 else body
        key = cache_key(model_sha256, path, request.task, keyed, tenant)
        return Plan(REFRESH if fresh else MISS, key, not fresh, model_sha256)

    async def serve_hit(self, send, answer: Answer, request: Validated, outcome: Outcome) -> None:
        """A stored answer, in the shape the client asked for, without a member or the line."""
        saved(outcome, answer)
        headers = [(b"x-vibeadmin-cache", HIT.encode())]
        model = request.body["model"]
        if request.stream:
            usage = client_wants_usage(request.body)
            shape, body = SSE_HEADERS, StreamWriter(model).whole(answer, include_usage=usage, cached=True)
        else:
            shape, body = JSON_HEADERS, whole_reply(answer, model, cached=True)
        await send({"type": "http.response.start", "status": 200, "headers": [*shape, *headers]})
        await send({"type": "http.response.body", "body": body})

    async def relay(
        self,
        send,
        path: str,
        request: Validated,
        ctx: RouteContext,
        outcome: Outcome,
        plan: Plan,
        exchange: Exchange,
    ) -> None:
        """A miss: join the generation under way for this key, or start it."""
        delivery = Delivery(
            send, request.stream, client_wants_usage(request.body), request.body["model"], headers=[]
        )
        for turn in range(MAX_TURNS + 1):
            share = plan.serve and turn < MAX_TURNS  # the last turn: a generation of its own
            stored = self.cache.peek(plan.key, plan.model_sha256) if share else None
            if stored is not None:  # stored while this request looked in the table or waited
                await self.serve_hit(send, stored, request, outcome)
                return
            flight = self.flights.get(plan.key) if share else None
            leader = flight is None
            if flight is None:
                flight = self.flights.start(
                    plan.key, self.generation(path, request, ctx, outcome, exchange, plan), share=share
                )
            label = plan.label if leader else HIT
            delivery.leader, delivery.cached = leader, not leader
            delivery.headers = [(b"x-vibeadmin-cache", label.encode())]
            if not leader:
                delivery.headers.append((b"x-vibeadmin-shared", b"in-flight"))
            outcome.cache_served = not leader
            try:
                served = await subscribe(flight, delivery)
            except asyncio.CancelledError:
                if leader and flight.task is not None and not flight.task.done():
                    # Others still wait for this answer: this request's account (its member's
                    # tokens) closes when the generation does.
                    await asyncio.wait({flight.task})
                raise
            if leader:
                if served is Served.NOTHING:
                    await replay_failure(send, flight)
                return
            if served is not Served.NOTHING:
                saved(outcome, flight.answer)
                return
            outcome.cache_served = False

    def generation(
        self,
        path: str,
        request: Validated,
        ctx: RouteContext,
        outcome: Outcome,
        exchange: Exchange,
        plan: Plan,
    ):
        """The flight's work: the exchange streams the member's answer into the flight (the
        leader's account is charged for it); a whole answer is stored."""

        async def generate(flight: Flight) -> None:
            payload = {**request.body, "stream": True}
            outcome.stream = True  # the exchange streams from the member whatever the client asked
            await exchange.run(flight.send, path, payload, ctx, outcome)
            answer = flight.answer
            answer.prompt_tokens, answer.completion_tokens = outcome.prompt_tokens, outcome.completion_tokens
            answer.generation_s, answer.model_sha256 = outcome.upstream_s, plan.model_sha256
            if flight.status == 200 and not flight.broken and answer.finish_reason == "stop":
                self.cache.store(
                    plan.key, dataclasses.replace(answer, deltas=list(answer.deltas)), ctx.tenant.id
                )

        return generate


async def replay_failure(send, flight: Flight) -> None:
    """The first request of a failed flight gets what went wrong, as a plain exchange would."""
    if flight.error is not None:
        raise flight.error
    status = flight.status if flight.status and flight.status != 200 else 502
    body = (
        flight.error_reply
        or b'{"error": {"message": "the member ended the answer without finishing it", "type": "server_error", "param": null, "code": "upstream_error"}}'
    )
    await send({"type": "http.response.start", "status": status, "headers": [*JSON_HEADERS, *flight.headers]})
    await send({"type": "http.response.body", "body": body})


def client_wants_usage(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def saved(outcome: Outcome, answer: Answer) -> None:
    """Served without generating (no member): charged nothing, and what it saved is counted."""
    outcome.status, outcome.member = 200, ""
    outcome.prompt_tokens = outcome.completion_tokens = outcome.counted_tokens = 0
    outcome.saved_tokens = answer.prompt_tokens + answer.completion_tokens
    outcome.saved_s = answer.generation_s
    outcome.cache_served = True
