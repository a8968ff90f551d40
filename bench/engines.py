"""7. Engines: the default pool (llama-server members with slots) against today's pool of
two llama-cpp-python members (one thread each), on the same cores, through the gateway.

A wave is N streamed answers sent at once, each asked for exactly `tokens` tokens (long
prompts that the model does not finish early); its tokens/s is the tokens received over
the time until the last answer ended, its TTFT the p50 of the time to each answer's first
token (the first event that carries text: a role-only opening event is no token). Both
pools run side by side and take turns, wave by wave, in alternating order, so that the
machine's other load falls on both alike; each figure is the median (and range) of the rounds.

Then one llama-server member alone (all threads) at 1, 2, 4, 8 and 16 slots, a wave as
wide as its slots: how its tokens/s grows with the batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from bench.context import Bench
from bench.figures import save

NAME = "engines"
GOAL_AT_8, GOAL_AT_16, GOAL_TTFT = 1.8, 2.0, 1.2
PROMPT = "Write the numbers from one to five hundred in words, separated by commas, and nothing else."
TODAY = {"VIBEADMIN_ENGINE": "llama-cpp-python", "VIBEADMIN_MEMBERS": "2", "VIBEADMIN_N_THREADS": "1"}
SLOT_COUNTS = (1, 2, 4, 8, 16)


async def wave(url: str, key: str, n: int, tokens: int) -> dict:
    """`n` streamed answers at once; tokens/s over the whole wave and the p50 TTFT."""
    import aiohttp

    body = {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0.8,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(one_answer(client, url, body, headers, started) for _ in range(n)))
    ok = [a for a in answers if a["ok"]]
    elapsed = max(a["end_s"] for a in answers)
    return {
        "n": n,
        "tokens_asked": tokens,
        "ok": len(ok),
        "tokens": sum(a["tokens"] for a in ok),
        "seconds": elapsed,
        "tokens_per_s": sum(a["tokens"] for a in ok) / elapsed,
        "ttft_p50_s": statistics.median(a["ttft_s"] for a in ok) if ok else None,
    }


async def one_answer(client, url: str, body: dict, headers: dict, started: float) -> dict:
    ttft, tokens, done = None, 0, False
    async with client.post(url + "/v1/chat/completions", json=body, headers=headers) as response:
        async for line in response.content:
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                done = True
                break
            event = json.loads(data)
            choices = event.get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                tokens += 1
                ttft = ttft if ttft is not None else time.monotonic() - started
        ok = response.status == 200 and done and ttft is not None
    return {"ok": ok, "ttft_s": ttft, "tokens": tokens, "end_s": time.monotonic() - started}


def pool_server(bench: Bench, env: dict[str, str]):
    from bench.server import Vibeadmin  # noqa: PLC0415

    return Vibeadmin(
        bench.folders.new(),
        supervisor=True,
        env={"VIBEADMIN_N_CTX": "512", "VIBEADMIN_LOG_LEVEL": "WARNING", **env},
    )


def describe(server) -> str:
    members = server.status()
    engines = {m["engine"] for m in members}
    # The last line: Django's shell may first say how many objects it imported.
    threads = server.shell("from django.conf import settings; print(settings.VIBEADMIN_N_THREADS)").split()[
        -1
    ]
    slots = "/".join(str(m["slots"]) for m in members)
    return f"{len(members)} x {'/'.join(sorted(engines))}, {threads} thread(s) each, slots {slots}"


def run(bench: Bench) -> dict:
    scale = bench.scale
    cells = [(8, 16)] if scale.smoke else [(n, t) for t in answer_lengths(scale) for n in (8, 16)]
    rounds = 1 if scale.smoke else max(2, 2 * scale.rounds - 1)
    today, default = pool_server(bench, TODAY), pool_server(bench, {})
    rows, pools = [], {}
    with today, default:
        for label, server in (("today", today), ("default", default)):
            server.wait_ready([f"m{i + 1}" for i in range(len(server.status()))])
            server.create_key()
            # Today's pool queues most of a wave for minutes: longer than the default deadline.
            server.shell(
                "from pool.models import PoolSettings; PoolSettings.objects.get_or_create(pk=1); "
                "PoolSettings.objects.update(queue_timeout_s=900)"
            )
            pools[label] = describe(server)
            asyncio.run(wave(server.api_url, server.key, 2, 8))  # warm up: the first generation is slower
        print(f"  today: {pools['today']}; default: {pools['default']}", flush=True)
        for round_no in range(rounds):
            for n, tokens in cells:
                order = [("today", today), ("default", default)]
                for label, server in order if round_no % 2 == 0 else order[::-1]:
                    result = asyncio.run(wave(server.api_url, server.key, n, tokens))
                    rows.append({"pool": label, "round": round_no, **result})
                    print(
                        f"  round {round_no} {label:7} {n:2} at once x {tokens} tokens: "
                        f"{result['tokens_per_s']:.1f} tok/s, TTFT p50 {result['ttft_p50_s']:.2f} s",
                        flush=True,
                    )
    slots = [] if scale.smoke else slot_scaling(bench, rounds=max(1, scale.rounds))
    return {
        "name": NAME,
        "pools": pools,
        "rounds": rounds,
        "runs": rows,
        "summary": summarize(rows),
        "slot_scaling": slots,
        "cores": os.cpu_count(),
        "gpu": "none lent to this run: the CUDA comparison (32 slots vs one llama-cpp-python member) was not measured",
    }


def answer_lengths(scale) -> tuple[int, ...]:
    """Tokens per answer. A quick run asks for 64: the 1.5B makes about 21 tokens/s on 2
    cores, so one wave of 16 x 128 alone took 100 s; at 64 both pools fit in minutes."""
    return (64,) if scale.name == "quick" else (128, 256)


def slot_scaling(bench: Bench, rounds: int) -> list[dict]:
    """One member, every core, S slots; a wave of S answers (128 tokens, 64 in a quick run)."""
    tokens = answer_lengths(bench.scale)[0]
    rows = []
    threads = str(os.cpu_count() or 1)
    for slots in SLOT_COUNTS:
        server = pool_server(
            bench, {"VIBEADMIN_MEMBERS": "1", "VIBEADMIN_SLOTS": str(slots), "VIBEADMIN_N_THREADS": threads}
        )
        with server:
            server.wait_ready(["m1"])
            server.create_key()
            asyncio.run(wave(server.api_url, server.key, 1, 8))
            for round_no in range(rounds):
                result = asyncio.run(wave(server.api_url, server.key, slots, tokens))
                rows.append({"slots": slots, "threads": int(threads), "round": round_no, **result})
                print(f"  1 member, {slots:2} slots: {result['tokens_per_s']:.1f} tok/s", flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for n, tokens in dict.fromkeys((r["n"], r["tokens_asked"]) for r in rows):
        cell = [r for r in rows if (r["n"], r["tokens_asked"]) == (n, tokens)]
        by_round = {}
        for r in cell:
            by_round.setdefault(r["round"], {})[r["pool"]] = r
        pairs = [p for p in by_round.values() if len(p) == 2]
        speedups = [p["default"]["tokens_per_s"] / p["today"]["tokens_per_s"] for p in pairs]
        ttft = [p["default"]["ttft_p50_s"] / p["today"]["ttft_p50_s"] for p in pairs]
        out.append(
            {
                "n": n,
                "tokens": tokens,
                "today_tokens_per_s": statistics.median(p["today"]["tokens_per_s"] for p in pairs),
                "default_tokens_per_s": statistics.median(p["default"]["tokens_per_s"] for p in pairs),
                "speedup": statistics.median(speedups),
                "speedup_range": [min(speedups), max(speedups)],
                "today_ttft_s": statistics.median(p["today"]["ttft_p50_s"] for p in pairs),
                "default_ttft_s": statistics.median(p["default"]["ttft_p50_s"] for p in pairs),
                "ttft_ratio": statistics.median(ttft),
                "ttft_ratio_range": [min(ttft), max(ttft)],
            }
        )
    return out


def goals(result: dict) -> list[dict]:
    out = []
    for s in result["summary"]:
        goal = GOAL_AT_8 if s["n"] <= 8 else GOAL_AT_16
        out.append(
            {
                "benchmark": NAME,
                "goal": f"default pool's tokens/s >= {goal}x today's, {s['n']} at once, {s['tokens']} tokens",
                "unit": "x",
                "value": round(s["speedup"], 2),
                "met": s["speedup"] >= goal,
            }
        )
        if s["n"] == 8:
            out.append(
                {
                    "benchmark": NAME,
                    "goal": f"p50 TTFT <= {GOAL_TTFT}x today's, 8 at once, {s['tokens']} tokens",
                    "unit": "x",
                    "value": round(s["ttft_ratio"], 2),
                    "met": s["ttft_ratio"] <= GOAL_TTFT,
                }
            )
    return out


def plot(result: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    files = []
    rows = result["summary"]
    if rows:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        labels = [f"{r['n']} x {r['tokens']}" for r in rows]
        x = range(len(rows))
        ax.bar(
            [i - 0.2 for i in x],
            [r["today_tokens_per_s"] for r in rows],
            0.4,
            label=f"today: {result['pools']['today']}",
        )
        ax.bar(
            [i + 0.2 for i in x],
            [r["default_tokens_per_s"] for r in rows],
            0.4,
            label=f"default: {result['pools']['default']}",
        )
        ax.set_xticks(list(x), labels)
        ax.set_xlabel("answers at once x tokens each")
        ax.set_ylabel("tokens/s (whole pool, median)")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        files.append(save(fig, out, "engines.png"))
    if result["slot_scaling"]:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        by_slots = {}
        for r in result["slot_scaling"]:
            by_slots.setdefault(r["slots"], []).append(r["tokens_per_s"])
        xs = sorted(by_slots)
        ax.plot(xs, [statistics.median(by_slots[s]) for s in xs], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(s) for s in xs])
        ax.set_xlabel(
            f"slots of one llama-server member ({result['slot_scaling'][0]['threads']} threads), as many answers at once"
        )
        ax.set_ylabel("tokens/s")
        ax.grid(alpha=0.3)
        files.append(save(fig, out, "engines_slots.png"))
    return files


def markdown(result: dict) -> str:
    lines = [
        f"Today: {result['pools']['today']}. Default: {result['pools']['default']}. "
        f"{result['rounds']} interleaved rounds; median (range).",
        "",
        "| at once x tokens | today tok/s | default tok/s | speedup | TTFT p50 today (s) | TTFT p50 default (s) | "
        "TTFT ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        lo, hi = s["speedup_range"]
        tlo, thi = s["ttft_ratio_range"]
        lines.append(
            f"| {s['n']} x {s['tokens']} | {s['today_tokens_per_s']:.1f} | {s['default_tokens_per_s']:.1f} | "
            f"{s['speedup']:.2f}x ({lo:.2f}-{hi:.2f}) | {s['today_ttft_s']:.2f} | {s['default_ttft_s']:.2f} | "
            f"{s['ttft_ratio']:.2f}x ({tlo:.2f}-{thi:.2f}) |"
        )
    if result["slot_scaling"]:
        by_slots = {}
        for r in result["slot_scaling"]:
            by_slots.setdefault(r["slots"], []).append(r["tokens_per_s"])
        lines += ["", "| slots of one member (= answers at once) | tokens/s |", "|---|---|"]
        lines += [f"| {s} | {statistics.median(v):.1f} |" for s, v in sorted(by_slots.items())]
    lines += ["", f"GPU: {result['gpu']}."]
    return "\n".join(lines)
