"""1. Gateway overhead, two ways, each with the same load straight to a member, through
nginx (least_conn) and through vibeadmin's two doors: the API's own port (uvicorn's parser,
pool/gateway/listener.py) and /v1/ on the main port (daphne).

- Throughput: wrk, closed loop, at 16, 64 and 256 connections. Replies are short (20 ms)
  and members concurrent, so the proxy in the middle is what limits; on this machine the
  CPU is shared by wrk, the members and the proxy, so the ratio is of whole systems.
- Added latency at 64 concurrent streams: open loop (bench/loadgen.py: each request is
  timed from when it was due, so no coordinated omission), Poisson arrivals at the rate
  that keeps 64 streams in flight, each stream 64 tokens 20 ms apart after a 50 ms first
  token (a member's pace that 64 streams of on 2 shared cores leave the CPU unsaturated:
  at 5 ms a token even nginx added 90 ms, the fake members and the client being starved).
  Added = a leg's percentile minus straight-to-a-member's, for the first token (what a
  proxy delays) and for the whole stream. Measured below saturation, as the goal is meant:
  at saturation latency is queueing, which the throughput table shows.

The members are fake ones without the generation lock (testing.fake_member, concurrent),
with max_inflight raised to 4096 in the database so that neither they nor the gateway's
queue limit anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
from pathlib import Path

from bench import nginx as nginx_mod
from bench import wrk
from bench.context import Bench
from bench.figures import save
from bench.loadgen import Shot, open_loop, percentiles, poisson
from bench.server import Vibeadmin, fake_members, register_remote

NAME = "overhead"
TTFT_S, TPT_S = 0.02, 0.002
WORKLOADS = {
    # one token after 20 ms: the whole reply at once
    "plain": {"max_tokens": 1, "stream": False},
    # 16 tokens streamed, 2 ms apart: every chunk passes through the proxy
    "stream": {"max_tokens": 16, "stream": True},
}
CONNECTIONS = (16, 64, 256)
LEGS = ("direct", "nginx", "vibeadmin", "vibeadmin_daphne")
LABELS = {"direct": "direct", "nginx": "nginx", "vibeadmin": "vibeadmin (API port)",
          "vibeadmin_daphne": "vibeadmin (main port, daphne)"}  # fmt: skip
GOAL_CONNECTIONS = 64
# The latency leg: streams at a GPU's pace, 64 of them in flight on average.
STREAMS = 64
STREAM_TTFT_S, STREAM_TPT_S, STREAM_TOKENS = 0.05, 0.02, 64


def body(workload: str) -> dict:
    return {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        **WORKLOADS[workload],
    }


def run(bench: Bench) -> dict:
    scale = bench.scale
    throughput = measure_throughput(bench)
    latency = measure_latency(bench)
    return {"name": NAME, "member_ttft_s": TTFT_S, "member_tpt_s": TPT_S, "workloads": WORKLOADS,
            "rounds": scale.rounds, "members": 2, "member_kind": "fake, no generation lock",
            "member_max_inflight": 4096, "load_generator": "wrk -t1 (closed loop); bench/loadgen.py (open loop)",
            "runs": throughput["runs"], "duration_s": throughput["duration_s"],
            "summary": summarize(throughput["runs"]), "latency": latency}  # fmt: skip


@contextlib.contextmanager
def targets(bench: Bench, *, ttft: float, tpt: float):
    """The legs' base URLs over two fresh fake members, and the gateway's key."""
    with fake_members(2, concurrent=True, ttft=ttft, tpt=tpt, max_tokens=256) as members:
        urls = [m.url for m in members]
        server = Vibeadmin(bench.folders.new(), supervisor=False)
        register_remote(server, urls, max_inflight=4096)
        key = server.create_key()
        with server, _maybe_nginx(bench, urls) as nginx_url:
            found = {"direct": urls, "vibeadmin": [server.api_url], "vibeadmin_daphne": [server.url]}
            if nginx_url:
                found["nginx"] = [nginx_url]
            yield {leg: found[leg] for leg in LEGS if leg in found}, key


def measure_throughput(bench: Bench) -> dict:
    scale = bench.scale
    duration = scale.seconds(6.0, least=1.0)
    connections = (16,) if scale.smoke else CONNECTIONS
    workloads = ["plain"] if scale.smoke else list(WORKLOADS)
    rows: list[dict] = []
    with targets(bench, ttft=TTFT_S, tpt=TPT_S) as (legs, key):
        for bases in legs.values():  # warm up connections and the gateway's picture
            wrk.run(bases[0] + "/v1/chat/completions", body("plain"), connections=16, duration_s=1, key=key)
        for round_no in range(scale.rounds):
            for workload in workloads:
                for conns in connections:
                    for leg, bases in legs.items():  # legs side by side, interleaved
                        result = wrk.run(bases[0] + "/v1/chat/completions", body(workload), connections=conns,
                                         duration_s=duration, key=key if leg.startswith("vibeadmin") else "")  # fmt: skip
                        rows.append({"round": round_no, "workload": workload, "leg": leg, **result})
                        print(
                            f"  {workload:6} c={conns:<3} {leg:16} {result['rps']:7.0f} req/s  "
                            f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms",
                            flush=True,
                        )
    return {"runs": rows, "duration_s": duration}


def measure_latency(bench: Bench) -> dict:
    """Open loop at STREAMS concurrent streams: each leg's p50/p99 and what it adds."""
    scale = bench.scale
    stream_s = STREAM_TTFT_S + STREAM_TPT_S * (STREAM_TOKENS - 1)
    rate = STREAMS / stream_s  # Little's law: this rate keeps STREAMS in flight
    count = scale.count(round(rate * 12), least=40)
    request = {"model": "vibethinker", "messages": [{"role": "user", "content": "Prove that 2 + 2 = 4."}],
               "max_tokens": STREAM_TOKENS, "stream": True}  # fmt: skip
    runs: list[dict] = []
    with targets(bench, ttft=STREAM_TTFT_S, tpt=STREAM_TPT_S) as (legs, key):
        for round_no in range(scale.rounds):
            for leg, bases in legs.items():
                times = poisson(rate, count, random.Random(round_no))  # the same arrivals for every leg
                headers = {"Authorization": f"Bearer {key}"} if leg.startswith("vibeadmin") else {}
                shots = [Shot(bases[i % len(bases)] + "/v1/chat/completions", request, headers, at=t)
                         for i, t in enumerate(times)]  # fmt: skip
                results = asyncio.run(open_loop(shots, timeout_s=30))
                ok = [r for r in results if r.ok and r.tokens >= STREAM_TOKENS]  # and a final event
                row = {"round": round_no, "leg": leg, "requests": len(results), "ok": len(ok),
                       "latency_ms": _ms(percentiles([r.latency_s for r in ok], (50, 99))),
                       "ttft_ms": _ms(percentiles([r.ttft_s for r in ok], (50, 99)))}  # fmt: skip
                runs.append(row)
                print(
                    f"  streams={STREAMS} {leg:16} ok {len(ok)}/{len(results)}  latency p50 "
                    f"{row['latency_ms']['p50']:6.1f} p99 {row['latency_ms']['p99']:6.1f} ms",
                    flush=True,
                )
    summary = {}
    for leg in legs:
        mine = [r for r in runs if r["leg"] == leg]
        summary[leg] = {
            "ok": sum(r["ok"] for r in mine), "requests": sum(r["requests"] for r in mine),
            **{f"{what}_{p}": statistics.median(r[f"{what}_ms"][p] for r in mine)
               for what in ("latency", "ttft") for p in ("p50", "p99")},
        }  # fmt: skip
    for leg in legs:
        if leg != "direct":
            for key_ in ("latency_p50", "latency_p99", "ttft_p50", "ttft_p99"):
                summary[leg][f"added_{key_}"] = summary[leg][key_] - summary["direct"][key_]
    return {"streams": STREAMS, "rate_per_s": rate, "requests_per_leg": count, "stream_tokens": STREAM_TOKENS,
            "member_ttft_s": STREAM_TTFT_S, "member_tpt_s": STREAM_TPT_S, "runs": runs, "summary": summary}  # fmt: skip


