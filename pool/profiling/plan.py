"""What a profile measures and how long each measurement may take: the candidate layouts
for this host, the length of one point so that the whole profile fits its budget, when a
layout stops early, and which measured layout is best for the operator's target.

Pure functions over plain figures: the runner (pool/profiling/runner.py) does the measuring.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Answers at once at each point, as the issue asks: 1, 2, 4, 8 and 16.
LEVELS = (1, 2, 4, 8, 16)
# After this level a layout clearly behind the best so far stops (skips 8 and 16).
PRUNE_AT = 4
# "Clearly below": on shared cores one point moves by 10-20% between runs, so a layout
# is dropped only when it is more than 20% behind; closer ones are measured in full.
PRUNE_BELOW = 0.8
# What starting and stopping a layout's processes (model load from the page cache, warm-up) is
# planned to take; the runner measures the real time and the deadline holds regardless.
START_S = 10.0
# A point shorter than this measures the burst at its start more than the steady pace.
MIN_POINT_S = 3.0
MAX_POINT_S = 20.0
# Kept back from the budget: for starts slower than planned on busy cores, and STOP_S of
# it for stopping the last processes and saving the results.
RESERVE_S = 10.0
STOP_S = 8.0  # seen: 7 s on 2 cores shared with other work

# A typical solve's answer: the 1.5B's answers to simple math problems ran 130-370 tokens.
TYPICAL_ANSWER_TOKENS = 300

ANSWERS = "answers"  # target: most answers per minute
TTFT = "ttft"  # target: lowest time to first token at a given load
TARGETS = (ANSWERS, TTFT)


@dataclass(frozen=True)
class Layout:
    """How the host's cores (or GPU) are split: members x threads x slots, and layers on a GPU."""

    members: int
    threads: int
    slots: int
    gpu_layers: int = 0  # 0 on a CPU host; -1 = every layer on the GPU

    @property
    def label(self) -> str:
        text = (
            f"{self.members} x {self.threads} thread{'s' if self.threads != 1 else ''} x {self.slots} slots"
        )
        if self.gpu_layers:
            text += ", all layers on GPU" if self.gpu_layers < 0 else f", {self.gpu_layers} layers on GPU"
        return text

    @property
    def key(self) -> str:
        return f"{self.members}x{self.threads}x{self.slots}@{self.gpu_layers}"

    def as_dict(self) -> dict:
        return {**asdict(self), "label": self.label, "key": self.key}

    @classmethod
    def from_dict(cls, data: dict) -> Layout:
        return cls(
            int(data["members"]), int(data["threads"]), int(data["slots"]), int(data.get("gpu_layers", 0))
        )


