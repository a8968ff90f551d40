"""4. Real model: 1 and 2 real llama.cpp members (one thread each, the default model)
under `manage.py serve` with VIBEADMIN_MEMBERS=N. Tokens/s and p50 latency through the
gateway against straight to the members (their ports from `pool status --json`), in
alternating rounds so that the machine's other load falls on both alike.

Every client keeps one request in flight (closed loop, one client per member), so each
client's tokens/s is its tokens over its time: no request is cut at a window's edge.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

from bench.context import Bench
from bench.figures import save
from bench.loadgen import Shot, closed_loop

NAME = "real_model"
GOAL_COST = 0.03  # through vibeadmin >= 0.97x straight to the members (issue 17)
MESSAGES = [
    # Our own system prompt: the gateway then adds none, so both legs send the same prompt.
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Count from one to one hundred in words, separated by commas."},
]


def leg(urls: list[str], model: str, keys: list[str], tokens: int, duration: float) -> dict:
    """One client per URL (a URL may repeat), back to back for `duration`; keys[n] is the
    key for urls[n] (a platform's for the gateway, each member's own straight to it)."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": tokens, "temperature": 0}

    def shot(n: int, i: int) -> Shot:
        return Shot(
            urls[n] + "/v1/chat/completions", body, {"Authorization": f"Bearer {keys[n]}"}, tag=str(n)
        )

    results, _ = asyncio.run(closed_loop(shot, len(urls), duration, warmup_s=0.0, timeout_s=300))
    ok = [r for r in results if r.ok]
    per_client = []
    for n in range(len(urls)):
        mine = [r for r in ok if r.tag == str(n)]
        if mine:
            per_client.append(sum(r.tokens for r in mine) / sum(r.latency_s for r in mine))
    return {
        "requests": len(results),
        "failed": len(results) - len(ok),
        "tokens_per_s": sum(per_client),
        "p50_latency_s": statistics.median(r.latency_s for r in ok) if ok else None,
        "tokens_per_request": statistics.mean(r.tokens for r in ok) if ok else 0,
    }


def run(bench: Bench) -> dict:
    from bench.server import Vibeadmin  # noqa: PLC0415

    scale = bench.scale
    tokens = 8 if scale.smoke else 32
    # Only answers that end within a leg count: at least 30 s a leg (3 in a smoke run), as a
    # 32-token answer of the 1.5B took 10-15 s on 2 cores shared with other work.
    duration = scale.seconds(8.0, least=3.0 if scale.smoke else 30.0)
    # At least four rounds: one round's legs move by several percent on shared cores.
    rounds = 1 if scale.smoke else max(4, 2 * scale.rounds)
    sizes = (1,) if scale.smoke else (1, 2)
    rows = []
    for n in sizes:
        server = Vibeadmin(
            bench.folders.new(),
            supervisor=True,
            env={"VIBEADMIN_MEMBERS": str(n), "VIBEADMIN_N_CTX": "512", "VIBEADMIN_N_THREADS": "1"},
        )
        with server:
            names = [f"m{i + 1}" for i in range(n)]
            server.wait_ready(names)
            key = server.create_key()
            status = {m["name"]: m for m in server.status()}
            member_urls = [status[name]["url"] for name in names]
            # Members answer only with their own keys (a request straight to a port gets 401).
            member_keys = (
                server.shell(
                    "from pool.models import Member; "
                    f"print(' '.join(Member.objects.get(name=n).api_key for n in {names!r}))"
                )
                .strip()
                .splitlines()[-1]
                .split()
            )  # the last line: the shell may say more first
            model = server.shell(
                "from pool.model_file import chosen_model; print(chosen_model().model_id)"
            ).strip()
            leg(member_urls, model, member_keys, tokens, 2.0)  # warm up: the first generation is slower
            for round_no in range(rounds):
                straight = leg(member_urls, model, member_keys, tokens, duration)
                gateway = leg([server.api_url] * n, "vibethinker", [key] * n, tokens, duration)
                row = {
                    "members": n,
                    "round": round_no,
                    "straight": straight,
                    "gateway": gateway,
                    "cost": 1 - gateway["tokens_per_s"] / straight["tokens_per_s"],
                }
                rows.append(row)
                print(
                    f"  {n} member(s) round {round_no}: straight {straight['tokens_per_s']:.1f} tok/s, "
                    f"through vibeadmin {gateway['tokens_per_s']:.1f} tok/s (cost {row['cost']:+.1%})",
                    flush=True,
                )
    return {
        "name": NAME,
        "tokens_per_request": tokens,
        "duration_s": duration,
        "rounds": rounds,
        "threads_per_member": 1,
        "n_gpu_layers": "none (CPU build, no GPU on this machine)",
        "runs": rows,
        "summary": summarize(rows),
    }


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for n in dict.fromkeys(r["members"] for r in rows):
        mine = [r for r in rows if r["members"] == n]
        out.append(
            {
                "members": n,
                "straight_tokens_per_s": statistics.median(r["straight"]["tokens_per_s"] for r in mine),
                "gateway_tokens_per_s": statistics.median(r["gateway"]["tokens_per_s"] for r in mine),
                "straight_p50_s": statistics.median(r["straight"]["p50_latency_s"] for r in mine),
                "gateway_p50_s": statistics.median(r["gateway"]["p50_latency_s"] for r in mine),
                "cost": statistics.median(r["cost"] for r in mine),
            }
        )
    return out


def goals(result: dict) -> list[dict]:
    return [
        {
            "benchmark": NAME,
            "goal": f"gateway's cost in tokens/s with {s['members']} member(s) < {GOAL_COST:.0%}",
            "unit": "",
            "value": round(s["cost"], 4),
            "met": s["cost"] < GOAL_COST,
        }
        for s in result["summary"]
    ]


def plot(result: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result["summary"]
    x = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.bar(x - 0.2, [r["straight_tokens_per_s"] for r in rows], 0.4, label="straight to members")
    left.bar(x + 0.2, [r["gateway_tokens_per_s"] for r in rows], 0.4, label="through vibeadmin")
    left.set_ylabel("tokens/s (all members)")
    right.bar(x - 0.2, [r["straight_p50_s"] for r in rows], 0.4, label="straight to members")
    right.bar(x + 0.2, [r["gateway_p50_s"] for r in rows], 0.4, label="through vibeadmin")
    right.set_ylabel(f"p50 latency of a {result['tokens_per_request']}-token reply (s)")
    for ax in (left, right):
        ax.set_xticks(x, [f"{r['members']} member(s)" for r in rows])
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return [save(fig, out, "real_model.png")]


def markdown(result: dict) -> str:
    lines = [
        "| members | tokens/s straight | tokens/s through vibeadmin | cost | p50 straight (s) | "
        "p50 through vibeadmin (s) |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        lines.append(
            f"| {s['members']} | {s['straight_tokens_per_s']:.1f} | {s['gateway_tokens_per_s']:.1f} | "
            f"{s['cost']:+.1%} | {s['straight_p50_s']:.2f} | {s['gateway_p50_s']:.2f} |"
        )
    return "\n".join(lines)
