"""The answer cache's key keeps meaning: pairs that are different problems stay apart
(NFKC once made 2⁵ of 25 and x² of x2, and whitespace is a Python program's meaning),
pairs that are one problem typed two ways meet."""

from __future__ import annotations

import unicodedata

import pytest

from pool.gateway.cache_key import normalise

APART = [
    ("Compute 2⁵+3", "Compute 25+3"),  # superscript
    ("x²+1", "x2+1"),
    ("a₁ + a₂", "a1 + a2"),  # subscripts
    ("x⁻¹", "x-1"),
    ("½ of 10", "1/2 of 10"),  # a fraction
    ("f′(x)", "f'(x)"),  # a prime
    ("３＋４", "3+4"),  # full-width against ASCII
    ("ﬁnd x", "find x"),  # a ligature
]
CODE_APART = [
    ("if x:\n    y()\nz()", "if x:\n    y()\n    z()"),  # indentation
    ("print('a  b')", "print('a b')"),  # spaces inside a string
]
MEET = [
    ("Solve 2x+3=7\r\n", "Solve 2x+3=7"),  # line endings, a trailing newline
    ("Solve  2x + 3 = 7  ", "Solve 2x + 3 = 7"),  # runs of spaces and trailing ones, outside code
    (unicodedata.normalize("NFD", "Résoudre"), "Résoudre"),  # NFC
]


@pytest.mark.parametrize(("one", "other"), APART)
def test_different_problems_keep_different_keys(one, other):
    assert normalise(one) != normalise(other)
    assert normalise(one, "code") != normalise(other, "code")


@pytest.mark.parametrize(("one", "other"), CODE_APART)
def test_a_programs_whitespace_is_its_meaning(one, other):
    assert normalise(one, "code") != normalise(other, "code")


@pytest.mark.parametrize(("one", "other"), MEET)
def test_one_problem_typed_two_ways_meets(one, other):
    assert normalise(one) == normalise(other)


def test_indentation_is_kept_outside_code_too():
    assert normalise("Steps:\n  1. add\n  2. divide") == "Steps:\n  1. add\n  2. divide"
