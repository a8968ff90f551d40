"""1. Gateway overhead: the same load straight to a member, through nginx (least_conn)
and through vibeadmin, at 16, 64 and 256 connections (wrk, closed loop).

The members are fake ones without the generation lock (pool.fake_member, concurrent) answering
in about 20 ms, with max_inflight raised to 4096 in the database so that neither they nor
the gateway's queue limit anything: the proxy in the middle is the bottleneck.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench import nginx as nginx_mod
from bench import wrk
from bench.context import Bench
from bench.figures import save
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
LEGS = ("direct", "nginx", "vibeadmin")
GOAL_CONNECTIONS = 64


def body(workload: str) -> dict:
    return {"model": "vibethinker", "messages": [{"role": "user", "content": "What is 2 + 2?"}], **WORKLOADS[workload]}


def run(bench: Bench) -> dict:
    scale = bench.scale
    duration = scale.seconds(6.0, least=1.0)
    connections = (16,) if scale.smoke else CONNECTIONS
    workloads = ["plain"] if scale.smoke else list(WORKLOADS)
    rows: list[dict] = []
    with fake_members(2, concurrent=True, ttft=TTFT_S, tpt=TPT_S, max_tokens=64) as members:
        urls = [m.url for m in members]
        server = Vibeadmin(bench.folders.new(), supervisor=False)
        register_remote(server, urls, max_inflight=4096)
        key = server.create_key()
        with server, _maybe_nginx(bench, urls) as nginx_url:
            targets = {"direct": urls[0], "vibeadmin": server.url}
            if nginx_url:
                targets["nginx"] = nginx_url
            for base in targets.values():  # warm up connections and the gateway's picture
                wrk.run(base + "/v1/chat/completions", body("plain"), connections=16, duration_s=1, key=key)
            for round_no in range(scale.rounds):
                for workload in workloads:
                    for conns in connections:
                        for leg, base in targets.items():  # legs side by side, interleaved
                            result = wrk.run(base + "/v1/chat/completions", body(workload), connections=conns,
                                             duration_s=duration, key=key if leg == "vibeadmin" else "")  # fmt: skip
                            rows.append({"round": round_no, "workload": workload, "leg": leg, **result})
                            print(f"  {workload:6} c={conns:<3} {leg:9} {result['rps']:7.0f} req/s  "
                                  f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms", flush=True)
    return {"name": NAME, "member_ttft_s": TTFT_S, "member_tpt_s": TPT_S, "workloads": WORKLOADS,
            "duration_s": duration, "rounds": scale.rounds, "members": 2, "member_kind": "fake, no generation lock",
            "member_max_inflight": 4096, "load_generator": "wrk -t1 (closed loop)",
            "runs": rows, "summary": summarize(rows)}  # fmt: skip


def _maybe_nginx(bench: Bench, urls: list[str]):
    import contextlib

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
                mine = [r for r in rows if (r["workload"], r["connections"], r["leg"]) == (workload, conns, leg)]
                if mine:
                    legs[leg] = {k: statistics.median(r[k] for r in mine) for k in ("rps", "p50_ms", "p99_ms")}
                    headers = [r["overhead_header_ms"] for r in mine if r["overhead_header_ms"]]
                    if headers:
                        legs[leg]["overhead_header_ms"] = {
                            p: statistics.median(h[p] for h in headers) for p in ("p50", "p99")}  # fmt: skip
            row = {"workload": workload, "connections": conns, "legs": legs}
            direct = legs.get("direct")
            for leg in ("nginx", "vibeadmin"):
                if direct and leg in legs:
                    row[f"{leg}_added_p50_ms"] = legs[leg]["p50_ms"] - direct["p50_ms"]
                    row[f"{leg}_added_p99_ms"] = legs[leg]["p99_ms"] - direct["p99_ms"]
            if "nginx" in legs and "vibeadmin" in legs:
                row["vibeadmin_rps_vs_nginx"] = legs["vibeadmin"]["rps"] / legs["nginx"]["rps"]
            out.append(row)
    return out


def goals(result: dict) -> list[dict]:
    found = []
    measured = {row["connections"] for row in result["summary"]}
    conns = GOAL_CONNECTIONS if GOAL_CONNECTIONS in measured else max(measured)  # a smoke run has fewer
    for row in result["summary"]:
        if row["connections"] != conns:
            continue
        at = f"at {conns} connections ({row['workload']})"
        if "vibeadmin_added_p50_ms" in row:
            found.append(_goal(f"added p50 {at}", row["vibeadmin_added_p50_ms"], 1.0, "ms", "<="))
            found.append(_goal(f"added p99 {at}", row["vibeadmin_added_p99_ms"], 5.0, "ms", "<="))
        if "vibeadmin_rps_vs_nginx" in row:
            found.append(_goal(f"throughput vs nginx {at}", row["vibeadmin_rps_vs_nginx"], 0.8, "×", ">="))
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
            left.plot(xs, [r["legs"][leg]["rps"] for r in rows if leg in r["legs"]], marker="o", label=leg)
            right.plot(xs, [r["legs"][leg]["p50_ms"] for r in rows if leg in r["legs"]], marker="o", label=f"{leg} p50")
            right.plot(xs, [r["legs"][leg]["p99_ms"] for r in rows if leg in r["legs"]], marker="x", ls="--",
                       label=f"{leg} p99")  # fmt: skip
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(CONNECTIONS), [str(c) for c in CONNECTIONS])
            ax.set_xlabel("connections (wrk, closed loop)")
            ax.grid(alpha=0.3)
        left.set_ylabel("requests/s")
        left.set_title(f"throughput ({workload})")
        right.set_ylabel("latency (ms)")
        right.set_yscale("log")
        right.set_title(f"latency ({workload})")
        left.legend()
        right.legend(fontsize=7)
        files.append(save(fig, out, f"overhead_{workload}.png"))
    return files


def markdown(result: dict) -> str:
    lines = [
        "| workload | conns | direct req/s | nginx req/s | vibeadmin req/s | vibeadmin/nginx | "
        "p50 direct / nginx / vibeadmin (ms) | p99 direct / nginx / vibeadmin (ms) | "
        "added p50 / p99 by vibeadmin (ms) | gateway's own header p50 / p99 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["summary"]:
        legs = row["legs"]

        def val(leg, key, fmt="{:.0f}", legs=legs):
            return fmt.format(legs[leg][key]) if leg in legs else "–"

        header = legs.get("vibeadmin", {}).get("overhead_header_ms")
        lines.append(
            f"| {row['workload']} | {row['connections']} | {val('direct', 'rps')} | {val('nginx', 'rps')} | "
            f"{val('vibeadmin', 'rps')} | {row.get('vibeadmin_rps_vs_nginx', float('nan')):.2f} | "
            + " / ".join(val(leg, "p50_ms", "{:.1f}") for leg in LEGS) + " | "
            + " / ".join(val(leg, "p99_ms", "{:.1f}") for leg in LEGS) + " | "
            + f"{row.get('vibeadmin_added_p50_ms', float('nan')):+.1f} / {row.get('vibeadmin_added_p99_ms', float('nan')):+.1f} | "
            + (f"{header['p50']:.2f} / {header['p99']:.2f}" if header else "–") + " |"
        )  # fmt: skip
    return "\n".join(lines)
