"""What the gateway measures, two ways: Prometheus series for /metrics, and per-second
rolling windows in memory for the dashboard's live charts and its first 15 minutes.

Recording is on the hot path of every request, so it only bumps counters in the current
second. Latencies are kept as counts in log-spaced buckets (Dist), not raw lists: reading
15 minutes at a thousand requests a second merges a few thousand small dicts instead of
sorting nearly a million floats, which stalled the event loop.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)

REQUESTS = Counter(
    "vibeadmin_requests_total", "Requests answered, by member and HTTP status", ["member", "status"]
)
KEY_REQUESTS = Counter(
    "vibeadmin_key_requests_total",
    "Requests by platform key (or 'solve'/'open'), routing strategy and HTTP status",
    ["key", "strategy", "status"],
)
INFLIGHT = Gauge("vibeadmin_member_inflight", "Requests in flight per member", ["member"])
QUEUE_DEPTH = Gauge("vibeadmin_queue_depth", "Requests waiting for a free member")
LATENCY = Histogram(
    "vibeadmin_request_latency_seconds", "Whole-request latency", ["member"], buckets=LATENCY_BUCKETS
)
TTFT = Histogram(
    "vibeadmin_time_to_first_token_seconds", "Time to first token", ["member"], buckets=LATENCY_BUCKETS
)
QUEUE_WAIT = Histogram(
    "vibeadmin_queue_wait_seconds", "Time spent waiting for a member", buckets=LATENCY_BUCKETS
)
TOKENS = Counter(
    "vibeadmin_tokens_total", "Tokens by member and kind (prompt, completion)", ["member", "kind"]
)
RETRIES = Counter("vibeadmin_retries_total", "Requests retried on another member", ["member"])
MEMBER_STATE = Gauge("vibeadmin_member_state", "1 for the state each member is in", ["member", "state"])
# Fair sharing (pool/gateway/fair.py): per tenant (an API key's name, or "solve").
TENANT_WAITING = Gauge("vibeadmin_tenant_waiting", "Requests waiting for a member, per tenant", ["tenant"])
TENANT_SERVED = Counter(
    "vibeadmin_tenant_served_tokens_total", "Tokens generated for each tenant", ["tenant"]
)
EARLY_REJECTIONS = Counter(
    "vibeadmin_early_rejections_total",
    "Requests refused at once: their predicted wait passed the queue's deadline",
    ["tenant"],
)
PREDICTION_RATIO = Histogram(
    "vibeadmin_queue_wait_prediction_ratio",
    "A served waiter's real wait over the wait predicted when it arrived (1 is exact)",
    buckets=(0.25, 0.5, 0.7, 0.85, 1.0, 1.15, 1.3, 1.5, 2, 4),
)

HISTORY_S = 15 * 60


# Buckets 4% wide from 1 ms: a percentile read from them is within 4% of the true one.
_GROWTH = 1.04
_LOG_GROWTH = math.log(_GROWTH)
_FLOOR_S = 0.001


class Dist:
    """A distribution of durations: exact count, sum, min and max, and bucket counts."""

    __slots__ = ("buckets", "count", "total", "low", "high")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, x: float) -> None:
        i = 0 if x <= _FLOOR_S else int(math.log(x / _FLOOR_S) / _LOG_GROWTH) + 1
        self.buckets[i] = self.buckets.get(i, 0) + 1
        self.count += 1
        self.total += x
        self.low = min(self.low, x)
        self.high = max(self.high, x)

    def merge(self, other: Dist) -> Dist:
        for i, n in other.buckets.items():
            self.buckets[i] = self.buckets.get(i, 0) + n
        self.count += other.count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        return self

    @classmethod
    def of(cls, dists) -> Dist:
        merged = cls()
        for dist in dists:
            merged.merge(dist)
        return merged

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen >= rank:
                middle = _FLOOR_S * _GROWTH ** (i - 0.5) if i else _FLOOR_S
                return min(max(middle, self.low), self.high)
        return self.high

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class MemberSecond:
    requests: int = 0
    errors: int = 0
    tokens: float = 0.0  # completion tokens produced in this second (a whole answer's spread)
    latency: Dist = field(default_factory=Dist)


@dataclass
class Second:
    """Everything that finished in one wall-clock second."""

    at: int
    requests: int = 0
    errors: int = 0
    completion_tokens: float = 0.0  # produced in this second, not finished in it (add_tokens)
    latency: Dist = field(default_factory=Dist)
    ttft: Dist = field(default_factory=Dist)
    by_member: dict[str, MemberSecond] = field(default_factory=dict)
    queue_depth: int = 0
    inflight: int = 0
    served_by_tenant: dict[str, int] = field(default_factory=dict)  # tokens generated
    waiting_by_tenant: dict[str, int] | None = None  # sampled once a second
    predicted_s: float = 0.0  # sums over the waiters served this second, and how many
    waited_s: float = 0.0
    predictions: int = 0

    def member(self, name: str) -> MemberSecond:
        row = self.by_member.get(name)
        if row is None:
            row = self.by_member[name] = MemberSecond()
        return row


class Window:
    """The last HISTORY_S seconds, one bucket each."""

    def __init__(self, seconds: int = HISTORY_S):
        self.seconds: deque[Second] = deque(maxlen=seconds)

    def current(self, now: float | None = None) -> Second:
        at = int(now if now is not None else time.time())
        if not self.seconds or self.seconds[-1].at != at:
            self.seconds.append(Second(at))
        return self.seconds[-1]

    def at(self, t: int) -> Second | None:
        """The bucket of second `t`, made in its place if that second saw nothing yet; None
        for a second older than the window holds."""
        seconds = self.seconds
        if not seconds or seconds[-1].at < t:
            seconds.append(Second(t))
            return seconds[-1]
        i = len(seconds) - 1
        while i >= 0 and seconds[i].at > t:  # the seconds asked for are recent ones
            i -= 1
        if i >= 0 and seconds[i].at == t:
            return seconds[i]
        if len(seconds) == seconds.maxlen:  # full: the oldest goes, as append would drop it
            if i < 0:
                return None
            seconds.popleft()
            i -= 1
        seconds.insert(i + 1, Second(t))
        return seconds[i + 1]

    def last(self, span_s: int, now: float | None = None) -> list[Second]:
        cutoff = int(now if now is not None else time.time()) - span_s
        return [s for s in self.seconds if s.at > cutoff]


window = Window()

# Completion tokens land in the seconds they were produced in, so the tokens/s chart and figure
# show the pool's rate, not lumps at each answer's end: a stream's as its chunks pass
# (count_streamed), a whole answer's spread evenly over the time it was generated (add_tokens).
# A whole answer changes seconds already drawn: the snapshot resends the last REVISED_S.
REVISED_S = 300
_revised_from: int | None = None  # the oldest second a whole answer changed since the last push


def take_revised() -> int | None:
    """The oldest second changed after it was drawn, since the last call (the snapshot's)."""
    global _revised_from
    oldest, _revised_from = _revised_from, None
    return oldest


def count_streamed(member: str, tokens: int, now: float | None = None) -> None:
    """Tokens of a stream as they pass the gateway (on the hot path: a few additions)."""
    second = window.current(now)
    second.completion_tokens += tokens
    second.member(member).tokens += tokens


def add_tokens(member: str, tokens: float, start: float, end: float) -> None:
    """`tokens` produced evenly from `start` to `end` (wall clock), each second its share;
    what began before the last REVISED_S counts from there."""
    start = max(start, end - REVISED_S)
    if end - start < 1e-3 or tokens <= 0:
        second = window.current(end)
        second.completion_tokens = max(0.0, second.completion_tokens + tokens)
        if member:
            row = second.member(member)
            row.tokens = max(0.0, row.tokens + tokens)
        return
    global _revised_from
    _revised_from = min(int(start), _revised_from if _revised_from is not None else int(start))
    rate = tokens / (end - start)
    for t in range(int(start), int(end) + 1):
        share = rate * (min(end, t + 1) - max(start, t))
        bucket = window.at(t)
        if bucket is not None and share > 0:
            bucket.completion_tokens += share
            if member:
                bucket.member(member).tokens += share


def record_request(
    *,
    member: str,
    status: int,
    latency_s: float,
    ttft_s: float | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    queue_wait_s: float = 0.0,
    key: str = "",
    strategy: str = "",
    counted_tokens: int = 0,
    generated_since: float | None = None,
) -> None:
    """A request that ended. `counted_tokens` of its completion tokens were counted as they
    streamed; the rest are spread over its generation, from `generated_since` (wall clock)
    until now, or, without it, counted now."""
    error = status >= 500 or status == 0
    REQUESTS.labels(member or "-", str(status)).inc()
    if key:
        KEY_REQUESTS.labels(key, strategy or "-", str(status)).inc()
    if member:
        LATENCY.labels(member).observe(latency_s)
        if ttft_s is not None:
            TTFT.labels(member).observe(ttft_s)
        TOKENS.labels(member, "prompt").inc(prompt_tokens)
        TOKENS.labels(member, "completion").inc(completion_tokens)
    QUEUE_WAIT.observe(queue_wait_s)
    now = time.time()
    second = window.current(now)
    second.requests += 1
    second.errors += error
    second.latency.add(latency_s)
    if ttft_s is not None:
        second.ttft.add(ttft_s)
    if member:
        row = second.member(member)
        row.requests += 1
        row.errors += error
        row.latency.add(latency_s)
    rest = completion_tokens - counted_tokens  # a member's usage may differ from its events
    if rest:
        since = now if counted_tokens or generated_since is None else generated_since
        add_tokens(member, rest, since, now)


def record_load(
    *, queue_depth: int, inflight_by_member: dict[str, int], slots_by_member: dict[str, int] | None = None
) -> None:
    """Sampled once a second by the gateway: gauges that are not per request."""
    QUEUE_DEPTH.set(queue_depth)
    for name, n in inflight_by_member.items():
        INFLIGHT.labels(name).set(n)
    for name, n in (slots_by_member or {}).items():
        SLOTS.labels(name).set(n)
    second = window.current()
    second.queue_depth = queue_depth
    second.inflight = sum(inflight_by_member.values())


def record_served(by_tenant: dict[str, int]) -> None:
    """Tokens generated per tenant since the last call (the gateway calls it once a second)."""
    second = window.current()
    for tenant, tokens in by_tenant.items():
        TENANT_SERVED.labels(tenant).inc(tokens)
        second.served_by_tenant[tenant] = second.served_by_tenant.get(tenant, 0) + tokens


_waiting_tenants: set[str] = set()


def record_waiting(by_tenant: dict[str, int]) -> None:
    """Sampled once a second: who waits; a tenant that stopped waiting reads 0, not its last count."""
    for tenant in _waiting_tenants - by_tenant.keys():
        TENANT_WAITING.labels(tenant).set(0)
    _waiting_tenants.update(by_tenant)
    for tenant, n in by_tenant.items():
        TENANT_WAITING.labels(tenant).set(n)
    window.current().waiting_by_tenant = by_tenant


def record_early_rejection(tenant: str) -> None:
    EARLY_REJECTIONS.labels(tenant).inc()


def record_prediction(predicted_s: float, waited_s: float) -> None:
    """How good the predicted wait was, for a waiter that was served."""
    if predicted_s > 0:
        PREDICTION_RATIO.observe(waited_s / predicted_s)
    second = window.current()
    second.predicted_s += predicted_s
    second.waited_s += waited_s
    second.predictions += 1


NO_TENANT_FIGURES = {"waiting": 0, "share": "–"}


def tenant_summary(span_s: int = HISTORY_S, now: float | None = None) -> dict[str, dict]:
    """Per tenant, as this process saw it: waiting now, and its share of the tokens served."""
    seconds = window.last(span_s, now)
    served: dict[str, int] = {}
    for s in seconds:
        for tenant, n in s.served_by_tenant.items():
            served[tenant] = served.get(tenant, 0) + n
    waiting = next((s.waiting_by_tenant for s in reversed(seconds) if s.waiting_by_tenant is not None), {})
    total = sum(served.values())
    return {
        tenant: {
            "waiting": waiting.get(tenant, 0),
            "share": f"{served.get(tenant, 0) / total:.0%}" if total else "–",
        }
        for tenant in served.keys() | waiting.keys()
    }


def summary(span_s: int = 60, now: float | None = None) -> dict:
    """Pool-wide and per-member figures over the last `span_s` seconds."""
    seconds = window.last(span_s, now)
    latency = Dist.of(s.latency for s in seconds)
    requests = sum(s.requests for s in seconds)
    errors = sum(s.errors for s in seconds)
    members: dict[str, MemberSecond] = {}
    for s in seconds:
        for name, row in s.by_member.items():
            total = members.setdefault(name, MemberSecond())
            total.requests += row.requests
            total.errors += row.errors
            total.tokens += row.tokens
            total.latency.merge(row.latency)
    return {
        "span_s": span_s,
        "requests": requests,
        "rps": requests / span_s,
        "error_rate": errors / requests if requests else 0.0,
        "p50_s": latency.percentile(0.5),
        "p95_s": latency.percentile(0.95),
        "mean_s": latency.mean(),
        "ttft_p50_s": Dist.of(s.ttft for s in seconds).percentile(0.5),
        "tokens_per_s": sum(s.completion_tokens for s in seconds) / span_s,
        "members": {
            name: {
                "rps": row.requests / span_s,
                "errors": row.errors,
                "tokens_per_s": row.tokens / span_s,
                "p50_s": row.latency.percentile(0.5),
                "p95_s": row.latency.percentile(0.95),
            }
            for name, row in members.items()
        },
    }


def history(span_s: int = HISTORY_S, now: float | None = None) -> list[dict]:
    """One point per second that saw anything, oldest first, for the charts."""
    return [
        {
            "t": s.at,
            "rps": s.requests,
            "errors": s.errors,
            "tokens": round(s.completion_tokens, 1),
            "p50_s": s.latency.percentile(0.5),
            "p95_s": s.latency.percentile(0.95),
            "ttft_s": s.ttft.percentile(0.5),
            "queue": s.queue_depth,
            "inflight": s.inflight,
            "tenants": s.served_by_tenant,
            "waiting": s.waiting_by_tenant or {},
            "predicted_s": s.predicted_s / s.predictions if s.predictions else None,
            "waited_s": s.waited_s / s.predictions if s.predictions else None,
            "by_member": {name: round(row.tokens, 1) for name, row in s.by_member.items()},
        }
        for s in window.last(span_s, now)
    ]


def export_member_states(state_by_member: dict[str, str], all_states: list[str]) -> None:
    """vibeadmin_member_state: 1 for the state each member is in, 0 for the others."""
    MEMBER_STATE.clear()
    for member, current in state_by_member.items():
        for state in all_states:
            MEMBER_STATE.labels(member, state).set(1 if state == current else 0)


SLOTS = Gauge("vibeadmin_member_slots", "Answers each member decodes at once (its max in flight)", ["member"])
ENGINE = Gauge(
    "vibeadmin_member_engine_series",
    "llama-server's own /metrics series per member (llamacpp:NAME), as its supervisor's probe last read them",
    ["member", "series"],
)


def record_engine(member: str, series: dict[str, float]) -> None:
    """A llama-server member's own counters, read by the supervisor's probe."""
    for name, value in series.items():
        ENGINE.labels(member, name).set(value)


# --- the answer cache (pool/gateway/answers.py) ---------------------------------------

CACHE_REQUESTS = Counter(
    "vibeadmin_cache_requests_total",
    "Generation requests by tenant (key name, 'solve' or 'open') and what the answer cache did: "
    "hit (a stored answer or another request's generation), miss, bypass, refresh (a key's no-cache)",
    ["tenant", "result"],
)
CACHE_SAVED_TOKENS = Counter(
    "vibeadmin_cache_saved_tokens_total",
    "Tokens that answers served by the cache did not generate",
    ["tenant"],
)
CACHE_SAVED_SECONDS = Counter(
    "vibeadmin_cache_saved_member_seconds_total",
    "Member-seconds that answers served by the cache did not take",
    ["tenant"],
)
CACHE_ENTRIES = Gauge("vibeadmin_cache_entries", "Answers stored in the answer cache (all gateways)")
CACHE_DEGRADED = Gauge(
    "vibeadmin_cache_degraded",
    "1 while the answer cache cannot reach its table or quotas fail open (Redis away), by part",
    ["part"],
)
# What failed open, by part ("cache", "quotas"), as the gateway in this process last saw it:
# the dashboard shows it without importing the gateway.
degraded: dict[str, str] = {}


def set_degraded(part: str, message: str) -> None:
    degraded[part] = message
    CACHE_DEGRADED.labels(part).set(bool(message))


def record_cache(tenant: str, result: str, *, saved_tokens: int = 0, saved_s: float = 0.0) -> None:
    CACHE_REQUESTS.labels(tenant or "-", result).inc()
    if saved_tokens or saved_s:
        CACHE_SAVED_TOKENS.labels(tenant or "-").inc(saved_tokens)
        CACHE_SAVED_SECONDS.labels(tenant or "-").inc(saved_s)
