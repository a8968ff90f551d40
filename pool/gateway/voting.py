"""Voting (self-consistency): k independent answers to one request, the final answer of each
read with the eval's own checker (pool/final_answers.py), and the reply the solution of the
majority answer with how the samples agreed: `vibeadmin.agreement` {"answer", "votes", "of"}
("tie": true where the top answers tied; "answer": null then, or where none gave one) in
the reply, and in the last event of a stream.

The samples go to one member's slots together where it has room (RouteContext.near), so
llama-server processes the prompt once and decodes them in one batch. Each waits in the
fair line as a request of its own, so a k-sample request counts k there, and every
sample's tokens are charged to the tenant.

A platform's stream is the majority's solution, sent once the vote is in. The solve page
(`live`) sees the first sample as it is generated, then one `event: vibeadmin` with the
agreement and, where the majority reached another answer, the majority's solution.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass

from pool.final_answers import Agreement, as_text, final_answer, vote
from pool.gateway import errors
from pool.gateway.answer_store import AnswerStore
from pool.gateway.answers import Plan, client_wants_usage, replay_failure
from pool.gateway.asgi_io import JSON_HEADERS, SSE_HEADERS
from pool.gateway.collapse import Flight, Flights
from pool.gateway.outcome import Outcome
from pool.gateway.progress import event
from pool.gateway.replies import Answer, StreamWriter, whole_reply
from pool.gateway.sse import error_event
from pool.gateway.types import RouteContext
from pool.gateway.validation import Validated

SEEDS = 2**63


@dataclass(frozen=True)
class Voted:
    """The vote's result: the solution to show and how the samples agreed."""

    answer: Answer
    agreement: Agreement
    headers: list[tuple[bytes, bytes]]


def samples_for(request: Validated, default: int, cap: int) -> int:
    """How many samples: the request's own (refused over the operator's cap), else the
    tenant's default for math. Hints mode votes on its hidden answer, not on hints."""
    if request.samples > cap:
        raise errors.invalid(
            f"vibeadmin.samples may be at most {cap} on this pool",
            param="vibeadmin.samples",
            code="too_many_samples",
        )
    if request.samples > 1 and "messages" not in request.body:
        raise errors.invalid("vibeadmin.samples needs a chat request (messages)", param="vibeadmin.samples")
    k = request.samples or (default if request.task == "math" else 1)
    k = max(1, min(k, cap))
    if k > 1 and request.body.get("temperature") == 0:
        raise errors.invalid(
            "vibeadmin.samples needs a temperature above 0: at 0 every sample is the same answer",
            param="temperature",
            code="samples_need_temperature",
        )
    return k


def sample_payloads(body: dict, k: int) -> list[dict]:
    """Streamed (the gateway reads each whole); a caller's seed becomes k different seeds."""
    seed = body.get("seed")
    out = []
    for i in range(k):
        payload = {**body, "stream": True}
        if type(seed) is int:
            payload["seed"] = (seed + i) % SEEDS
        out.append(payload)
    return out


def sample_outcome(outcome: Outcome) -> Outcome:
    return Outcome(
        outcome.started,
        label=outcome.label,
        key=outcome.key,
        prompt_estimate=outcome.prompt_estimate,
        prefix=outcome.prefix,
        max_tokens=outcome.max_tokens,
        stream=True,
    )


