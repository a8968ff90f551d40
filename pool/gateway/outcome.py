"""One request's account: who asked, what it was admitted with, what it cost and produced.
Filled in as the request goes (the exchange writes into it even while the client leaves,
so a stream cut short still has its tokens), and closed in one place, Gateway.finish."""

from __future__ import annotations

from dataclasses import dataclass

from pool.gateway.limits import Pass
from pool.gateway.registry import KeyInfo
from pool.gateway.router import Watch
from pool.gateway.types import Plan, Reservation

CLIENT_GONE = 499  # the client went away before the answer was whole, as nginx logs it


@dataclass(slots=True, eq=False)
class Outcome:
    started: float  # perf_counter() at arrival
    label: str = ""  # for metrics: the key's name, "open", or "solve"
    key: KeyInfo | None = None
    user: str = ""  # the student it is for (students.py), "" for the key's own
    admitted: Pass | None = None  # set once the limits let it through
    prompt_estimate: int = 0
    prefix: str = ""  # the prompt's cache key (affinity.prefix_key), for the router
    model: str = ""  # the library model whose members serve it
    by_alias: bool = False  # asked for the primary alias: a canary may take it
    max_tokens: int = 0
    stream: bool = False
    member: str = ""
    status: int = 0  # 0: nothing to count (a listing, or a client gone before its request was whole)
    ttft_s: float | None = None
    queue_wait_s: float = 0.0
    upstream_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted_tokens: int = 0  # ... of which the charts counted as they streamed
    generated_since: float | None = None  # time.time() it went to the member that answered
    cache_plan: Plan | None = None  # what the answer cache does for it
    cache_served: bool = False  # answered from the cache or another request's generation
    saved_tokens: int = 0  # ... which would have cost these tokens
    saved_s: float = 0.0  # ... and these member-seconds
    quota: Reservation | None = None  # held until it ends
    student_quota: Reservation | None = None  # ... and the student's own, within the key's
    watch: Watch | None = None  # set when the client asked to hear its place in line

    @property
    def failed(self) -> bool:
        return self.status >= 500 or self.status == CLIENT_GONE

    def tokens_used(self) -> int:
        """What the request is charged: the member's counts, or the gateway's. A client that
        left a whole (not streamed) answer is charged all it reserved: the member generates
        it anyway, and nobody counted it. An answer served from the cache or another
        request's generation costs nothing."""
        if self.cache_served:
            return 0
        if self.status == CLIENT_GONE and not self.stream and not self.completion_tokens:
            return self.prompt_estimate + self.max_tokens
        return self.prompt_tokens + self.completion_tokens
