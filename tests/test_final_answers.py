"""Final answers as values: "check my answer" over every shipped problem, the hint check,
and the vote of independent samples. Pure functions: no server, no model."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pool.eval import problems as problem_set
from pool.final_answers import Agreement, gives_away, is_right, student_answer, vote

SHIPPED = problem_set.load()


def forms(answer: Fraction) -> list[str]:
    """Ways a student may type the answer."""
    text = str(answer.numerator) if answer.denominator == 1 else f"{answer.numerator}/{answer.denominator}"
    out = [text, f"\\boxed{{{text}}}", f"x = {text}", f"the answer is {text}", f" {text} dollars "]
    if answer.denominator != 1:
        out.append(f"\\frac{{{answer.numerator}}}{{{answer.denominator}}}")
        out.append(f"{2 * answer.numerator}/{2 * answer.denominator}")  # not in lowest terms: same value
    decimal = answer.numerator / answer.denominator
    if Fraction(str(decimal)) == answer:  # a terminating decimal
        out.append(str(decimal))
    return out


def test_check_my_answer_judges_every_shipped_problems_own_answer_right():
    assert len(SHIPPED) == 240
    wrong = [
        (p.id, form)
        for p in SHIPPED
        for form in forms(Fraction(p.answer))
        if not is_right(form, Fraction(p.answer))
    ]
    assert wrong == []


@pytest.mark.parametrize("delta", [Fraction(1), Fraction(-1), Fraction(1, 7)])
def test_check_my_answer_judges_a_perturbed_answer_wrong_on_every_shipped_problem(delta):
    judged_right = [
        p.id
        for p in SHIPPED
        for form in forms(Fraction(p.answer) + delta)
        if is_right(form, Fraction(p.answer))
    ]
    assert judged_right == []


def test_a_student_may_write_the_answer_in_words_or_with_units():
    assert student_answer("fifty") == 50
    assert student_answer("one hundred and five") == 105
    assert student_answer("Twenty-five apples") == 25
    assert student_answer("五十") == 50
    assert student_answer("一百零五元") == 105
    assert student_answer("50 cm²") == 50
    assert student_answer("50 cm^2") == 50
    assert student_answer("−7") == -7


def test_an_answer_with_two_values_or_none_is_no_answer():
    assert student_answer("3 or 4") is None
    assert student_answer("I don't know") is None
    assert not is_right("", Fraction(0))


PROBLEM = "A rectangle has perimeter 30 cm and its length is twice its width. What is its area?"


@pytest.mark.parametrize(
    "hint",
    [
        "So the area is \\boxed{50}.",
        "The area comes to 50 cm².",
        "Width 5, length 10, area 50.",
        "The area is fifty square centimetres.",
        "面积是五十平方厘米。",
        "The area is 5\\,0.",  # LaTeX's thin space inside the number
    ],
)
def test_a_hint_that_states_the_answer_in_any_form_is_caught(hint):
    assert gives_away(hint, Fraction(50), PROBLEM)


@pytest.mark.parametrize(
    "hint",
    [
        "Call the width w: then the length is 2w. What does the perimeter say about w?",
        "Write the perimeter as 2(l + w) = 30 and put l = 2w in it.",
    ],
)
def test_a_hint_toward_the_next_step_passes(hint):
    assert not gives_away(hint, Fraction(50), PROBLEM)


def test_a_number_the_problem_names_is_a_leak_only_when_stated_as_the_result():
    problem = "Solve for x: 3x + 3 = 12."
    assert not gives_away("Take 3 from both sides first.", Fraction(3), problem)
    assert gives_away("Take 3 from both sides: then x = 3.", Fraction(3), problem)
    assert gives_away("So x is 3.", Fraction(3), problem)


def test_the_majority_answer_wins_and_its_first_solution_is_chosen():
    replies = ["... \\boxed{400}", "... \\boxed{399}", "so 399", "\\boxed{399.0}", "no idea"]
    assert vote(replies) == Agreement("399", 3, 5, 1)
    assert vote(replies).as_dict() == {"answer": "399", "votes": 3, "of": 5}


def test_a_tie_and_no_answer_are_said_as_such():
    assert vote(["\\boxed{3}", "\\boxed{4}"]) == Agreement(None, 1, 2, 0, tie=True)
    assert vote(["\\boxed{3}", "\\boxed{4}"]).as_dict() == {"answer": None, "votes": 1, "of": 2, "tie": True}
    assert vote(["hmm", "no"]) == Agreement(None, 0, 2, 0)


def test_fractions_vote_as_values():
    assert vote(["\\boxed{\\frac{7}{6}}", "7/6", "\\boxed{1.5}"]).answer == "7/6"