class Voting:
    def __init__(self, exchange, router, store: AnswerStore) -> None:
        self.exchange = exchange
        self.router = router
        self.store = store  # the answer cache: a voted answer is stored with its agreement
        self.flights = Flights()

    def near(self, ctx: RouteContext) -> int:
        """The member the samples share while it has room: the strategy's pick now."""
        members = [m for m in self.router.registry.routable() if m.has_room]
        picked = self.router.pick(members, ctx) if members else None
        return picked.id if picked is not None else 0

    async def run(
        self,
        send,
        path: str,
        request: Validated,
        ctx: RouteContext,
        outcome: Outcome,
        k: int,
        *,
        live: bool,
        plan: Plan | None = None,
    ) -> None:
        outcomes = [sample_outcome(outcome) for _ in range(k)]
        outcomes[0].watch = outcome.watch
        flights = self.start(path, sample_payloads(request.body, k), ctx, outcomes)
        model = request.body["model"]
        writer: StreamWriter | None = None
        try:
            if live:
                writer = await stream_first(send, flights[0], model)
                if writer is not None and not flights[0].ok:
                    return  # the streamed sample failed mid-way: its error event was the end
            await asyncio.gather(*(f.task for f in flights if f.task is not None), return_exceptions=True)
        finally:
            for flight in flights:
                if flight.task is not None and not flight.task.done():
                    flight.task.cancel()
            await asyncio.gather(*(f.task for f in flights if f.task is not None), return_exceptions=True)
            settle(outcome, outcomes)
        voted = tally(flights)
        if voted is None:
            await replay_failure(send, flights[0])
            return
        if plan is not None and plan.key:
            voted.headers.append((b"x-vibeadmin-cache", plan.label.encode()))
            if voted.answer.finish_reason == "stop" and voted.agreement.answer is not None:
                # A class asking the same problem pays for its k samples once.
                stored = dataclasses.replace(voted.answer, model_sha256=plan.model_sha256)
                self.store.store(plan.key, stored, ctx.tenant.id)
        outcome.member = next((v.decode() for name, v in voted.headers if name == b"x-vibeadmin-member"), "")
        if writer is not None:
            await end_live(send, writer, flights[0], voted, client_wants_usage(request.body))
        elif request.stream:
            await send_stream(send, voted, model, client_wants_usage(request.body))
        else:
            await send_whole(send, voted, model)

    def start(
        self, path: str, payloads: list[dict], ctx: RouteContext, outcomes: list[Outcome]
    ) -> list[Flight]:
        """The samples' generations, under way together, each into its own collector."""
        ctx = dataclasses.replace(ctx, near=self.near(ctx))
        return [
            self.flights.start("", self.generation(path, payload, ctx, sample), share=False)
            for payload, sample in zip(payloads, outcomes, strict=True)
        ]

    async def collect(
        self, path: str, payloads: list[dict], ctx: RouteContext, outcome: Outcome
    ) -> list[Flight]:
        """Generations out of the client's sight (hints mode's hidden answer, a held hint),
        whole; their tokens added to `outcome`'s account."""
        outcomes = [sample_outcome(outcome) for _ in payloads]
        flights = self.start(path, payloads, ctx, outcomes)
        try:
            await asyncio.gather(*(f.task for f in flights if f.task is not None), return_exceptions=True)
        finally:
            for flight in flights:
                if flight.task is not None and not flight.task.done():
                    flight.task.cancel()
            await asyncio.gather(*(f.task for f in flights if f.task is not None), return_exceptions=True)
            outcome.prompt_tokens += sum(s.prompt_tokens for s in outcomes)
            outcome.completion_tokens += sum(s.completion_tokens for s in outcomes)
            outcome.counted_tokens += sum(s.counted_tokens for s in outcomes)
            outcome.queue_wait_s += max(s.queue_wait_s for s in outcomes)
        return flights

    def generation(self, path: str, payload: dict, ctx: RouteContext, outcome: Outcome):
        async def generate(flight: Flight) -> None:
            try:
                await self.exchange.run(flight.send, path, payload, ctx, outcome)
            finally:
                flight.answer.prompt_tokens = outcome.prompt_tokens
                flight.answer.completion_tokens = outcome.completion_tokens
                flight.answer.generation_s = outcome.upstream_s

        return generate


