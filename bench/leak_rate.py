"""Hints mode's leak rate: how often the first reply to a problem already gives the final
answer, in `hints` mode against `solution` mode, on problems with known answers
(bench/data/tutor_problems.json), through the gateway's /v1/chat/completions with
`vibeadmin.mode`, on a real model at temperature 0. Each problem is asked in both modes at
once (two slots of one member), so the machine's other load falls on both alike.

    VIBEADMIN_MODEL=/path/to/model.gguf VIBEADMIN_CHAT_FORMAT=chatml \\
        python -m bench.leak_rate --problems 20 --max-tokens 200

With the server's hint check (pool/gateway/hints.py) every hints-mode reply is checked before
it is sent; `--model-own` measures the model's own rate beside it (hints_unchecked).

A reply leaks when the answer's number stands in it anywhere (5050, 5,050 or 5\\,050, not
part of a longer number): strict, since a hint that lists it among others gives it away too.
Writes bench/results/leak_rate.json; `manage.py pool leak-rates FILE` stores it for the Quality page.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.server import DataFolders, Vibeadmin, served_code
from pool.gateway.tutor import TutorSettings, hinted

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "bench" / "data" / "tutor_problems.json"
RESULT = ROOT / "bench" / "results" / "leak_rate.json"
MODES = ("solution", "hints")
OTHER = "hints_other"
UNCHECKED = "hints_unchecked"  # the model's own: the pool's hint instruction, no server check


def answer_pattern(answer: str) -> re.Pattern:
    """A whole number as a reply may write it: its thousands apart or not."""
    groups = []
    digits = answer
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    groups.insert(0, digits)
    body = r"(?:,|\\,|\s)?".join(groups)
    return re.compile(rf"(?<![\d.]){body}(?!\d|\.\d)")


def gives_answer(reply: str, answer: str) -> bool:
    return answer_pattern(answer).search(reply) is not None


def ask(
    url: str, key: str, problem: str, mode: str, max_tokens: int, tutors: dict[str, TutorSettings]
) -> dict:
    """One first reply. Modes "hints_other" and "hints_unchecked": hints mode with that
    mode's prompt and instruction put in here as the gateway's hinted() does, sent as
    solution mode, so the server's hint check (pool/gateway/hints.py) does not apply: another
    instruction compared in the same run, or the model's own leak rate beside the checked one."""
    messages = [{"role": "user", "content": problem}]
    if mode in tutors:
        messages, mode = hinted(messages, tutors[mode]), "solution"
    body = {
        "model": "vibethinker",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "vibeadmin": {"task": "math", "mode": mode},
    }
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=900) as response:
        reply = json.load(response)
    return {
        "text": reply["choices"][0]["message"]["content"] or "",
        "tokens": reply.get("usage", {}).get("completion_tokens", 0),
    }


def measure(
    server: Vibeadmin, problems: list[dict], max_tokens: int, modes, save, tutors: dict[str, TutorSettings]
) -> list[dict]:
    """Each problem in every mode at once; `save(rows)` after each, so a run cut short keeps
    what it measured."""
    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=len(modes)) as pool:
        for n, item in enumerate(problems, 1):
            futures = {
                mode: pool.submit(ask, server.url, server.key, item["problem"], mode, max_tokens, tutors)
                for mode in modes
            }
            row = {"id": item["id"], "answer": item["answer"]}
            for mode, future in futures.items():
                reply = future.result()
                row[mode] = {
                    "leak": gives_answer(reply["text"], item["answer"]),
                    "tokens": reply["tokens"],
                    "reply": reply["text"][:600],
                }
            said = ", ".join(f"{mode} {'leak' if row[mode]['leak'] else 'no'}" for mode in modes)
            print(f"  {n}/{len(problems)} {item['id']}: {said}", flush=True)
            rows.append(row)
            save(rows)
    return rows


def summary(rows: list[dict], modes) -> dict:
    out = {}
    for mode in modes:
        leaks = sum(row[mode]["leak"] for row in rows)
        out[mode] = {
            "leaks": leaks,
            "rate": round(leaks / len(rows), 3) if rows else None,
            "mean_tokens": round(sum(row[mode]["tokens"] for row in rows) / len(rows), 1) if rows else None,
        }
    return out


