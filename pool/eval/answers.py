"""Reading the final answer out of a model's reply: the last \\boxed{...}, else the last
number; both compared with the expected one as exact fractions, so 0.75, 3/4 and
\\frac{3}{4} are the same answer and 0.333 is not 1/3."""

from __future__ import annotations

import re
from fractions import Fraction

_BOXED = "\\boxed{"
# \frac{a}{b} (and \dfrac, \tfrac), a/b, or a number with optional thousands commas and decimals.
_NUMBER = re.compile(
    r"(?P<sign>-\s*)?(?:\\[dt]?frac\{\s*(?P<fn>-?\d+)\s*\}\{\s*(?P<fd>\d+)\s*\}"
    r"|(?P<n>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:\s*/\s*(?P<d>\d+))?)"
)


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...}, braces balanced."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def last_number(text: str) -> Fraction | None:
    found = None
    for match in _NUMBER.finditer(text.replace("\u2212", "-")):
        found = _value(match)
    return found


def _value(match: re.Match) -> Fraction | None:
    if match["fn"] is not None:
        value = Fraction(int(match["fn"]), int(match["fd"])) if int(match["fd"]) else None
    else:
        value = Fraction(match["n"].replace(",", ""))
        if match["d"] is not None:
            value = value / int(match["d"]) if int(match["d"]) else None
    if value is not None and match["sign"]:
        value = -value
    return value


def final_answer(reply: str) -> tuple[Fraction | None, str]:
    """The answer the reply gives, and the text it was read from (for the results page)."""
    boxed = last_boxed(reply)
    source = boxed if boxed is not None else reply
    value = last_number(source)
    shown = boxed if boxed is not None else (_NUMBER.findall(reply) and str(value)) or ""
    return value, (shown or "")[:64]


def is_correct(reply: str, expected: str) -> tuple[bool, str]:
    value, shown = final_answer(reply)
    return value is not None and value == Fraction(expected), shown