def settle(outcome: Outcome, samples: list[Outcome]) -> None:
    """The request's account is every sample's: all their tokens, the longest wait."""
    outcome.prompt_tokens = sum(s.prompt_tokens for s in samples)
    outcome.completion_tokens = sum(s.completion_tokens for s in samples)
    outcome.counted_tokens = sum(s.counted_tokens for s in samples)
    outcome.queue_wait_s = max(s.queue_wait_s for s in samples)
    outcome.upstream_s = max(s.upstream_s for s in samples)
    outcome.ttft_s = samples[0].ttft_s
    answered = [s.status for s in samples if s.status]
    outcome.status = 200 if 200 in answered else (answered[0] if answered else outcome.status)


def tally(flights: list[Flight]) -> Voted | None:
    """The vote over the samples that ended with an answer; a failed one counts as no
    answer. None when none ended with one."""
    if not any(f.ok for f in flights):
        return None
    texts = [f.answer.text() if f.ok else "" for f in flights]
    agreement = vote(texts)
    chosen = flights[agreement.chosen] if flights[agreement.chosen].ok else next(f for f in flights if f.ok)
    answer = dataclasses.replace(
        chosen.answer,
        deltas=list(chosen.answer.deltas),
        prompt_tokens=sum(f.answer.prompt_tokens for f in flights),
        completion_tokens=sum(f.answer.completion_tokens for f in flights),
        agreement=agreement.as_dict(),
    )
    return Voted(answer, agreement, list(chosen.headers))


def agreement_field(voted: Voted) -> dict:
    return {"agreement": voted.agreement.as_dict()}


async def send_whole(send, voted: Voted, model: str) -> None:
    reply = json.loads(whole_reply(voted.answer, model, cached=False))
    reply["vibeadmin"] = agreement_field(voted)
    headers = [*JSON_HEADERS, *voted.headers]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(reply, ensure_ascii=False).encode()})


async def send_stream(send, voted: Voted, model: str, include_usage: bool) -> None:
    writer = StreamWriter(model)
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *voted.headers]})
    body = b"".join(writer.delta(d) for d in voted.answer.deltas)
    await send({"type": "http.response.body", "body": body + last_events(writer, voted, include_usage)})


def last_events(writer: StreamWriter, voted: Voted, include_usage: bool) -> bytes:
    return ending(writer, voted.answer, include_usage, agreement_field(voted))


def ending(writer: StreamWriter, answer: Answer, include_usage: bool, told: dict) -> bytes:
    """The finishing chunk with `told` as its `vibeadmin` (beside its choices), the usage, [DONE]."""
    end = writer.end(answer, include_usage=include_usage, cached=False)
    first, _, rest = end.partition(b"\n\n")
    chunk = json.loads(first[len(b"data: ") :])
    chunk["vibeadmin"] = told
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n" + rest


async def stream_first(send, flight: Flight, model: str) -> StreamWriter | None:
    """The first sample to the client as it is generated. None when it failed before a
    token was sent (the reply is then the vote's, or the failure)."""
    writer: StreamWriter | None = None
    sent = 0
    while True:
        if flight.status == 200 and not flight.broken and flight.answer.deltas:
            if writer is None:
                writer = StreamWriter(model)
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *flight.headers]}
                )
            deltas = flight.answer.deltas
            out = b"".join(writer.delta(d) for d in deltas[sent:])
            sent = len(deltas)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
        if flight.done:
            if writer is not None and not flight.ok:
                error = flight.error or errors.upstream_failed("the member generating this answer failed")
                await send({"type": "http.response.body", "body": error_event(error) + b"data: [DONE]\n\n"})
            return writer
        await flight.changed()


async def end_live(send, writer: StreamWriter, first: Flight, voted: Voted, include_usage: bool) -> None:
    """After the streamed sample: the agreement, and the majority's solution where the
    streamed one reached another answer (or none)."""
    told: dict = agreement_field(voted)
    streamed, _ = final_answer(first.answer.text())
    majority = voted.agreement.answer
    if majority is not None and (streamed is None or as_text(streamed) != majority):
        told["majority"] = {"content": voted.answer.text()}
    await send({"type": "http.response.body", "body": event(told), "more_body": True})
    await send({"type": "http.response.body", "body": last_events(writer, voted, include_usage)})
