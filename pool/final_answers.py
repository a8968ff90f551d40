"""Final answers as values: read out of a model's reply (the last \\boxed{...}, else the last
number) or a student's typed answer, compared as exact fractions, so 0.75, 3/4 and
\\frac{3}{4} are the same answer and 0.333 is not 1/3. The eval grades with it, the gateway
votes with it, checks a student's answer and holds back a hint that gives the answer away.

Number words count as numbers where they are whole ones: "fifty", "twenty-five", "五十".
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

_BOXED = "\\boxed{"
# \frac{a}{b} (and \dfrac, \tfrac), a/b, or a number with optional thousands commas and decimals.
_NUMBER = re.compile(
    r"(?P<sign>-\s*)?(?:\\[dt]?frac\{\s*(?P<fn>-?\d+)\s*\}\{\s*(?P<fd>\d+)\s*\}"
    r"|(?P<n>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:\s*/\s*(?P<d>\d+))?)"
)
# LaTeX's thin spaces inside numbers (5\,050) and the minus sign a reply may use.
_SPELLINGS = (("\\,", ""), ("\\!", ""), ("\u2212", "-"), ("\\left", ""), ("\\right", ""))

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()  # noqa: SIM905
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # noqa: SIM905
_WORD_VALUES = {w: i for i, w in enumerate(_ONES)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_WORDS = re.compile(
    r"\b(?:(?:{})(?:[\s-]+(?:and[\s-]+)?)?)+\b".format(
        "|".join(sorted([*_WORD_VALUES, *_SCALES], key=len, reverse=True))
    ),
    re.IGNORECASE,
)
_CHINESE_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
_CHINESE = re.compile("[{}]+".format("".join([*_CHINESE_DIGITS, *_CHINESE_UNITS])))


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


def _plain(text: str) -> str:
    for old, new in _SPELLINGS:
        text = text.replace(old, new)
    return text


def last_number(text: str) -> Fraction | None:
    found = None
    for match in _NUMBER.finditer(_plain(text)):
        found = _value(match)
    return found


def numbers(text: str) -> list[Fraction]:
    """Every value the text states: in digits, as fractions, and as number words."""
    values = [v for v in (_value(m) for m in _NUMBER.finditer(_plain(text))) if v is not None]
    values += [Fraction(v) for v in word_numbers(text)]
    return values


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


def word_numbers(text: str) -> list[int]:
    """Whole numbers written in English or Chinese words."""
    found = [_english(m.group(0)) for m in _WORDS.finditer(text)]
    found += [_chinese(m.group(0)) for m in _CHINESE.finditer(text)]
    return [n for n in found if n is not None]


def _english(words: str) -> int | None:
    total = current = 0
    for word in re.split(r"[\s-]+", words.lower()):
        if word in _WORD_VALUES:
            current += _WORD_VALUES[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _SCALES:
            total, current = total + max(current, 1) * _SCALES[word], 0
    return total + current


def _chinese(text: str) -> int | None:
    if len(text) == 1 and text in "一两":
        return None  # "一个", "两边": a measure word's companion far more often than a number
    total = section = digit = 0
    for char in text:
        if char in _CHINESE_DIGITS:
            digit = _CHINESE_DIGITS[char]
        elif char == "万":
            total, section, digit = (total + section + digit) * 10_000, 0, 0
        else:
            section += max(digit, 1) * _CHINESE_UNITS[char]
            digit = 0
    return total + section + digit


def final_answer(reply: str) -> tuple[Fraction | None, str]:
    """The answer the reply gives, and the text it was read from (for the results page)."""
    boxed = last_boxed(reply)
    source = boxed if boxed is not None else reply
    value = last_number(source)
    shown = boxed if boxed is not None else (_NUMBER.findall(_plain(reply)) and str(value)) or ""
    return value, (shown or "")[:64]


def is_correct(reply: str, expected: str) -> tuple[bool, str]:
    value, shown = final_answer(reply)
    return value is not None and value == Fraction(expected), shown


def as_text(value: Fraction) -> str:
    """How an answer is shown and stored: "-12", "7/6"."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def student_answer(text: str) -> Fraction | None:
    """The value a student typed: "3/4", "0.75", "\\boxed{3/4}", "x = 3", "50 cm²", "fifty",
    "五十". None when it holds no number, or two different ones ("3 or 4" is no answer)."""
    text = _UNIT_POWER.sub("", text)
    value, _ = final_answer(text)
    if value is None:
        words = word_numbers(text)
        return Fraction(words[-1]) if len(set(words)) == 1 else None
    if last_boxed(text) is None and len(set(numbers(text))) > 1:
        return None
    return value


def is_right(text: str, expected: Fraction) -> bool:
    """ "Check my answer": the student's answer has the expected value."""
    return student_answer(text) == expected


_UNIT_POWER = re.compile(r"(?<=[a-zA-Z])\^\{?[23]\}?")  # cm^2: a unit's power, not a second number
# What a statement of the result looks like: "= 50", "is 50", "answer: 50", "得 50".
_STATES = re.compile(r"(?:=|\bis\b|\bequals\b|answer\b[^.\n]{0,20}|得|是|为)\s*\$?\s*$", re.IGNORECASE)


def gives_away(hint: str, answer: Fraction, problem: str) -> bool:
    """Whether a hint states the final answer as a value, in any form the checker reads: a
    boxed value, or the value where the problem does not already name it, or stated as a
    result ("x = 3") even where it does."""
    boxed = last_boxed(hint)
    if boxed is not None and last_number(boxed) == answer:
        return True
    if answer not in numbers(problem) and answer in numbers(hint):
        return True
    text = _plain(hint)
    for match in _NUMBER.finditer(text):
        if _value(match) == answer and _STATES.search(text[max(0, match.start() - 30) : match.start()]):
            return True
    return False


@dataclass(frozen=True)
class Agreement:
    """How independent samples' final answers voted: the majority's (None where no sample
    gave one, or the top answers tied), its votes, of how many samples, and which sample's
    solution to show (the first that reached the majority answer)."""

    answer: str | None
    votes: int
    of: int
    chosen: int
    tie: bool = False

    def as_dict(self) -> dict:
        out: dict = {"answer": self.answer, "votes": self.votes, "of": self.of}
        if self.tie:
            out["tie"] = True
        return out


def vote(replies: list[str]) -> Agreement:
    values = [final_answer(r)[0] for r in replies]
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return Agreement(None, 0, len(replies), 0)
    ranked = counts.most_common()
    top, votes = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == votes:
        return Agreement(None, votes, len(replies), 0, tie=True)
    return Agreement(as_text(top), votes, len(replies), values.index(top))