def _ms(values: dict) -> dict:
    return {k: (v * 1000 if v is not None else float("nan")) for k, v in values.items()}


def _maybe_nginx(bench: Bench, urls: list[str]):
    if nginx_mod.available():
        return nginx_mod.nginx(urls)
    bench.note("nginx is not installed: the nginx leg of the overhead benchmark was skipped")
    return contextlib.nullcontext("")


def summarize(rows: list[dict]) -> list[dict]:
    """Per workload and connection count: each leg's medians over rounds, and the ratios."""
    out = []
    for workload in dict.fromkeys(r["workload"] for r in rows):
        for conns in dict.fromkeys(r["connections"] for r in rows):
            legs = {}
            for leg in LEGS:
                mine = [
                    r for r in rows if (r["workload"], r["connections"], r["leg"]) == (workload, conns, leg)
                ]
                if mine:
                    legs[leg] = {
                        k: statistics.median(r[k] for r in mine) for k in ("rps", "p50_ms", "p99_ms")
                    }
                    headers = [r["overhead_header_ms"] for r in mine if r["overhead_header_ms"]]
                    if headers:  # the gateway's own time per request, from X-Vibeadmin-Overhead-Ms
                        legs[leg]["overhead_header_ms"] = {
                            p: statistics.median(h[p] for h in headers) for p in ("p50", "p99")
                        }
            row: dict = {"workload": workload, "connections": conns, "legs": legs}
            for leg in ("vibeadmin", "vibeadmin_daphne"):
                if "nginx" in legs and leg in legs:
                    row[f"{leg}_rps_vs_nginx"] = legs[leg]["rps"] / legs["nginx"]["rps"]
            out.append(row)
    return out


