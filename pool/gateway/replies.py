"""A whole answer as the gateway keeps it (`Answer`), and its shapes as OpenAI's chat
completion: whole (`whole_reply`) or streamed (`StreamWriter`). Stored answers, answers
shared between identical requests and their hits are all rendered here."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import asdict, dataclass, field

from pool.gateway.types import HIT

DELTA_FIELDS = ("content", "reasoning_content")  # what an answer's deltas may carry


@dataclass
class Answer:
    """A whole answer: the member's deltas in order (a hit streams them like a live
    answer), how it ended and what it cost."""

    deltas: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generation_s: float = 0.0
    model_sha256: str = ""
    agreement: dict | None = None  # a voted answer's: {"answer", "votes", "of"} (voting.py)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str, model_sha256: str) -> Answer | None:
        """None for an entry that is corrupt or from another model: a miss, never a wrong answer."""
        try:
            data = json.loads(raw)
            answer = cls(**data)
        except (ValueError, TypeError):
            return None
        if answer.model_sha256 != model_sha256 or answer.finish_reason != "stop" or not answer.valid():
            return None
        return answer

    def valid(self) -> bool:
        counts = (self.prompt_tokens, self.completion_tokens)
        return (
            isinstance(self.deltas, list)
            and all(
                isinstance(d, dict)
                and d
                and all(k in DELTA_FIELDS and isinstance(v, str) for k, v in d.items())
                for d in self.deltas
            )
            and all(type(n) is int and n >= 0 for n in counts)
            and isinstance(self.generation_s, int | float)
            and (
                self.agreement is None
                or isinstance(self.agreement, dict)
                and all(type(self.agreement.get(n)) is int for n in ("votes", "of"))
                and isinstance(self.agreement.get("answer"), str)
            )
        )

    def text(self, name: str = "content") -> str:
        return "".join(d.get(name, "") for d in self.deltas)


def usage(answer: Answer, *, cached: bool) -> dict:
    """Token counts as OpenAI reports them; a cached answer says its prompt was cached and
    that nothing was generated for it (vibeadmin's own field)."""
    counts: dict[str, object] = {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }
    if cached:
        counts["prompt_tokens_details"] = {"cached_tokens": answer.prompt_tokens}
        counts["vibeadmin"] = {"cache": HIT, "generated_tokens": 0}
    return counts


_ids = itertools.count()
_ID_PREFIX = f"chatcmpl-va-{uuid.uuid4().hex[:12]}-"  # this process's: ids stay unique across gateways


def new_id() -> str:
    return f"{_ID_PREFIX}{next(_ids)}"  # a counter: uuid4 per reply was a tenth of a hit's cost


def whole_reply(answer: Answer, model: str, *, cached: bool) -> bytes:
    message: dict = {"role": "assistant", "content": answer.text()}
    reasoning = answer.text("reasoning_content")
    if reasoning:
        message["reasoning_content"] = reasoning
    reply = {
        "id": new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
        ],
        "usage": usage(answer, cached=cached),
    }
    if answer.agreement is not None:
        reply["vibeadmin"] = {"agreement": answer.agreement}
    return json.dumps(reply, ensure_ascii=False).encode()


class StreamWriter:
    """Chunks of one streamed reply, in the shape members send them."""

    def __init__(self, model: str) -> None:
        self.envelope = {
            "id": new_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self.first = True

    def delta(self, delta: dict) -> bytes:
        if self.first:
            delta, self.first = {"role": "assistant", **delta}, False
        return self.chunk({"index": 0, "delta": delta, "logprobs": None, "finish_reason": None})

    def end(self, answer: Answer, *, include_usage: bool, cached: bool) -> bytes:
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": answer.finish_reason}
        told = {"vibeadmin": {"agreement": answer.agreement}} if answer.agreement is not None else {}
        out = _event({**self.envelope, "choices": [choice], **told})
        if include_usage:
            out += _event({**self.envelope, "choices": [], "usage": usage(answer, cached=cached)})
        return out + b"data: [DONE]\n\n"

    def chunk(self, choice: dict) -> bytes:
        return _event({**self.envelope, "choices": [choice]})

    def whole(self, answer: Answer, *, include_usage: bool, cached: bool) -> bytes:
        """Every chunk of an answer already whole (a hit), at once."""
        events = b"".join(self.delta(d) for d in answer.deltas)
        return events + self.end(answer, include_usage=include_usage, cached=cached)


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
