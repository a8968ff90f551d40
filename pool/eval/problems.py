"""The built-in accuracy check's problem set, made by a seeded generator so that every
answer is known exactly: integer arithmetic, fractions, linear equations and word
problems of a few steps, each in English and in Chinese.

The set ships as pool/data/eval_problems.json (`python -m pool.eval.problems` writes it);
a test checks that the generator still makes exactly that file, so a run's figures always
mean the same problems. The problems come interleaved (kind by kind, language by
language), so the quick set, the first QUICK of them, covers every kind and both languages.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

SEED = 17
PER_KIND_AND_LANGUAGE = 30  # 4 kinds x 2 languages x 30 = 240 problems
QUICK = 50
SHIPPED = Path(__file__).resolve().parent.parent / "data" / "eval_problems.json"


@dataclass(frozen=True)
class Problem:
    id: str
    kind: str
    language: str
    problem: str
    answer: str  # an integer ("-12") or a fraction in lowest terms ("7/6")


def _fraction_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


# --- one function per kind: (rng, language) -> (problem text, exact answer) ------------------


def arithmetic(rng: random.Random, language: str) -> tuple[str, Fraction]:
    a, b, c = rng.randint(12, 99), rng.randint(3, 29), rng.randint(10, 400)
    shape = rng.randrange(3)
    if shape == 0:
        expression, value = f"{a} \\times {b} + {c}", a * b + c
    elif shape == 1:
        d = rng.randint(2, 12)
        expression, value = f"({a} + {c}) \\times {d} - {b}", (a + c) * d - b
    else:
        d = rng.randint(2, 15)
        expression, value = f"{a * d} \\div {d} - {b}", a - b
    if language == "zh":
        return f"计算:${expression}$。", Fraction(value)
    return f"Compute ${expression}$.", Fraction(value)


def fractions(rng: random.Random, language: str) -> tuple[str, Fraction]:
    b, d = rng.choice([2, 3, 4, 5, 6, 8, 9, 10, 12]), rng.choice([2, 3, 4, 5, 6, 7, 8, 10])
    x, y = Fraction(rng.randint(1, b - 1), b), Fraction(rng.randint(1, 2 * d - 1), d)
    if rng.random() < 0.5:
        expression, value = (
            f"\\frac{{{x.numerator}}}{{{x.denominator}}} + \\frac{{{y.numerator}}}{{{y.denominator}}}",
            x + y,
        )
    else:
        expression, value = (
            f"\\frac{{{x.numerator}}}{{{x.denominator}}} \\times \\frac{{{y.numerator}}}{{{y.denominator}}}",
            x * y,
        )
    if language == "zh":
        return f"计算 ${expression}$,结果写成最简分数。", value
    return f"Compute ${expression}$ and give the answer as a fraction in lowest terms.", value


def linear_equation(rng: random.Random, language: str) -> tuple[str, Fraction]:
    x = rng.randint(-12, 20)
    a = rng.choice([n for n in range(-9, 10) if n not in (0, 1)])
    b = rng.randint(-30, 30)
    if rng.random() < 0.5:
        equation = f"{a}x {_signed(b)} = {a * x + b}"
    else:  # x on both sides
        c = rng.choice([n for n in range(-5, 8) if n not in (0, a)])
        equation = f"{a}x {_signed(b)} = {c}x {_signed((a - c) * x + b)}"
    if language == "zh":
        return f"解方程:${equation}$,求 $x$。", Fraction(x)
    return f"Solve for $x$: ${equation}$.", Fraction(x)


def _signed(n: int) -> str:
    return f"+ {n}" if n >= 0 else f"- {-n}"


WORD_PROBLEMS: list[Callable[[random.Random, str], tuple[str, Fraction]]] = []


def word_problem(rng: random.Random, language: str) -> tuple[str, Fraction]:
    return rng.choice(WORD_PROBLEMS)(rng, language)


def _change(rng: random.Random, language: str) -> tuple[str, Fraction]:
    price, count = rng.randint(2, 15), rng.randint(3, 12)
    note = next(n for n in (20, 50, 100, 200) if n > price * count)
    if language == "zh":
        text = f"一支笔 {price} 元。小明买了 {count} 支笔,付了 {note} 元。应该找回多少元?"
    else:
        text = f"A pen costs {price} dollars. Sam buys {count} pens and pays with a {note}-dollar note. How many dollars of change does he get?"
    return text, Fraction(note - price * count)


def _shared(rng: random.Random, language: str) -> tuple[str, Fraction]:
    boxes, per_box, children = rng.randint(3, 9), rng.randint(4, 12), rng.choice([2, 3, 4, 6])
    total = boxes * per_box
    extra = (-total) % children or children  # so that the apples share out evenly
    if language == "zh":
        text = (
            f"有 {boxes} 盒苹果,每盒 {per_box} 个,另外还有 {extra} 个散装苹果。"
            f"把所有苹果平均分给 {children} 个小朋友,每人分到几个?"
        )
    else:
        text = (
            f"There are {boxes} boxes of apples with {per_box} apples in each, and {extra} loose apples. "
            f"All the apples are shared equally among {children} children. How many apples does each child get?"
        )
    return text, Fraction(total + extra, children)


def _speed(rng: random.Random, language: str) -> tuple[str, Fraction]:
    speed, hours, back = rng.randint(30, 90), rng.randint(2, 6), rng.randint(1, 3)
    if language == "zh":
        text = (
            f"一辆车以每小时 {speed} 千米的速度行驶了 {hours} 小时,然后又以同样的速度行驶了 {back} 小时。"
            "它一共行驶了多少千米?"
        )
    else:
        text = (
            f"A car drives at {speed} km per hour for {hours} hours, then for {back} more hours at the same speed. "
            "How many km does it drive in all?"
        )
    return text, Fraction(speed * (hours + back))


def _ages(rng: random.Random, language: str) -> tuple[str, Fraction]:
    child, times, later = rng.randint(4, 15), rng.randint(2, 5), rng.randint(2, 10)
    if language == "zh":
        text = f"小红今年 {child} 岁,妈妈的年龄是她的 {times} 倍。{later} 年后妈妈多少岁?"
    else:
        text = f"Mia is {child} years old and her mother is {times} times as old. How old will her mother be in {later} years?"
    return text, Fraction(child * times + later)


def _percent(rng: random.Random, language: str) -> tuple[str, Fraction]:
    price = rng.randint(4, 40) * 20
    off = rng.choice([10, 15, 20, 25, 30, 40, 50])
    if language == "zh":
        text = f"一件衣服原价 {price} 元,打折后便宜了 {off}%。现在的价格是多少元?"
    else:
        text = f"A coat costs {price} dollars. Its price is cut by {off}%. What does it cost now, in dollars?"
    return text, Fraction(price * (100 - off), 100)


WORD_PROBLEMS.extend([_change, _shared, _speed, _ages, _percent])
KINDS: dict[str, Callable[[random.Random, str], tuple[str, Fraction]]] = {
    "arithmetic": arithmetic,
    "fractions": fractions,
    "linear_equation": linear_equation,
    "word_problem": word_problem,
}
LANGUAGES = ("en", "zh")


def generate(seed: int = SEED, per: int = PER_KIND_AND_LANGUAGE) -> list[Problem]:
    """Interleaved: round i holds problem i of every kind in every language."""
    rng = random.Random(seed)
    problems = []
    for i in range(1, per + 1):
        for kind, make in KINDS.items():
            for language in LANGUAGES:
                text, value = make(rng, language)
                problems.append(
                    Problem(f"{kind}-{language}-{i:03d}", kind, language, text, _fraction_text(value))
                )
    return problems


def load(path: Path = SHIPPED) -> list[Problem]:
    return [Problem(**row) for row in json.loads(path.read_text(encoding="utf-8"))["problems"]]


def dump(problems: list[Problem]) -> str:
    body = {"seed": SEED, "problems": [asdict(p) for p in problems]}
    return json.dumps(body, ensure_ascii=False, indent=1) + "\n"


if __name__ == "__main__":  # python -m pool.eval.problems: rewrite the shipped set
    SHIPPED.write_text(dump(generate()), encoding="utf-8")
    print(f"wrote {SHIPPED}")
