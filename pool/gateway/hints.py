"""Hints that cannot give the answer away, and "check my answer".

A small model asked for a hint sometimes writes the whole solution: the instruction is a
request, not a guarantee. So in hints mode the server works the problem's final answer out
first, out of the student's sight (the student's first question solved as in solution
mode, voted where the tenant's samples are above 1, through the answer cache so a class
pays for it once), and holds every hint until it is whole. A hint that states that answer
in any form the checker reads (pool/final_answers.py: 50, 50 cm², \\boxed{50}, "fifty") is
not shown: the model is asked again with a firmer instruction, and a second leak is
replaced by what the server can say safely, the hint's sentences before the one that gave
the answer away (or, where none is left, a plain next-step instruction). Only a hint that
passed is stored in the answer cache. "Full solution" is not checked: it is asked for.

"Check my answer" compares the student's typed answer with that final answer as a value
and says right or not yet, never the answer itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from fractions import Fraction

from pool.final_answers import final_answer, gives_away, student_answer
from pool.gateway.answer_store import AnswerStore
from pool.gateway.answers import client_wants_usage, replay_failure
from pool.gateway.asgi_io import JSON_HEADERS, SSE_HEADERS
from pool.gateway.cache_key import cache_key
from pool.gateway.collapse import Flight
from pool.gateway.outcome import Outcome
from pool.gateway.prompts import PromptSettings, prepare_messages
from pool.gateway.replies import Answer, StreamWriter, whole_reply
from pool.gateway.types import Plan, RouteContext
from pool.gateway.validation import Validated
from pool.gateway.voting import Voting, ending, sample_payloads, tally

HIDDEN_MAX_TOKENS = 1024  # a whole solution (the 1.5B's take 130-370 tokens)
TRIES = 2  # the hint as asked, then once more with FIRMER; then the safe step
FIRMER = (
    "Your last reply gave the final answer away, which a hint must not do. Reply again with "
    "a hint only: one short step the student should take next, with no final result, no "
    "number that answers the question and no \\boxed{}."
)
NEXT_STEP = (
    "Take it one step at a time: write down what the problem gives you and what it asks for, "
    "then find one relation between them and work it out. When you have a result, check it "
    "with \u201cCheck my answer\u201d."
)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")
RIGHT, NOT_YET, UNREADABLE, UNKNOWN = "right", "not_yet", "unreadable", "unknown"


@dataclass(frozen=True)
class Hidden:
    """Where the hidden answer is kept and how it is worked out, for one tenant."""

    cache_on: bool
    tenant: str  # the answer cache's tenant ("solve", "key:<pk>")
    model_sha256: str | None
    samples: int
    max_tokens: int


@dataclass(frozen=True)
class Checked:
    """A hint as the student sees it, and what the check did."""

    text: str
    tries: int
    replaced: bool
    checked: bool  # False when no final answer could be worked out to check against

    def as_dict(self) -> dict:
        return {"checked": self.checked, "tries": self.tries, "replaced": self.replaced}


def hidden_body(problem: str, body: dict, task: str, prompts: PromptSettings, max_tokens: int) -> dict:
    """The student's first question as solution mode asks it: the task's system prompt, the
    request's sampling, a whole solution's length."""
    messages, _ = prepare_messages([{"role": "user", "content": problem}], task, prompts)
    kept = {k: v for k, v in body.items() if k in ("model", "temperature", "top_p", "seed")}
    return {**kept, "messages": messages, "max_tokens": max_tokens}


def safe_step(hint: str, answer: Fraction, problem: str) -> str:
    """The hint's sentences before the first that gives the answer away, or the plain step."""
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(hint.strip()):
        if gives_away(" ".join([*kept, sentence]), answer, problem) or "\\boxed" in sentence:
            break
        kept.append(sentence)
    text = " ".join(kept).strip()
    return text if len(text) >= 20 else NEXT_STEP


def firmer(body: dict) -> dict:
    messages = [dict(m) for m in body["messages"]]
    messages[-1]["content"] = f"{messages[-1]['content']}\n\n{FIRMER}"
    return {**body, "messages": messages}


