"""The answer cache: a repeated problem is answered from a stored answer instead of a member.

The key is what determines an answer: the model file (its sha256, pool/model_identity.py),
the task, the messages as sent (the operator's system prompt included) normalised (Unicode
NFKC, runs of whitespace as one space, case and numbers exactly as written) and every
other field that reaches the member (temperature, top_p, seed, stop, max_tokens...).
Only answers that ended by themselves (finish_reason "stop") are stored.

Where it lives: the database (CacheEntry), shared by every gateway, with an in-memory
front of the entries this gateway used lately. A lookup is a dict read; only a front miss
reads the table, in a worker thread (sync_to_async), so the event loop never waits on the
database. Writes are behind: a new answer is saved by a spawned thread task, and hits are
counted in memory and written with the periodic upkeep (`maintain`), which also applies
the TTL, the entries limit (least recently used first) and drops other models' entries.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from pool import metrics
from pool.gateway.tasks import spawn
from pool.models import CacheEntry
from pool.services import cache

log = logging.getLogger("pool.gateway")

HIT, MISS, BYPASS = "hit", "miss", "bypass"
FRONT_MAX = 4096  # entries kept in memory in front of the table
# Fields that change how the answer is delivered, not what it says.
NOT_DETERMINING = frozenset({"stream", "stream_options", "user", "model"})
DELTA_FIELDS = ("content", "reasoning_content")  # what an answer's deltas may carry
NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def normalise(text: str) -> str:
    """NFKC, and runs of whitespace as one space: the same problem pasted from a PDF or
    typed by hand. Case and digits are kept: "2x+3=7" and "2x+3=8" are two problems."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def cache_key(model_sha256: str, path: str, task: str, body: dict, tenant: str) -> str:
    """Within one tenant (a key, or the solve page's students): a platform must not learn
    from a hit's speed or header what another platform's users asked."""
    determining = {k: v for k, v in body.items() if k not in NOT_DETERMINING}
    for name in NUMBERS:  # temperature 0 and 0.0 are one setting
        if name in determining:
            determining[name] = float(determining[name])
    if "messages" in body:
        determining["messages"] = [
            {**m, "content": normalise(m["content"]) if isinstance(m["content"], str) else m["content"]}
            for m in body["messages"]
        ]
    if isinstance(body.get("prompt"), str):
        determining["prompt"] = normalise(body["prompt"])
    determining["_model"], determining["_path"], determining["_task"] = model_sha256, path, task
    determining["_tenant"] = tenant
    canonical = json.dumps(determining, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def is_sampled(body: dict) -> bool:
    """With temperature above 0 (or none given: members default to 0.8) an answer is one
    sample of what the model would say."""
    temperature = body.get("temperature")
    return temperature is None or temperature > 0


@dataclass
class Answer:
    """A whole answer as the gateway keeps it: the member's deltas in order (a hit streams
    them like a live answer), how it ended and what it cost."""

    deltas: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generation_s: float = 0.0
    model_sha256: str = ""

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
        )

    def text(self, name: str = "content") -> str:
        return "".join(d.get(name, "") for d in self.deltas)


@dataclass(slots=True)
class _Front:
    answer: Answer
    expires: float  # time.time()


