"""The server's hint check (final_answers.gives_away, as pool/gateway/hints.py applies it)
replayed on replies bench.leak_rate recorded: of the replies its strict regex counts as
leaks, how many the check catches (the goal: all), and how many replies that do not leak
it flags (each one costs a re-ask). No model needed: it reads the stored replies (their
first 600 characters).

    .venv/bin/python -m bench.hint_check_replay [bench/results/leak_rate*.json ...]
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

from bench.leak_rate import PROBLEMS, gives_answer
from pool.final_answers import gives_away

RESULTS = Path(__file__).resolve().parent / "results"


def replay(path: Path, problems: dict[str, str]) -> dict[str, dict[str, int]]:
    measured = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, dict[str, int]] = {}
    for mode in measured["modes"]:
        counts = {"leaks": 0, "caught": 0, "clean": 0, "flagged_clean": 0}
        for row in measured["rows"]:
            if mode not in row:
                continue
            text, answer = row[mode]["reply"], row["answer"]
            flagged = gives_away(text, Fraction(answer), problems[row["id"]])
            if gives_answer(text, answer):
                counts["leaks"] += 1
                counts["caught"] += flagged
            else:
                counts["clean"] += 1
                counts["flagged_clean"] += flagged
        out[mode] = counts
    return out


def main(argv: list[str]) -> int:
    problems = {p["id"]: p["problem"] for p in json.loads(PROBLEMS.read_text(encoding="utf-8"))}
    for name in argv or sorted(str(p) for p in RESULTS.glob("leak_rate*.json")):
        for mode, c in replay(Path(name), problems).items():
            print(
                f"{Path(name).name} {mode}: {c['caught']} of {c['leaks']} leaks caught, "
                f"{c['flagged_clean']} of {c['clean']} clean replies flagged"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
