"""A canary's gate: the shipped problems asked of the canary and of the baseline (the old
model), the same problem to both at once, through the gateway as a `batch` client pinned
to each model by name; a sequential test decides as soon as the difference is clear either
way, with at most the operator's N problems; the live figures (errors, time to first token
p95) can roll it back sooner. The verdict goes to the rollout's row; the supervisor's
rollout machine acts on it.

The test: on each problem the baseline answers right, the canary's answer is a Bernoulli
trial. H0 "as good": it is right 90% of the time as often; H1 "worse": 50%. Wald's SPRT
with 5% errors each way: promote once the log-likelihood ratio falls to ln(1/19), roll back
once it reaches ln(19). At temperature 0 the same GGUF agrees with itself: 6 problems
promote it; a model that cannot answer fails 2 of the baseline's right answers and is
rolled back.
"""

from __future__ import annotations

import json
import math
import random
import time
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pool.eval.problems import Problem, load
from pool.eval.runner import ANSWER_TIMEOUT_S, BUSY_RETRIES, gateway_target
from pool.final_answers import is_correct
from pool.models import PoolSettings, Rollout
from pool.models import rollout_states as rs
from pool.models.quality import wilson_interval
from pool.services import audit
from pool.services.rollouts import PROMOTE, ROLL_BACK, rollout_decide, rollout_gate_figures

AS_GOOD, WORSE = 0.9, 0.5  # the canary's chance of a right answer where the baseline's is right
BOUND = math.log(19)  # alpha = beta = 0.05
GATE_MAX_TOKENS = 600  # enough for the shipped problems' working
TTFT_RATIO = 3.0  # canary's TTFT p95 against the baseline's, past which it is too slow
MIN_PAIRS_FOR_LIVE = 5
PAIRS_AT_ONCE = 2
MAX_EXTRA_ERRORS = 2


@dataclass
class Side:
    """One model's answers in the gate."""

    asked: int = 0
    passed: int = 0
    errors: int = 0
    ttfts: list[float] = field(default_factory=list)

    def p95_ttft(self) -> float | None:
        if not self.ttfts:
            return None
        ordered = sorted(self.ttfts)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def figures(self) -> dict:
        low, high = wilson_interval(self.passed, self.asked) if self.asked else (0.0, 1.0)
        return {
            "asked": self.asked,
            "passed": self.passed,
            "errors": self.errors,
            "pass_rate": round(self.passed / self.asked, 3) if self.asked else None,
            "interval": [round(low, 3), round(high, 3)],
            "ttft_p95_s": self.p95_ttft(),
        }


@dataclass
class SequentialTest:
    llr: float = 0.0  # log-likelihood ratio, worse over as good

    def observe(self, baseline_right: bool, canary_right: bool) -> None:
        if baseline_right:
            self.llr += math.log(WORSE / AS_GOOD) if canary_right else math.log((1 - WORSE) / (1 - AS_GOOD))

    def verdict(self) -> str | None:
        if self.llr >= BOUND:
            return ROLL_BACK
        if self.llr <= -BOUND:
            return PROMOTE
        return None


def decide(
    test: SequentialTest, canary: Side, baseline: Side, pairs: int, limit: int
) -> tuple[str | None, str]:
    """The verdict so far (None: ask another problem) and why."""
    if canary.errors >= baseline.errors + MAX_EXTRA_ERRORS + 1:
        return ROLL_BACK, f"the canary failed {canary.errors} requests, the baseline {baseline.errors}"
    slow, usual = canary.p95_ttft(), baseline.p95_ttft()
    if pairs >= MIN_PAIRS_FOR_LIVE and slow and usual and slow > TTFT_RATIO * usual and slow > 2.0:
        return ROLL_BACK, f"the canary's time to first token p95 is {slow:.1f}s against {usual:.1f}s"
    rates = f"canary {canary.passed}/{canary.asked}, baseline {baseline.passed}/{baseline.asked} right"
    verdict = test.verdict()
    if verdict == ROLL_BACK:
        return verdict, f"it answers worse ({rates}; sequential test, 5% error)"
    if verdict == PROMOTE:
        return verdict, f"it answers as well ({rates}; sequential test, 5% error)"
    if pairs >= limit:
        verdict = PROMOTE if test.llr <= 0 else ROLL_BACK
        return (
            verdict,
            f"undecided after {limit} problems ({rates}): {'promoted' if test.llr <= 0 else 'rolled back'}",
        )
    return None, rates