class AnswerCache:
    def __init__(self) -> None:
        self.front: OrderedDict[str, _Front] = OrderedDict()
        self.epoch = 0
        self.touched: dict[str, int] = {}  # key -> hits not yet written
        self.failing = ""  # the last database error, for the dashboard; "" when all is well

    def sync_epoch(self, epoch: int) -> None:
        """ "Empty cache" on any gateway raises the epoch: drop what this one holds."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.front.clear()
            self.touched.clear()

    def peek(self, key: str, model_sha256: str) -> Answer | None:
        """The answer if this gateway holds it in memory: no await, so nothing can change
        between the look and what the caller does next."""
        held = self.front.get(key)
        if held is None:
            return None
        if held.expires > time.time() and held.answer.model_sha256 == model_sha256:
            self.front.move_to_end(key)
            self.touched[key] = self.touched.get(key, 0) + 1
            return held.answer
        del self.front[key]
        return None

    async def lookup(self, key: str, model_sha256: str) -> Answer | None:
        held = self.peek(key, model_sha256)
        if held is not None:
            return held
        try:
            found = await sync_to_async(_read, thread_sensitive=False)(key, model_sha256)
        except Exception as exc:  # the database away: a miss, said on the dashboard
            self.fail("read", exc)
            return None
        if found is None:
            return None
        answer, expires = found
        self.remember(key, answer, expires)
        self.touched[key] = self.touched.get(key, 0) + 1
        return answer

    def remember(self, key: str, answer: Answer, expires: float) -> None:
        self.front[key] = _Front(answer, expires)
        self.front.move_to_end(key)
        while len(self.front) > min(FRONT_MAX, settings.VIBEADMIN_CACHE_ENTRIES):
            self.front.popitem(last=False)

    def store(self, key: str, answer: Answer, tenant: str) -> None:
        """Keep a whole answer (the caller checked it ended by itself): in memory at once
        (before the generation is over for the requests waiting on it), in the table from a
        worker thread."""
        if settings.VIBEADMIN_CACHE_ENTRIES == 0:
            return
        self.remember(key, answer, time.time() + settings.VIBEADMIN_CACHE_TTL_S)
        spawn(self.write(key, answer, tenant))

    async def write(self, key: str, answer: Answer, tenant: str) -> None:
        try:
            await sync_to_async(_write, thread_sensitive=False)(key, answer, tenant)
        except Exception as exc:
            self.fail("write", exc)

    def fail(self, what: str, exc: Exception) -> None:
        self.failing = f"could not {what} the answer cache: {exc}"[:300]
        log.warning("answer cache: could not %s the database: %s", what, exc)

    def maintain(self) -> None:
        """The periodic upkeep, in a worker thread: hits written, expired and least recently
        used entries (beyond the limit) deleted."""
        touched, self.touched = self.touched, {}
        close_old_connections()
        now = timezone.now()
        cache.add_hits(touched, now)
        cache.drop_expired(now - timedelta(seconds=settings.VIBEADMIN_CACHE_TTL_S))
        cache.trim(settings.VIBEADMIN_CACHE_ENTRIES)
        metrics.CACHE_ENTRIES.set(CacheEntry.objects.count())
        self.failing = ""

    @staticmethod
    def forget_other_models(model_sha256s: Iterable[str]) -> int:
        """A model file changed or left the library: its answers go (a thread, at the change)."""
        close_old_connections()
        return cache.keep_only_models(model_sha256s)


def _read(key: str, model_sha256: str) -> tuple[Answer, float] | None:
    close_old_connections()
    row = CacheEntry.objects.filter(key=key).values_list("answer", "model_sha256", "created_at").first()
    if row is None:
        return None
    raw, sha, created = row
    expires = created.timestamp() + settings.VIBEADMIN_CACHE_TTL_S
    answer = Answer.from_json(raw, model_sha256) if sha == model_sha256 else None
    if answer is None or expires <= time.time():
        log.info("answer cache: entry %s is corrupt, expired or another model's; dropped", key[:12])
        cache.drop_entry(key)
        return None
    return answer, expires


def _write(key: str, answer: Answer, tenant: str) -> None:
    close_old_connections()
    now = timezone.now()
    fields = {
        "model_sha256": answer.model_sha256,
        "tenant": tenant,
        "answer": answer.to_json(),
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "generation_s": answer.generation_s,
        "created_at": now,
        "used_at": now,
    }
    cache.store_entry(key, fields)


# --- an answer as OpenAI's chat completion, whole or streamed ----------------------------------


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
        out = self.chunk({"index": 0, "delta": {}, "logprobs": None, "finish_reason": answer.finish_reason})
        if include_usage:
            out += _event({**self.envelope, "choices": [], "usage": usage(answer, cached=cached)})
        return out + b"data: [DONE]\n\n"

    def chunk(self, choice: dict) -> bytes:
        return _event({**self.envelope, "choices": [choice]})


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
