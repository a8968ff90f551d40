"""The strategies benchmark's workload in a queueing model: what each strategy can reach at
best, free of timing noise and with enough requests for a steady p99.

A discrete-event simulation of the measured run: the same problems' lengths, the same
service time model (fixed + per token, calibrated on a fake member), Poisson arrivals,
4 members that each serve one request at a time in arrival order. A member takes up to
`cap` requests (the members' max_inflight); beyond that requests wait in the gateway's
FIFO queue and go to the first member with room, as vibeadmin's router does. cap=1 is a
central queue (M/G/4 first come first served); a large cap is a balancer without a queue
of its own, where members queue (nginx).

The strategies are modelled as vibeadmin implements them (pool/gateway/strategies.py): round
robin skips full members, least connections and power of two count requests in the
member, least work sums the max_tokens of the requests in the member.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence

import numpy as np

POLICIES = ("round_robin", "least_connections", "power_of_two", "least_work")


class Pool:
    """The members' state at one moment of the simulation."""

    def __init__(self, members: int, cap: int, rng: random.Random) -> None:
        self.cap = cap
        self.rng = rng
        self.count = [0] * members  # requests in the member: in service and waiting at its lock
        self.work = [0] * members  # the tokens those requests asked for
        self.free_at = [0.0] * members  # when the member has finished all it holds
        self.next = 0  # round robin's pointer

    def with_room(self) -> list[int]:
        return [m for m in range(len(self.count)) if self.count[m] < self.cap]

    def cheapest(self, cost: Callable[[int], float]) -> int | None:
        room = self.with_room()
        if not room:
            return None
        best = min(cost(m) for m in room)
        return self.rng.choice([m for m in room if cost(m) == best])


def pick(policy: str, pool: Pool, tokens: int) -> int | None:
    if policy == "round_robin":
        n = len(pool.count)
        for step in range(n):
            m = (pool.next + step) % n
            if pool.count[m] < pool.cap:
                pool.next = m + 1
                return m
        return None
    if policy == "least_connections":
        return pool.cheapest(lambda m: pool.count[m])
    if policy == "power_of_two":
        room = pool.with_room()
        if len(room) < 2:
            return room[0] if room else None
        a, b = pool.rng.sample(room, 2)
        return a if pool.count[a] <= pool.count[b] else b
    if policy == "least_work":
        return pool.cheapest(lambda m: pool.work[m] + tokens)
    raise ValueError(policy)


def simulate(
    policy: str,
    arrivals: Sequence[float],
    tokens: Sequence[int],
    service: Sequence[float],
    *,
    members: int = 4,
    cap: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """Each request's latency (seconds): from arrival to the end of its reply."""
    pool = Pool(members, cap, random.Random(seed))
    finish = np.zeros(len(arrivals))
    ends: list[tuple[float, int, int]] = []  # (time, member, request): replies ending
    waiting: list[int] = []  # the gateway's FIFO queue
    head = 0

    def assign(j: int, m: int, now: float) -> None:
        start = max(pool.free_at[m], now)
        pool.free_at[m] = finish[j] = start + service[j]
        pool.count[m] += 1
        pool.work[m] += tokens[j]
        heapq.heappush(ends, (finish[j], m, j))

    def end_until(now: float) -> None:
        nonlocal head
        while ends and ends[0][0] <= now:
            t, m, j = heapq.heappop(ends)
            pool.count[m] -= 1
            pool.work[m] -= tokens[j]
            if head < len(waiting):  # a freed slot goes to the earliest waiter, on this member
                assign(waiting[head], m, t)
                head += 1

    for j, at in enumerate(arrivals):
        end_until(at)
        m = pick(policy, pool, tokens[j]) if head == len(waiting) else None  # FIFO: no overtaking
        if m is None:
            waiting.append(j)
        else:
            assign(j, m, at)
    end_until(float("inf"))
    return finish - np.asarray(arrivals)


def model(
    lengths: Sequence[int],
    fixed: float,
    per_token: float,
    *,
    load: float = 0.8,
    members: int = 4,
    caps: Sequence[int] = (64, 4, 1),
    requests: int = 20000,
    seeds: int = 3,
) -> dict:
    """p50/p99 latency per cap and policy at `load`, averaged over seeds, and the ratios to
    round robin's p99 at the same cap."""
    mean = sum(fixed + per_token * t for t in lengths) / len(lengths)
    rate = load * members / mean
    rows = []
    for cap in caps:
        for policy in POLICIES:
            p50s, p99s = [], []
            for seed in range(seeds):
                rng = random.Random(seed)
                arrivals = np.cumsum([rng.expovariate(rate) for _ in range(requests)]).tolist()
                tokens = [rng.choice(lengths) for _ in range(requests)]
                service = [fixed + per_token * t for t in tokens]
                latency = simulate(policy, arrivals, tokens, service, members=members, cap=cap, seed=seed)
                steady = latency[requests // 20 :]  # the first 5% fill an empty pool
                p50s.append(float(np.percentile(steady, 50)))
                p99s.append(float(np.percentile(steady, 99)))
            rows.append(
                {"cap": cap, "policy": policy, "p50_s": float(np.mean(p50s)), "p99_s": float(np.mean(p99s))}
            )
    for row in rows:
        base = next(r for r in rows if r["cap"] == row["cap"] and r["policy"] == "round_robin")
        row["p99_vs_round_robin"] = row["p99_s"] / base["p99_s"]
    return {"load": load, "members": members, "requests": requests, "seeds": seeds, "rows": rows}