def gate_run(rollout_id: int, say) -> None:
    rollout = Rollout.objects.select_related("source", "target").get(pk=rollout_id)
    limit = PoolSettings.load().rollout_gate_max_problems
    problems = load()
    random.Random(rollout_id).shuffle(problems)
    target = gateway_target()
    canary, baseline, test = Side(), Side(), SequentialTest()
    say(
        f"Gate of rollout {rollout.pk}: {rollout.target.name} against {rollout.source.name}, at most {limit} problems"
    )
    verdict, why = None, ""
    # PAIRS_AT_ONCE problems in flight, so that the baseline's members all work; judged in order.
    pool = ThreadPoolExecutor(max_workers=2 * PAIRS_AT_ONCE, thread_name_prefix="gate")
    chosen = iter(problems[:limit])
    in_flight: deque = deque()

    def send_next() -> None:
        problem = next(chosen, None)
        if problem is not None:
            in_flight.append(
                [pool.submit(ask, target, m, problem) for m in (rollout.target.name, rollout.source.name)]
            )

    for _ in range(PAIRS_AT_ONCE):
        send_next()
    pairs = 0
    try:
        while in_flight:
            if Rollout.objects.filter(pk=rollout.pk, state=rs.CANARY).count() == 0:
                say("the rollout moved on without the gate")
                return
            (c_right, c_ttft, c_error), (b_right, b_ttft, b_error) = (f.result() for f in in_flight.popleft())
            pairs += 1
            send_next()
            record(canary, c_right, c_ttft, c_error)
            record(baseline, b_right, b_ttft, b_error)
            if not (c_error or b_error):
                test.observe(b_right, c_right)
            verdict, why = decide(test, canary, baseline, pairs, limit)
            save(rollout, canary, baseline, test, why)
            say(
                f"  {pairs}: canary {'right' if c_right else 'wrong'}, baseline {'right' if b_right else 'wrong'}; {why}"
            )
            if verdict:
                break
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # the verdict does not wait for answers still coming
    if verdict is None:
        verdict, why = ROLL_BACK, "the shipped problems ran out before a verdict"
    with audit.acting_as(audit.ROLLOUT):
        rollout.refresh_from_db()
        if rollout.state == rs.CANARY:
            rollout_gate_figures(rollout, reason=f"gate: {why}")
            rollout_decide(rollout=rollout, verdict=verdict, why=why)
    say(f"Verdict: {verdict}: {why}")


def record(side: Side, right: bool, ttft: float | None, error: str) -> None:
    side.asked += 1
    side.passed += right
    side.errors += bool(error)
    if ttft is not None:
        side.ttfts.append(ttft)


def save(rollout: Rollout, canary: Side, baseline: Side, test: SequentialTest, why: str) -> None:
    rollout_gate_figures(
        rollout,
        canary_asked=canary.asked,
        canary_passed=canary.passed,
        baseline_asked=baseline.asked,
        baseline_passed=baseline.passed,
        gate_figures={"canary": canary.figures(), "baseline": baseline.figures(), "llr": round(test.llr, 3)},
        reason=f"gate: {why}",
    )


def ask(target, model: str, problem: Problem) -> tuple[bool, float | None, str]:
    """One problem to one model, streamed: (right, time to first token, error or '')."""
    body = {
        **target.body,
        "model": model,
        "stream": True,
        "temperature": 0,
        "max_tokens": GATE_MAX_TOKENS,
        "messages": [{"role": "user", "content": problem.problem}],
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {target.api_key}"}
    for _ in range(BUSY_RETRIES):
        request = urllib.request.Request(
            target.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        started = time.monotonic()
        try:
            text, ttft = read_stream(request, started)
        except urllib.error.HTTPError as exc:
            if exc.code in (429, 503):  # the pool is full: the batch class waits its turn
                time.sleep(min(30.0, float(exc.headers.get("Retry-After") or 5)))
                continue
            return False, None, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return False, None, f"no answer: {exc}"[:200]
        right, _ = is_correct(text, problem.answer)
        return right, ttft, ""
    return False, None, "the pool stayed full"


def read_stream(request: urllib.request.Request, started: float) -> tuple[str, float | None]:
    parts: list[str] = []
    ttft = None
    with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT_S) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if "error" in event:
                raise ValueError(event["error"].get("message", "error event"))
            for choice in event.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content") or ""
                if delta and ttft is None:
                    ttft = time.monotonic() - started
                parts.append(delta)
    return "".join(parts), ttft