def goals(result: dict) -> list[dict]:
    found = []
    measured = {row["connections"] for row in result["summary"]}
    conns = GOAL_CONNECTIONS if GOAL_CONNECTIONS in measured else max(measured)  # a smoke run has fewer
    for row in result["summary"]:
        if row["connections"] == conns and "vibeadmin_rps_vs_nginx" in row:
            found.append(_goal(f"throughput vs nginx at {conns} connections ({row['workload']}), API port",
                               row["vibeadmin_rps_vs_nginx"], 0.8, "×", ">="))  # fmt: skip
    latency = result["latency"]["summary"].get("vibeadmin", {})
    at = f"at {result['latency']['streams']} concurrent streams (open loop), API port"
    for what, key in (("first token", "ttft"), ("whole stream", "latency")):
        if f"added_{key}_p50" in latency:
            found.append(_goal(f"added p50 {at}, {what}", latency[f"added_{key}_p50"], 1.0, "ms", "<="))
            found.append(_goal(f"added p99 {at}, {what}", latency[f"added_{key}_p99"], 5.0, "ms", "<="))
    return found


def _goal(what: str, value: float, target: float, unit: str, op: str) -> dict:
    met = value <= target if op == "<=" else value >= target
    return {"benchmark": NAME, "goal": f"{what} {op} {target:g} {unit}", "value": round(value, 3), "unit": unit,
            "met": met}  # fmt: skip


