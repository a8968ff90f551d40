"""The canary gate's decision: a sequential test on the problems the baseline answers right,
and the live figures that can roll a canary back sooner. Pure functions, no pool."""

from __future__ import annotations

from pool.eval.gate import SequentialTest, Side, decide
from pool.services.rollouts import PROMOTE, ROLL_BACK


def run(pairs: list[tuple[bool, bool]], limit: int = 40) -> tuple[str | None, int]:
    """(verdict, problems asked) for these (baseline right, canary right) answers."""
    test, canary, baseline = SequentialTest(), Side(), Side()
    for n, (b, c) in enumerate(pairs, start=1):
        baseline.asked, baseline.passed = baseline.asked + 1, baseline.passed + b
        canary.asked, canary.passed = canary.asked + 1, canary.passed + c
        test.observe(b, c)
        verdict, _ = decide(test, canary, baseline, n, limit)
        if verdict:
            return verdict, n
    return None, len(pairs)


def test_the_same_model_is_promoted_after_six_agreeing_answers():
    assert run([(True, True)] * 40) == (PROMOTE, 6)


def test_a_model_that_cannot_answer_is_rolled_back_after_two_of_the_baseline_s_right_answers():
    assert run([(True, False)] * 40) == (ROLL_BACK, 2)


def test_problems_the_baseline_gets_wrong_decide_nothing():
    assert run([(False, False), (False, True)] * 10, limit=40) == (None, 20)


def test_one_slip_of_a_good_canary_does_not_cry_wolf():
    verdict, _ = run([(True, True)] * 3 + [(True, False)] + [(True, True)] * 30)
    assert verdict == PROMOTE


def test_at_the_limit_an_undecided_gate_promotes_only_a_canary_not_worse():
    assert run([(True, True), (True, False), (True, True), (False, False)], limit=4)[0] == ROLL_BACK
    assert run([(True, True), (True, True), (False, True), (False, False)], limit=4)[0] == PROMOTE


def test_failed_requests_roll_a_canary_back_before_its_answers_are_judged():
    canary, baseline = Side(errors=3), Side(errors=0)
    verdict, why = decide(SequentialTest(), canary, baseline, 3, 40)
    assert verdict == ROLL_BACK and "the canary failed 3 requests" in why


def test_a_canary_much_slower_to_its_first_token_is_rolled_back():
    canary = Side(ttfts=[9.0] * 5)
    baseline = Side(ttfts=[1.0] * 5)
    verdict, why = decide(SequentialTest(), canary, baseline, 5, 40)
    assert verdict == ROLL_BACK and "time to first token p95 is 9.0s against 1.0s" in why