def instructions(server: Vibeadmin, overrides: dict[str, str]) -> dict:
    """The hints-mode instructions measured: the defaults, or `overrides` set as an operator would."""
    if overrides:
        server.shell(
            "from pool.models import PoolSettings; PoolSettings.objects.get_or_create(pk=1); "
            f"PoolSettings.objects.filter(pk=1).update(**{overrides!r})"
        )
    code = (
        "import json; from pool.models import PoolSettings; r = PoolSettings.objects.get_or_create(pk=1); "
        "print(json.dumps({'prompt_tutor': r.prompt_tutor, 'hint_first': r.hint_first}))"
    )
    return json.loads(server.shell(code).strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.leak_rate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--problems", type=int, default=20, help="how many of the shipped problems (default 20)"
    )
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="the member's threads (1: a busy machine's other load hurts least)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help="solution,hints (default), or one of them")
    parser.add_argument("--hint-first", default="", help="try this hint instruction instead of the default")
    parser.add_argument(
        "--prompt-tutor", default="", help="try this tutor system prompt instead of the default"
    )
    parser.add_argument(
        "--compare-hint",
        default="",
        help="also measure hints mode with this instruction (and --compare-tutor's prompt) in the same run",
    )
    parser.add_argument("--compare-tutor", default="", help="the tutor prompt that goes with --compare-hint")
    parser.add_argument(
        "--model-own",
        action="store_true",
        help="also measure hints mode without the server's check (hints_unchecked): the model's own rate",
    )
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    model = os.environ.get("VIBEADMIN_MODEL", "")
    if not model:
        print("set VIBEADMIN_MODEL to a GGUF (and VIBEADMIN_CHAT_FORMAT to its template)", file=sys.stderr)
        return 2
    modes = tuple(m for m in args.modes.split(",") if m in MODES)
    other = None
    tutors: dict[str, TutorSettings] = {}
    if args.compare_hint:
        modes = (*modes, OTHER)
        other = tutors[OTHER] = TutorSettings("hints", 1, 10**6, args.compare_tutor, args.compare_hint, {})
    if args.model_own:
        modes = (*modes, UNCHECKED)
    problems = json.loads(PROBLEMS.read_text(encoding="utf-8"))[: args.problems]
    overrides = {k: v for k, v in (("hint_first", args.hint_first), ("prompt_tutor", args.prompt_tutor)) if v}
    env = {
        "VIBEADMIN_MEMBERS": "1",
        "VIBEADMIN_MODEL": model,
        "VIBEADMIN_CHAT_FORMAT": os.environ.get("VIBEADMIN_CHAT_FORMAT", ""),
        "VIBEADMIN_SLOTS": str(len(modes)),
        "VIBEADMIN_N_THREADS": str(args.threads),
        "VIBEADMIN_N_CTX": str(len(modes) * 1024),
    }
    result = {
        "name": "leak_rate",
        "what": "share of first replies that already contain the problem's final answer",
        "model": Path(model).name,
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "code": served_code(),
    }

    def save(rows: list[dict]) -> None:
        result.update(problems=len(rows), modes=summary(rows, modes), rows=rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    folders = DataFolders()
    try:
        with Vibeadmin(folders.new(), supervisor=True, env=env) as server:
            server.wait_ready(["m1"], timeout=600)
            server.create_key()
            result["instructions"] = instructions(server, overrides)
            result["when"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            if other is not None:
                result["instructions_other"] = {
                    "prompt_tutor": other.system_prompt,
                    "hint_first": other.first_hint,
                }
            if args.model_own:
                own = result["instructions"]
                tutors[UNCHECKED] = TutorSettings(
                    "hints", 1, 10**6, own["prompt_tutor"], own["hint_first"], {}
                )
            measure(server, problems, args.max_tokens, modes, save, tutors)
    finally:
        folders.cleanup()
    said = ", ".join(f"{mode} {result['modes'][mode]['leaks']}/{result['problems']}" for mode in modes)
    print(f"leaks: {said} -> {args.out}")
    print(f"show it on the Quality page: python manage.py pool leak-rates {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