def plot(result: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    files = []
    for workload in dict.fromkeys(r["workload"] for r in result["summary"]):
        rows = [r for r in result["summary"] if r["workload"] == workload]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for leg in LEGS:
            xs = [r["connections"] for r in rows if leg in r["legs"]]
            if not xs:
                continue
            mine = [r["legs"][leg] for r in rows if leg in r["legs"]]
            left.plot(xs, [m["rps"] for m in mine], marker="o", label=LABELS[leg])
            right.plot(xs, [m["p50_ms"] for m in mine], marker="o", label=f"{LABELS[leg]} p50")
            right.plot(xs, [m["p99_ms"] for m in mine], marker="x", ls="--", label=f"{LABELS[leg]} p99")
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(CONNECTIONS), [str(c) for c in CONNECTIONS])
            ax.set_xlabel("connections (wrk, closed loop)")
            ax.grid(alpha=0.3)
        left.set_ylabel("requests/s")
        left.set_title(f"throughput ({workload})")
        right.set_ylabel("latency (ms)")
        right.set_yscale("log")
        right.set_title(f"latency at saturation ({workload})")
        left.legend(fontsize=7)
        right.legend(fontsize=6)
        files.append(save(fig, out, f"overhead_{workload}.png"))
    latency = result["latency"]["summary"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    legs = [leg for leg in LEGS if leg in latency]
    for offset, (p, hatch) in enumerate((("p50", ""), ("p99", "//"))):
        ax.bar([i + offset * 0.4 for i in range(len(legs))], [latency[leg][f"latency_{p}"] for leg in legs],
               width=0.4, hatch=hatch, label=f"latency {p}", alpha=0.8)  # fmt: skip
    ax.set_xticks([i + 0.2 for i in range(len(legs))], [LABELS[leg] for leg in legs], fontsize=7)
    ax.set_ylabel("ms")
    ax.set_title(f"{result['latency']['streams']} concurrent streams, open loop")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    files.append(save(fig, out, "overhead_latency.png"))
    return files


def markdown(result: dict) -> str:
    header = " / ".join(LABELS[leg] for leg in LEGS)
    lines = [
        "**Throughput** (wrk, closed loop; medians of the rounds)",
        "",
        f"| workload | conns | req/s: {header} | API port / nginx | daphne port / nginx | "
        f"p50 (ms): {header} | p99 (ms): {header} | gateway's own time p50 / p99 (ms, API port) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["summary"]:
        legs = row["legs"]

        def each(key: str, fmt: str, legs=legs) -> str:
            return " / ".join(fmt.format(legs[leg][key]) if leg in legs else "–" for leg in LEGS)

        own_ms = legs.get("vibeadmin", {}).get("overhead_header_ms")
        own = f"{own_ms['p50']:.2f} / {own_ms['p99']:.2f}" if own_ms else "–"
        ratios = [
            f"{row[k]:.2f}" if k in row else "–"
            for k in ("vibeadmin_rps_vs_nginx", "vibeadmin_daphne_rps_vs_nginx")
        ]
        lines.append(f"| {row['workload']} | {row['connections']} | {each('rps', '{:.0f}')} | {ratios[0]} | "
                     f"{ratios[1]} | {each('p50_ms', '{:.1f}')} | {each('p99_ms', '{:.1f}')} | {own} |")  # fmt: skip
    lat = result["latency"]
    lines += [
        "",
        f"**Added latency at {lat['streams']} concurrent streams** (open loop, {lat['rate_per_s']:.0f} streams/s, "
        f"{lat['stream_tokens']} tokens each, {lat['requests_per_leg']} requests per leg and round)",
        "",
        "| leg | ok | latency p50 / p99 (ms) | added p50 / p99 (ms) | first token p50 / p99 (ms) | added first token p50 / p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for leg in LEGS:
        s = lat["summary"].get(leg)
        if s is None:
            continue
        added = (
            f"{s['added_latency_p50']:+.1f} / {s['added_latency_p99']:+.1f}"
            if "added_latency_p50" in s
            else "–"
        )
        added_ttft = (
            f"{s['added_ttft_p50']:+.1f} / {s['added_ttft_p99']:+.1f}" if "added_ttft_p50" in s else "–"
        )
        lines.append(f"| {LABELS[leg]} | {s['ok']}/{s['requests']} | {s['latency_p50']:.1f} / {s['latency_p99']:.1f} | "
                     f"{added} | {s['ttft_p50']:.1f} / {s['ttft_p99']:.1f} | {added_ttft} |")  # fmt: skip
    return "\n".join(lines)
