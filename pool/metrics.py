"""What the gateway measures, two ways: Prometheus series for /metrics, and per-second
rolling windows in memory for the dashboard's live charts and its first 15 minutes.

Recording is on the hot path of every request, so it only bumps counters and appends to
the current second's bucket; percentiles are computed when someone reads.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)

REQUESTS = Counter("vibeadmin_requests_total", "Requests answered, by member and HTTP status", ["member", "status"])
KEY_REQUESTS = Counter("vibeadmin_key_requests_total", "Requests by platform key (or 'solve'/'open'), "
                       "routing strategy and HTTP status", ["key", "strategy", "status"])  # fmt: skip
INFLIGHT = Gauge("vibeadmin_member_inflight", "Requests in flight per member", ["member"])
QUEUE_DEPTH = Gauge("vibeadmin_queue_depth", "Requests waiting for a free member")
LATENCY = Histogram("vibeadmin_request_latency_seconds", "Whole-request latency", ["member"], buckets=LATENCY_BUCKETS)
TTFT = Histogram("vibeadmin_time_to_first_token_seconds", "Time to first token", ["member"], buckets=LATENCY_BUCKETS)
QUEUE_WAIT = Histogram("vibeadmin_queue_wait_seconds", "Time spent waiting for a member", buckets=LATENCY_BUCKETS)
TOKENS = Counter("vibeadmin_tokens_total", "Tokens by member and kind (prompt, completion)", ["member", "kind"])
RETRIES = Counter("vibeadmin_retries_total", "Requests retried on another member", ["member"])
MEMBER_STATE = Gauge("vibeadmin_member_state", "1 for the state each member is in", ["member", "state"])

HISTORY_S = 15 * 60


@dataclass
class Second:
    """Everything that finished in one wall-clock second."""

    at: int
    requests: int = 0
    errors: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    by_member: dict[str, list] = field(default_factory=dict)  # name -> [requests, errors, tokens, latencies]
    queue_depth: int = 0
    inflight: int = 0


class Window:
    """The last HISTORY_S seconds, one bucket each."""

    def __init__(self, seconds: int = HISTORY_S):
        self.seconds: deque[Second] = deque(maxlen=seconds)

    def current(self, now: float | None = None) -> Second:
        at = int(now if now is not None else time.time())
        if not self.seconds or self.seconds[-1].at != at:
            self.seconds.append(Second(at))
        return self.seconds[-1]

    def last(self, span_s: int, now: float | None = None) -> list[Second]:
        cutoff = int(now if now is not None else time.time()) - span_s
        return [s for s in self.seconds if s.at > cutoff]


window = Window()


def record_request(
    *, member: str, status: int, latency_s: float, ttft_s: float | None = None,
    prompt_tokens: int = 0, completion_tokens: int = 0, queue_wait_s: float = 0.0, key: str = "", strategy: str = "",
) -> None:  # fmt: skip
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
    second = window.current()
    second.requests += 1
    second.errors += error
    second.completion_tokens += completion_tokens
    second.latencies.append(latency_s)
    if ttft_s is not None:
        second.ttfts.append(ttft_s)
    if member:
        row = second.by_member.setdefault(member, [0, 0, 0, []])
        row[0] += 1
        row[1] += error
        row[2] += completion_tokens
        row[3].append(latency_s)


def record_load(*, queue_depth: int, inflight_by_member: dict[str, int]) -> None:
    """Sampled once a second by the gateway: gauges that are not per request."""
    QUEUE_DEPTH.set(queue_depth)
    for name, n in inflight_by_member.items():
        INFLIGHT.labels(name).set(n)
    second = window.current()
    second.queue_depth = queue_depth
    second.inflight = sum(inflight_by_member.values())


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(span_s: int = 60, now: float | None = None) -> dict:
    """Pool-wide and per-member figures over the last `span_s` seconds."""
    seconds = window.last(span_s, now)
    latencies = [x for s in seconds for x in s.latencies]
    requests = sum(s.requests for s in seconds)
    errors = sum(s.errors for s in seconds)
    members: dict[str, dict] = {}
    for s in seconds:
        for name, (n, err, tokens, lats) in s.by_member.items():
            row = members.setdefault(name, {"requests": 0, "errors": 0, "tokens": 0, "latencies": []})
            row["requests"] += n
            row["errors"] += err
            row["tokens"] += tokens
            row["latencies"] += lats
    return {
        "span_s": span_s,
        "requests": requests,
        "rps": requests / span_s,
        "error_rate": errors / requests if requests else 0.0,
        "p50_s": percentile(latencies, 0.5),
        "p95_s": percentile(latencies, 0.95),
        "mean_s": sum(latencies) / len(latencies) if latencies else None,
        "ttft_p50_s": percentile([x for s in seconds for x in s.ttfts], 0.5),
        "tokens_per_s": sum(s.completion_tokens for s in seconds) / span_s,
        "members": {
            name: {
                "rps": row["requests"] / span_s,
                "errors": row["errors"],
                "tokens_per_s": row["tokens"] / span_s,
                "p50_s": percentile(row["latencies"], 0.5),
                "p95_s": percentile(row["latencies"], 0.95),
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
            "tokens": s.completion_tokens,
            "p50_s": percentile(s.latencies, 0.5),
            "p95_s": percentile(s.latencies, 0.95),
            "ttft_s": percentile(s.ttfts, 0.5),
            "queue": s.queue_depth,
            "inflight": s.inflight,
        }
        for s in window.last(span_s, now)
    ]