def candidates(cores: int, *, gpu: bool = False, current: Layout | None = None) -> list[Layout]:
    """A handful of layouts worth measuring here, the current one first (the others are
    judged against it). On CPU: 1, 2 or 4 members sharing the cores, with 8 or 16 slots in
    all (16 is the most answers the profile sends at once), plus one member with 4 slots.
    On a GPU: one member, every layer on it, 8 to 32 slots (a batched step costs little
    more than a single one there; layers off the GPU only slow it down)."""
    cores = max(1, cores)
    found: list[Layout] = []
    if gpu:
        found = [Layout(1, cores, slots, -1) for slots in (8, 16, 32)]
    else:
        for members in (1, 2, 4):
            if members > cores:
                break
            threads = cores // members
            for total in (8, 16):
                found.append(Layout(members, threads, max(1, total // members)))
        found.append(Layout(1, cores, 4))
    if current is not None:
        found = [current, *[layout for layout in found if layout != current]]
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Plan:
    layouts: list[Layout]
    levels: tuple[int, ...]
    point_s: float  # each point's measuring window
    warm_s: float  # before it: the burst of N answers starting
    budget_s: float

    @property
    def planned_s(self) -> float:
        """The worst case: every layout measured at every level."""
        return len(self.layouts) * (START_S + len(self.levels) * (self.point_s + self.warm_s))

    def as_dict(self) -> dict:
        return {
            "layouts": [layout.as_dict() for layout in self.layouts],
            "levels": list(self.levels),
            "point_s": round(self.point_s, 1),
            "warm_s": round(self.warm_s, 1),
            "budget_s": self.budget_s,
            "planned_s": round(self.planned_s),
        }


class PlanError(ValueError):
    """The budget cannot hold even the shortest profile; the message says what to do."""


def make_plan(
    layouts: list[Layout], budget_s: float, levels: tuple[int, ...] = LEVELS, *, point_s: float | None = None
) -> Plan:
    """Points as long as the budget allows with every layout measured in full (pruning
    only ends a profile sooner), but no shorter than MIN_POINT_S: then fewer layouts.
    A `point_s` of the operator's is kept as given, if every layout fits with it."""
    if not layouts:
        raise PlanError("no layout to measure")
    usable = budget_s - RESERVE_S
    if point_s is not None:
        if point_s < 1:
            raise PlanError("a point must last at least 1 s")
        plan = Plan(list(layouts), tuple(levels), point_s, point_s / 4, budget_s)
        if plan.planned_s > usable:
            raise PlanError(
                f"{len(layouts)} layouts with points of {point_s:g} s need {math.ceil(plan.planned_s + RESERVE_S)} s: "
                "give a longer budget, shorter points or fewer layouts"
            )
        return plan
    kept = list(layouts)
    while kept:
        per_point = (usable / len(kept) - START_S) / len(levels)
        point_s = per_point / 1.25  # a fifth more for the warm-up before each window
        if point_s >= MIN_POINT_S:
            point_s = min(point_s, MAX_POINT_S)
            return Plan(kept, tuple(levels), point_s, point_s / 4, budget_s)
        kept.pop()  # the last candidates are the least likely; the current layout stays
    least = RESERVE_S + START_S + len(levels) * MIN_POINT_S * 1.25
    raise PlanError(f"a budget of {budget_s:g} s is too short: give at least {math.ceil(least)} s")


def should_prune(tokens_per_s_at: float, best_at: float | None) -> bool:
    """After PRUNE_AT: stop a layout whose tokens/s there is clearly below the best's."""
    return best_at is not None and best_at > 0 and tokens_per_s_at < PRUNE_BELOW * best_at


def stalled(tokens_per_s: float) -> bool:
    """Not one token in a point's window: more answers at once will not do better, so the
    layout stops there (seen: a 2-thread member on busy cores, 4 s a token)."""
    return tokens_per_s <= 0


def answers_per_minute(tokens_per_s: float, answer_tokens: int) -> float:
    """Answers of `answer_tokens` each a minute at a pace of `tokens_per_s` in all."""
    return tokens_per_s * 60 / max(1, answer_tokens)


@dataclass(frozen=True)
class Point:
    """One measurement: `layout` with `level` answers at once."""

    layout: str  # Layout.key
    level: int
    tokens_per_s: float
    ttft_p50_s: float | None
    ttft_censored: bool = False  # more than half had no first token when the point ended


def best_layout(points: list[Point], layouts: list[Layout], *, target: str, load: int = 1) -> Layout | None:
    """The measured layout best for `target`: the most tokens/s at any level measured in
    full (ANSWERS), or the lowest p50 TTFT at the measured level nearest `load` from above,
    more tokens/s breaking a tie (TTFT). None when nothing qualifies."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose {' or '.join(TARGETS)}")
    by_key = {layout.key: layout for layout in layouts}
    mine: dict[str, dict[int, Point]] = {}
    for p in points:
        if p.layout in by_key:
            mine.setdefault(p.layout, {})[p.level] = p
    if target == ANSWERS:
        complete = {key: levels for key, levels in mine.items() if all(lv in levels for lv in LEVELS)}
        pool = complete or mine  # a partial profile: choose among what was measured
        if not pool:
            return None
        key = max(pool, key=lambda k: max(p.tokens_per_s for p in pool[k].values()))
        return by_key[key]
    level = next((lv for lv in LEVELS if lv >= load), LEVELS[-1])
    at_level = [levels[level] for levels in mine.values() if level in levels]
    timed = [p for p in at_level if p.ttft_p50_s is not None and not p.ttft_censored]
    if not timed:
        return None
    winner = min(timed, key=lambda p: (p.ttft_p50_s, -p.tokens_per_s))
    return by_key[winner.layout]


def measured_points(run) -> list[Point]:
    """A stored profile's points (ProfileRun.points holds one dict per Point)."""
    return [Point(**p) for p in run.points]


def planned_layouts(run) -> list[Layout]:
    return [Layout.from_dict(d) for d in run.plan.get("layouts", [])]
