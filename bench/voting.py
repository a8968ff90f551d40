"""What voting costs: k independent samples of one problem in one member's slots (one
request with `vibeadmin.samples`, pool/gateway/voting.py) against the same k answers asked
one after another on the same member, through the gateway, on the real model. Measured:
wall time and tokens generated per second of each leg; the ratio (sequential / together)
per round, interleaved, as the median and range over rounds.

    .venv/bin/python -m bench.voting [--samples 5] [--rounds 3] [--max-tokens 96]

One llama-server member with k slots and all the machine's threads (VIBEADMIN_MODEL, else
the default model). On a CPU the decode is compute-bound, so batching gains little; on a
GPU a batched decode step costs little more than one. Writes bench/results/voting.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from bench.server import DataFolders, Vibeadmin, served_code

OUT = Path(__file__).resolve().parent / "results" / "voting.json"
PROBLEMS = ["What is 19 * 21?", "Solve for x: 3x + 7 = 52.", "What is 15% of 240?", "Compute 2/3 + 1/6."]


def post(server: Vibeadmin, problem: str, max_tokens: int, samples: int) -> dict:
    body = {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": problem}],
        "max_tokens": max_tokens,
        "temperature": 0.6,
        "vibeadmin": {"task": "math", "samples": samples},
    }
    request = urllib.request.Request(
        server.url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {server.key}"},
    )
    with urllib.request.urlopen(request, timeout=900) as response:
        return json.load(response)


def leg(server: Vibeadmin, problem: str, max_tokens: int, k: int, together: bool) -> dict:
    started = time.perf_counter()
    if together:
        tokens = post(server, problem, max_tokens, k)["usage"]["completion_tokens"]
    else:
        tokens = sum(post(server, problem, max_tokens, 1)["usage"]["completion_tokens"] for _ in range(k))
    wall = time.perf_counter() - started
    return {"wall_s": round(wall, 2), "tokens": tokens, "tokens_per_s": round(tokens / wall, 1)}


def spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.voting", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    env = {
        "VIBEADMIN_MEMBERS": "1",
        "VIBEADMIN_SLOTS": str(args.samples),
        "VIBEADMIN_N_THREADS": str(args.threads),
        "VIBEADMIN_N_CTX": str(args.samples * 1024),
    }
    if os.environ.get("VIBEADMIN_MODEL"):
        env["VIBEADMIN_MODEL"] = os.environ["VIBEADMIN_MODEL"]
    rounds = []
    folders = DataFolders()
    try:
        with Vibeadmin(folders.new(), supervisor=True, env=env) as server:
            server.wait_ready(["m1"], timeout=600)
            server.create_key()
            server.shell(
                "from pool.models import PoolSettings; PoolSettings.load(); "
                f"PoolSettings.objects.filter(pk=1).update(max_samples={args.samples})"
            )
            time.sleep(3)  # the gateway reads the settings again
            post(server, PROBLEMS[0], 8, 1)  # warm: the model's first answer is slow
            for n in range(args.rounds):
                problem = PROBLEMS[n % len(PROBLEMS)]
                # Interleaved, the order alternating, so the machine's other load falls on both.
                order = (True, False) if n % 2 == 0 else (False, True)
                result = {
                    ("together" if t else "sequential"): leg(
                        server, problem, args.max_tokens, args.samples, t
                    )
                    for t in order
                }
                result["ratio"] = round(result["sequential"]["wall_s"] / result["together"]["wall_s"], 3)
                print(f"  round {n + 1}: {result}", flush=True)
                rounds.append(result)
    finally:
        folders.cleanup()
    out = {
        "name": "voting",
        "what": f"{args.samples} samples in one member's slots vs {args.samples} answers one after another",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores, shared with other work; no GPU",
        "samples": args.samples,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "ratio_sequential_over_together": spread([r["ratio"] for r in rounds]),
        "tokens_per_s_together": spread([r["together"]["tokens_per_s"] for r in rounds]),
        "tokens_per_s_sequential": spread([r["sequential"]["tokens_per_s"] for r in rounds]),
        "rounds": rounds,
        "code": served_code(),
    }
    OUT.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"ratio (sequential / together): {out['ratio_sequential_over_together']} -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
