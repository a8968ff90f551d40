"""How many hosts (members, GPUs) a stated peak needs, from a profile's measured pace
rather than a constant: `peak` answers at once of `answer_tokens` each, every one to be
finished within `within_s`.

A host running the profile's best layout makes rate(n) tokens/s with n answers at once
(measured at 1, 2, 4, 8 and 16; between two levels the figure of the lower one, past 16
the figure at 16: on a saturated host more at once only wait longer). Spread over H
hosts, each carries ceil(peak / H) answers, and finishes them all within
ceil(peak / H) x answer_tokens / rate(ceil(peak / H)) seconds; the fewest H for which that
is within `within_s` is the answer, plus spares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pool.profiling.plan import ANSWERS, Layout, Point, answers_per_minute, best_layout

MAX_HOSTS = 10_000


@dataclass(frozen=True)
class Sizing:
    layout: Layout
    gpu: bool
    hosts: int  # hosts (or GPUs) like the profiled one, before spares
    spares: int
    per_host: int  # answers at once on each host
    seconds: float  # time for each host to finish its share
    per_minute: float  # answers a minute one host makes at that load
    reachable: bool  # False: even MAX_HOSTS would not finish in time

    @property
    def members(self) -> int:
        return (self.hosts + self.spares) * self.layout.members

    @property
    def unit(self) -> str:
        return "GPU" if self.gpu else "host"


def rate_at(points: dict[int, float], n: int) -> float:
    """Tokens/s at n answers at once: the measured level at or below n (the lowest above
    when n is below every level)."""
    below = [level for level in points if level <= n]
    level = max(below) if below else min(points)
    return points[level]


def size(
    points: list[Point],
    layouts: list[Layout],
    *,
    gpu: bool,
    peak: int,
    answer_tokens: int,
    within_s: float,
    spares: int = 0,
) -> Sizing | None:
    """None when the profile measured nothing usable."""
    layout = best_layout(points, layouts, target=ANSWERS)
    if layout is None:
        return None
    rates = {p.level: p.tokens_per_s for p in points if p.layout == layout.key and p.tokens_per_s > 0}
    if not rates:
        return None
    hosts = 1
    while True:
        per_host = math.ceil(peak / hosts)
        rate = rate_at(rates, per_host)
        seconds = per_host * answer_tokens / rate
        if seconds <= within_s or hosts >= MAX_HOSTS or per_host == 1:
            return Sizing(
                layout,
                gpu,
                hosts,
                spares,
                per_host,
                seconds,
                answers_per_minute(rate, answer_tokens),
                reachable=seconds <= within_s,
            )
        hosts += 1