def verdict(typed: str, answer: Fraction | None) -> str:
    if answer is None:
        return UNKNOWN
    value = student_answer(typed)
    if value is None:
        return UNREADABLE
    return RIGHT if value == answer else NOT_YET


class Hints:
    def __init__(self, voting: Voting, cache: AnswerStore) -> None:
        self.voting = voting
        self.cache = cache

    async def answer(
        self, path: str, body: dict, task: str, hidden: Hidden, ctx: RouteContext, outcome: Outcome
    ) -> Fraction | None:
        """The final answer, from the cache or worked out now (voted where samples > 1)."""
        key = cache_key(hidden.model_sha256, path, task, body, hidden.tenant) if hidden.model_sha256 else ""
        cached = hidden.cache_on and key
        stored = await self.cache.lookup(key, hidden.model_sha256 or "") if cached else None
        if stored is not None:
            return final_answer(stored.text())[0]
        ctx = dataclasses.replace(ctx, tokens=hidden.max_tokens)
        payloads = sample_payloads(body, hidden.samples)
        voted = tally(await self.voting.collect(path, payloads, ctx, outcome))
        if voted is None or voted.agreement.answer is None:
            return None
        if cached and voted.answer.finish_reason == "stop":
            self.cache.store(
                key, dataclasses.replace(voted.answer, model_sha256=hidden.model_sha256 or ""), hidden.tenant
            )
        return Fraction(voted.agreement.answer)

    async def hint(
        self, path: str, request: Validated, answer: Fraction | None, ctx: RouteContext, outcome: Outcome
    ) -> tuple[Flight, Checked | None]:
        """The hint, held whole and checked; the flight of its last try (None: it failed)."""
        body = {**request.body, "stream": True}
        for attempt in range(1, TRIES + 1):
            (flight,) = await self.voting.collect(path, [body], ctx, outcome)
            if not flight.ok:
                return flight, None
            text = flight.answer.text()
            if answer is None:
                return flight, Checked(text, attempt, replaced=False, checked=False)
            if not gives_away(text, answer, request.problem):
                return flight, Checked(text, attempt, replaced=False, checked=True)
            body = firmer(body)
        assert answer is not None
        return flight, Checked(safe_step(text, answer, request.problem), TRIES, replaced=True, checked=True)

    async def run(
        self,
        send,
        path: str,
        request: Validated,
        hidden_request: dict,
        hidden: Hidden,
        ctx: RouteContext,
        outcome: Outcome,
        plan: Plan | None,
    ) -> None:
        answer = await self.answer(path, hidden_request, request.task, hidden, ctx, outcome)
        flight, checked = await self.hint(path, request, answer, ctx, outcome)
        outcome.status = 200 if checked is not None else (flight.status or 502)
        if checked is None:
            await replay_failure(send, flight)
            return
        shown = Answer(
            deltas=[{"content": checked.text}],
            finish_reason=flight.answer.finish_reason,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            generation_s=outcome.upstream_s,
            model_sha256=hidden.model_sha256 or "",
        )
        store_key = plan.key if plan is not None else ""
        if store_key and checked.checked and not checked.replaced and shown.finish_reason == "stop":
            self.cache.store(store_key, dataclasses.replace(shown), hidden.tenant)  # passed: kept
        told = {"hint": checked.as_dict()}
        headers = list(flight.headers)
        if store_key:
            headers.append((b"x-vibeadmin-cache", plan.label.encode()))  # type: ignore[union-attr]
        model = request.body["model"]
        if not request.stream:
            reply = json.loads(whole_reply(shown, model, cached=False))
            reply["vibeadmin"] = told
            await send({"type": "http.response.start", "status": 200, "headers": [*JSON_HEADERS, *headers]})
            await send({"type": "http.response.body", "body": json.dumps(reply, ensure_ascii=False).encode()})
            return
        writer = StreamWriter(model)
        events = writer.delta(shown.deltas[0]) + ending(writer, shown, client_wants_usage(request.body), told)
        await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]})
        await send({"type": "http.response.body", "body": events})
