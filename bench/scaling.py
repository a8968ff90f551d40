"""3. Scaling: throughput through the gateway with 1, 2, 4 and 8 fake members (one
generation at a time each, as llama-cpp-python) at saturation, against one member's own
throughput measured straight in the same run: efficiency = throughput / (N x one's)."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from bench.context import Bench
from bench.figures import save
from bench.loadgen import Shot, closed_loop, percentiles
from bench.server import Vibeadmin, fake_members, register_remote, set_ready

NAME = "scaling"
TTFT_S, TPT_S, TOKENS = 0.02, 0.001, 64
SIZES = (1, 2, 4, 8)
GOAL = 0.95


def saturate(url: str, key: str, concurrency: int, duration: float) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "vibethinker", "max_tokens": TOKENS, "messages": [{"role": "user", "content": "Count."}]}
    results, window = asyncio.run(
        closed_loop(
            lambda n, i: Shot(url + "/v1/chat/completions", body, headers),
            concurrency,
            duration,
            warmup_s=min(1.0, duration / 4),
        )
    )
    ok = [r for r in results if r.ok]
    return {
        "concurrency": concurrency,
        "rps": len(ok) / window,
        "failed": len(results) - len(ok),
        "latency_s": percentiles([r.latency_s for r in ok]),
    }


def run(bench: Bench) -> dict:
    duration = bench.scale.seconds(8.0, least=2.0)
    sizes = (1,) if bench.scale.smoke else SIZES
    rows, singles = [], []
    with fake_members(max(sizes), ttft=TTFT_S, tpt=TPT_S, max_tokens=TOKENS) as members:
        server = Vibeadmin(bench.folders.new(), supervisor=False)
        names = register_remote(server, [m.url for m in members])
        key = server.create_key()
        with server:
            # Two in flight keep the member's lock busy with no gap between requests.
            singles.append(saturate(members[0].url, "", 2, duration))
            for n in sizes:
                set_ready(server, names[:n])
                time.sleep(1.0)  # the gateway reloads its picture every 0.5 s
                row = saturate(server.api_url, key, 2 * n + 2, duration)
                row["members"] = n
                rows.append(row)
                print(f"  {n} members: {row['rps']:.1f} req/s", flush=True)
            if not bench.scale.smoke:
                singles.append(saturate(members[0].url, "", 2, duration))
    one = statistics.mean(s["rps"] for s in singles)
    for row in rows:
        row["efficiency"] = row["rps"] / (row["members"] * one)
    print(
        f"  one member straight: {one:.1f} req/s; efficiency "
        + ", ".join(f"{r['members']}: {r['efficiency']:.3f}" for r in rows),
        flush=True,
    )
    return {
        "name": NAME,
        "member_ttft_s": TTFT_S,
        "member_tpt_s": TPT_S,
        "tokens": TOKENS,
        "duration_s": duration,
        "one_member_straight": singles,
        "one_member_rps": one,
        "runs": rows,
    }


def goals(result: dict) -> list[dict]:
    return [
        {
            "benchmark": NAME,
            "goal": f"efficiency with {r['members']} members >= {GOAL}",
            "unit": "",
            "value": round(r["efficiency"], 3),
            "met": r["efficiency"] >= GOAL,
        }
        for r in result["runs"]
    ]


def plot(result: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    rows = result["runs"]
    xs = [r["members"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(xs, [r["rps"] for r in rows], marker="o", label="through vibeadmin")
    left.plot(xs, [n * result["one_member_rps"] for n in xs], ls="--", label="N x one member straight")
    left.set_xlabel("members")
    left.set_ylabel("requests/s at saturation")
    left.legend()
    right.plot(xs, [r["efficiency"] for r in rows], marker="o")
    right.axhline(GOAL, color="red", ls=":", label=f"goal {GOAL}")
    right.set_ylim(0.8, 1.05)
    right.set_xlabel("members")
    right.set_ylabel("efficiency")
    right.legend()
    for ax in (left, right):
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    return [save(fig, out, "scaling.png")]


def markdown(result: dict) -> str:
    lines = [
        f"One member straight (2 in flight): {result['one_member_rps']:.1f} req/s.",
        "",
        "| members | clients | req/s through vibeadmin | efficiency | p50 / p99 latency (s) | failed |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lat = r["latency_s"]
        lines.append(
            f"| {r['members']} | {r['concurrency']} | {r['rps']:.1f} | {r['efficiency']:.3f} | "
            f"{lat['p50']:.3f} / {lat['p99']:.3f} | {r['failed']} |"
        )
    return "\n".join(lines)
