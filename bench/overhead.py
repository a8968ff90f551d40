"""1. Gateway overhead, three ways, each with the same load straight to a member, through
nginx (least_conn) and through vibeadmin's two doors: the API's own port (uvicorn's parser,
pool/gateway/listener.py) and /v1/ on the main port (daphne). Every figure is measured in
at least five rounds, the legs interleaved in each (nginx, vibeadmin, daphne, nginx, ...,
the order turning by one each round), and a ratio is the median of its rounds' ratios
with their range (low to high): never one good round.

- Throughput: wrk, closed loop, at 16, 64 and 256 connections. Replies are short (20 ms)
  and members concurrent, so the proxy in the middle is what limits; on this machine the
  CPU is shared by wrk, the members and the proxy, so the ratio is of whole systems, and
  moves with whatever else runs on the machine.
- CPU time per proxied request, the figure that load hardly moves: user + system CPU of
  the gateway's process (all its threads) and of nginx's worker, from their own counters
  (bench/cpu.py) before and after wrk sends a fixed number of plain requests at 64 and
  256 connections, divided by that number.
- Added latency at 64 concurrent streams: open loop (bench/loadgen.py: each request is
  timed from when it was due, so no coordinated omission), Poisson arrivals at the rate
  that keeps 64 streams in flight, each stream 64 tokens 20 ms apart after a 50 ms first
  token (a member's pace that 64 streams of on 2 shared cores leave the CPU unsaturated:
  at 5 ms a token even nginx added 90 ms, the fake members and the client being starved).
  Added = a leg's percentile minus straight-to-a-member's in the same round, for the
  first token (what a proxy delays) and for the whole stream. Measured below saturation,
  as the goal is meant: at saturation latency is queueing, which the throughput table
  shows.

The members are fake ones without the generation lock (testing.fake_member, concurrent),
with max_inflight raised to 4096 in the database so that neither they nor the gateway's
queue limit anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from bench import cpu, wrk
from bench import nginx as nginx_mod
from bench.context import Bench, Scale
from bench.figures import save
from bench.loadgen import Shot, open_loop, percentiles, poisson
from bench.rounds import paired, shown, spread
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
LABELS = {
    "direct": "direct",
    "nginx": "nginx",
    "vibeadmin": "vibeadmin (API port)",
    "vibeadmin_daphne": "vibeadmin (main port, daphne)",
}
GATEWAY_LEGS = ("vibeadmin", "vibeadmin_daphne")
GOAL_CONNECTIONS = 64
ROUNDS = 5  # the fewest interleaved rounds a ratio is the median of (a smoke run: 2)
# CPU per request: plain requests, a fixed number per leg and round (at full scale; at
# 256 connections the requests cut off at the end are then at most 0.6% of them).
CPU_CONNECTIONS = (64, 256)
CPU_REQUESTS = 40_000
# The latency leg: streams at a GPU's pace, 64 of them in flight on average.
STREAMS = 64
STREAM_TTFT_S, STREAM_TPT_S, STREAM_TOKENS = 0.05, 0.02, 64


def body(workload: str) -> dict:
    return {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        **WORKLOADS[workload],
    }


def rounds_for(scale: Scale) -> int:
    return 2 if scale.smoke else max(ROUNDS, scale.rounds)


def run(bench: Bench) -> dict:
    closed = measure_closed_loop(bench)
    latency = measure_latency(bench)
    return {
        "name": NAME,
        "member_ttft_s": TTFT_S,
        "member_tpt_s": TPT_S,
        "workloads": WORKLOADS,
        "rounds": rounds_for(bench.scale),
        "members": 2,
        "member_kind": "fake, no generation lock",
        "member_max_inflight": 4096,
        "load_generator": "wrk -t1 (closed loop); bench/loadgen.py (open loop)",
        "runs": closed["runs"],
        "duration_s": closed["duration_s"],
        "summary": summarize(closed["runs"]),
        "cpu_runs": closed["cpu_runs"],
        "cpu_requests": closed["cpu_requests"],
        "idle_cpu": closed["idle_cpu"],
        "cpu": summarize_cpu(closed["cpu_runs"]),
        "latency": latency,
    }


@contextlib.contextmanager
def targets(bench: Bench, *, ttft: float, tpt: float):
    """The legs' base URLs over two fresh fake members, the gateway's key, and for each
    proxy the processes that serve its requests (whose CPU counters are read)."""
    with fake_members(2, concurrent=True, ttft=ttft, tpt=tpt, max_tokens=256) as members:
        urls = [m.url for m in members]
        server = Vibeadmin(bench.folders.new(), supervisor=False)
        register_remote(server, urls, max_inflight=4096)
        key = server.create_key()
        with server, _maybe_nginx(bench, urls) as balancer:
            assert server.proc is not None
            gateway = psutil.Process(server.proc.pid)  # both doors: one process
            found = {"direct": urls, "vibeadmin": [server.api_url], "vibeadmin_daphne": [server.url]}
            serving: dict[str, Callable[[], list[psutil.Process]]] = dict.fromkeys(
                GATEWAY_LEGS, lambda: [gateway]
            )
            if balancer:
                found["nginx"] = [balancer.url]
                serving["nginx"] = balancer.workers
            yield {leg: found[leg] for leg in LEGS if leg in found}, key, serving


def in_turn(legs: Iterable[str], round_no: int) -> list[str]:
    """The legs in this round's order: each round starts one leg later, so that every leg
    takes every place in a round in turn (the first one runs after another workload's)."""
    order = list(legs)
    turn = round_no % len(order)
    return order[turn:] + order[:turn]


def measure_closed_loop(bench: Bench) -> dict:
    """Throughput and CPU per request, in the same interleaved rounds."""
    scale = bench.scale
    duration = scale.seconds(6.0, least=1.0)
    requests = scale.count(CPU_REQUESTS, least=2000)
    rows: list[dict] = []
    cpu_rows: list[dict] = []
    with targets(bench, ttft=TTFT_S, tpt=TPT_S) as (legs, key, serving):
        for bases in legs.values():  # warm up connections and the gateway's picture
            wrk.run(bases[0] + "/v1/chat/completions", body("plain"), connections=16, duration_s=1, key=key)
        # What a proxy spends with no requests at all is in every CPU figure: measured alone.
        idle = {
            leg: cpu.idle_share(serving[leg](), seconds=2.0)
            for leg in ("nginx", "vibeadmin")
            if leg in serving
        }
        for round_no in range(rounds_for(scale)):
            rows += throughput_round(bench, legs, key, round_no, duration)
            cpu_rows += cpu_round(bench, legs, key, serving, round_no, requests)
    return {
        "runs": rows,
        "duration_s": duration,
        "cpu_runs": cpu_rows,
        "cpu_requests": requests,
        "idle_cpu": idle,
    }


def throughput_round(bench: Bench, legs: dict, key: str, round_no: int, duration: float) -> list[dict]:
    rows = []
    for workload in ["plain"] if bench.scale.smoke else list(WORKLOADS):
        for conns in (16,) if bench.scale.smoke else CONNECTIONS:
            for leg in in_turn(legs, round_no):
                result = wrk.run(
                    legs[leg][0] + "/v1/chat/completions",
                    body(workload),
                    connections=conns,
                    duration_s=duration,
                    key=key if leg in GATEWAY_LEGS else "",
                )
                rows.append({"round": round_no, "workload": workload, "leg": leg, **result})
                print(
                    f"  {workload:6} c={conns:<3} {leg:16} {result['rps']:7.0f} req/s  "
                    f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms",
                    flush=True,
                )
    return rows


def cpu_round(bench: Bench, legs: dict, key: str, serving: dict, round_no: int, requests: int) -> list[dict]:
    rows = []
    for conns in (64,) if bench.scale.smoke else CPU_CONNECTIONS:
        for leg in in_turn([leg for leg in legs if leg in serving], round_no):
            result = cpu.per_request(
                legs[leg][0] + "/v1/chat/completions",
                body("plain"),
                serving[leg],
                connections=conns,
                requests=requests,
                key=key if leg in GATEWAY_LEGS else "",
            )
            rows.append({"round": round_no, "workload": "plain", "leg": leg, **result})
            print(
                f"  cpu    c={conns:<3} {leg:16} {result['cpu_us_per_request']:7.1f} µs/request "
                f"({result['ok']}/{result['requests']} ok, {result['wall_s']:.1f} s)",
                flush=True,
            )
    return rows


def measure_latency(bench: Bench) -> dict:
    """Open loop at STREAMS concurrent streams: each leg's p50/p99 and what it adds."""
    scale = bench.scale
    stream_s = STREAM_TTFT_S + STREAM_TPT_S * (STREAM_TOKENS - 1)
    rate = STREAMS / stream_s  # Little's law: this rate keeps STREAMS in flight
    count = scale.count(round(rate * 12), least=40)
    request = {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": "Prove that 2 + 2 = 4."}],
        "max_tokens": STREAM_TOKENS,
        "stream": True,
    }
    runs: list[dict] = []
    with targets(bench, ttft=STREAM_TTFT_S, tpt=STREAM_TPT_S) as (legs, key, _):
        for round_no in range(rounds_for(scale)):
            for leg in in_turn(legs, round_no):
                times = poisson(rate, count, random.Random(round_no))  # the same arrivals for every leg
                headers = {"Authorization": f"Bearer {key}"} if leg in GATEWAY_LEGS else {}
                shots = [
                    Shot(legs[leg][i % len(legs[leg])] + "/v1/chat/completions", request, headers, at=t)
                    for i, t in enumerate(times)
                ]
                results = asyncio.run(open_loop(shots, timeout_s=30))
                ok = [r for r in results if r.ok and r.tokens >= STREAM_TOKENS]  # and a final event
                row: dict = {
                    "round": round_no,
                    "leg": leg,
                    "requests": len(results),
                    "ok": len(ok),
                    "latency_ms": _ms(percentiles([r.latency_s for r in ok], (50, 99))),
                    "ttft_ms": _ms(percentiles([r.ttft_s for r in ok], (50, 99))),
                }
                runs.append(row)
                print(
                    f"  streams={STREAMS} {leg:16} ok {len(ok)}/{len(results)}  latency p50 "
                    f"{row['latency_ms']['p50']:6.1f} p99 {row['latency_ms']['p99']:6.1f} ms",
                    flush=True,
                )
    return {
        "streams": STREAMS,
        "rate_per_s": rate,
        "requests_per_leg": count,
        "stream_tokens": STREAM_TOKENS,
        "member_ttft_s": STREAM_TTFT_S,
        "member_tpt_s": STREAM_TPT_S,
        "runs": runs,
        "summary": summarize_latency(runs),
    }


def _ms(values: dict) -> dict:
    return {k: (v * 1000 if v is not None else float("nan")) for k, v in values.items()}


def _maybe_nginx(bench: Bench, urls: list[str]):
    if nginx_mod.available():
        return nginx_mod.nginx(urls)
    bench.note("nginx is not installed: the nginx leg of the overhead benchmark was skipped")
    return contextlib.nullcontext(None)


# --- from rounds to figures --------------------------------------------------------------


def summarize(rows: list[dict]) -> list[dict]:
    """Per workload and connection count: each leg's medians over rounds, and each of the
    gateway's doors against nginx, round by round."""
    out = []
    for workload in dict.fromkeys(r["workload"] for r in rows):
        for conns in dict.fromkeys(r["connections"] for r in rows):
            cell = [r for r in rows if (r["workload"], r["connections"]) == (workload, conns)]
            legs = {leg: _leg_medians([r for r in cell if r["leg"] == leg]) for leg in LEGS}
            row: dict = {
                "workload": workload,
                "connections": conns,
                "legs": {k: v for k, v in legs.items() if v},
            }
            for leg in GATEWAY_LEGS:
                pairs = paired(cell, leg, "nginx")
                if pairs:
                    row[f"{leg}_rps_vs_nginx"] = spread(mine["rps"] / theirs["rps"] for mine, theirs in pairs)
                    row[f"{leg}_p50_vs_nginx_ms"] = spread(
                        mine["p50_ms"] - theirs["p50_ms"] for mine, theirs in pairs
                    )
            out.append(row)
    return out


def _leg_medians(mine: list[dict]) -> dict:
    if not mine:
        return {}
    legs = {k: statistics.median(r[k] for r in mine) for k in ("rps", "p50_ms", "p99_ms")}
    headers = [r["overhead_header_ms"] for r in mine if r["overhead_header_ms"]]
    if headers:  # the gateway's own time per request, from X-Vibeadmin-Overhead-Ms
        legs["overhead_header_ms"] = {p: statistics.median(h[p] for h in headers) for p in ("p50", "p99")}
    return legs


def summarize_cpu(rows: list[dict]) -> list[dict]:
    """Per connection count: each proxy's CPU per request, and the gateway's against
    nginx's worker's, round by round."""
    out = []
    for conns in dict.fromkeys(r["connections"] for r in rows):
        cell = [r for r in rows if r["connections"] == conns]
        row: dict = {"connections": conns, "legs": {}}
        for leg in dict.fromkeys(r["leg"] for r in cell):
            mine = [r for r in cell if r["leg"] == leg]
            row["legs"][leg] = {
                "us_per_request": spread(r["cpu_us_per_request"] for r in mine),
                "requests": sum(r["requests"] for r in mine),
                "ok": sum(r["ok"] for r in mine),
            }
        for leg in GATEWAY_LEGS:
            pairs = paired(cell, leg, "nginx")
            if pairs:  # CPU per request against CPU per request: the counts may differ by a few
                row[f"{leg}_vs_nginx"] = spread(
                    mine["cpu_us_per_request"] / theirs["cpu_us_per_request"] for mine, theirs in pairs
                )
        out.append(row)
    return out


def summarize_latency(runs: list[dict]) -> dict:
    """Each leg's medians over rounds, and what it added to straight-to-a-member's
    percentiles in each round."""
    summary = {}
    for leg in dict.fromkeys(r["leg"] for r in runs):
        mine = [r for r in runs if r["leg"] == leg]
        summary[leg] = {
            "ok": sum(r["ok"] for r in mine),
            "requests": sum(r["requests"] for r in mine),
            **{
                f"{what}_{p}": statistics.median(r[f"{what}_ms"][p] for r in mine)
                for what in ("latency", "ttft")
                for p in ("p50", "p99")
            },
        }
        pairs = paired(runs, leg, "direct") if leg != "direct" else []
        for what in ("latency", "ttft") if pairs else ():
            for p in ("p50", "p99"):
                added = [mine[f"{what}_ms"][p] - theirs[f"{what}_ms"][p] for mine, theirs in pairs]
                summary[leg][f"added_{what}_{p}"] = spread(added)
    return summary


def goals(result: dict) -> list[dict]:
    """Each goal judged on the median of the rounds; the range goes with it."""
    found = []
    measured = {row["connections"] for row in result["summary"]}
    conns = GOAL_CONNECTIONS if GOAL_CONNECTIONS in measured else max(measured)  # a smoke run has fewer
    for row in result["summary"]:
        if row["connections"] == conns and "vibeadmin_rps_vs_nginx" in row:
            found.append(
                _goal(
                    f"throughput vs nginx at {conns} connections ({row['workload']}), API port",
                    row["vibeadmin_rps_vs_nginx"],
                    0.8,
                    "×",
                    ">=",
                )
            )
    latency = result["latency"]["summary"].get("vibeadmin", {})
    at = f"at {result['latency']['streams']} concurrent streams (open loop), API port"
    for what, key in (("first token", "ttft"), ("whole stream", "latency")):
        if f"added_{key}_p50" in latency:
            found.append(_goal(f"added p50 {at}, {what}", latency[f"added_{key}_p50"], 1.0, "ms", "<="))
            found.append(_goal(f"added p99 {at}, {what}", latency[f"added_{key}_p99"], 5.0, "ms", "<="))
    return found


def _goal(what: str, measured: dict, target: float, unit: str, op: str) -> dict:
    value = measured["median"]
    met = value <= target if op == "<=" else value >= target
    return {
        "benchmark": NAME,
        "goal": f"{what} {op} {target:g} {unit}",
        "value": round(value, 3),
        "unit": unit,
        "range": [round(measured["low"], 3), round(measured["high"], 3)],
        "rounds": measured["rounds"],
        "met": met,
    }


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
        ax.bar(
            [i + offset * 0.4 for i in range(len(legs))],
            [latency[leg][f"latency_{p}"] for leg in legs],
            width=0.4,
            hatch=hatch,
            label=f"latency {p}",
            alpha=0.8,
        )
    ax.set_xticks([i + 0.2 for i in range(len(legs))], [LABELS[leg] for leg in legs], fontsize=7)
    ax.set_ylabel("ms")
    ax.set_title(f"{result['latency']['streams']} concurrent streams, open loop")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    files.append(save(fig, out, "overhead_latency.png"))
    if result.get("cpu"):
        files.append(_plot_cpu(result["cpu"], out))
    return files


def _plot_cpu(rows: list[dict], out: Path) -> str:
    """CPU per request, each proxy's median with its range as the error bar."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    legs = [leg for leg in LEGS if any(leg in r["legs"] for r in rows)]
    width = 0.8 / len(legs)
    for i, leg in enumerate(legs):
        xs = [n + i * width for n, r in enumerate(rows) if leg in r["legs"]]
        stats = [r["legs"][leg]["us_per_request"] for r in rows if leg in r["legs"]]
        medians = [s["median"] for s in stats]
        errors = [[s["median"] - s["low"] for s in stats], [s["high"] - s["median"] for s in stats]]
        ax.bar(xs, medians, width=width, yerr=errors, capsize=3, label=LABELS[leg], alpha=0.8)
    ax.set_xticks(
        [n + 0.4 - width / 2 for n in range(len(rows))], [f"{r['connections']} connections" for r in rows]
    )
    ax.set_ylabel("CPU µs per request")
    ax.set_title("CPU time per proxied request (median, range over rounds)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return save(fig, out, "overhead_cpu.png")


def markdown(result: dict) -> str:
    return "\n\n".join([_throughput_tables(result), _cpu_table(result), _latency_table(result["latency"])])


def _throughput_tables(result: dict) -> str:
    header = " / ".join(LABELS[leg] for leg in LEGS)
    lines = [
        f"**Throughput against nginx** (wrk, closed loop, {result['duration_s']:.0f} s per leg; median "
        f"(low to high) over {result['rounds']} interleaved rounds of the ratio in each round)",
        "",
        "| workload | conns | req/s, API port / nginx | req/s, daphne port / nginx | p50, API port − nginx (ms) "
        "| p50, daphne port − nginx (ms) | gateway's own time p50 / p99 (ms, API port) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["summary"]:
        own_ms = row["legs"].get("vibeadmin", {}).get("overhead_header_ms")
        own = f"{own_ms['p50']:.2f} / {own_ms['p99']:.2f}" if own_ms else "–"
        lines.append(
            f"| {row['workload']} | {row['connections']} | {shown(row.get('vibeadmin_rps_vs_nginx'), '{:.2f}')} | "
            f"{shown(row.get('vibeadmin_daphne_rps_vs_nginx'), '{:.2f}')} | "
            f"{shown(row.get('vibeadmin_p50_vs_nginx_ms'), '{:+.1f}')} | "
            f"{shown(row.get('vibeadmin_daphne_p50_vs_nginx_ms'), '{:+.1f}')} | {own} |"
        )
    lines += [
        "",
        "**Each leg's throughput and latency** (medians of the rounds; absolute rates move with the machine's "
        "other load)",
        "",
        f"| workload | conns | req/s: {header} | p50 (ms): {header} | p99 (ms): {header} |",
        "|---|---|---|---|---|",
    ]
    for row in result["summary"]:
        legs = row["legs"]

        def each(key: str, fmt: str, legs=legs) -> str:
            return " / ".join(fmt.format(legs[leg][key]) if leg in legs else "–" for leg in LEGS)

        lines.append(
            f"| {row['workload']} | {row['connections']} | {each('rps', '{:.0f}')} | "
            f"{each('p50_ms', '{:.1f}')} | {each('p99_ms', '{:.1f}')} |"
        )
    return "\n".join(lines)


def _cpu_table(result: dict) -> str:
    legs = [leg for leg in ("nginx", *GATEWAY_LEGS) if any(leg in r["legs"] for r in result.get("cpu", []))]
    if not legs:
        return "No CPU figures in this run."
    lines = [
        f"**CPU time per proxied request** (plain requests, {result['cpu_requests']} per leg and round, wrk "
        "closed loop; user + system CPU of nginx's worker process and of the gateway's process, from their own "
        f"counters; median (low to high) over {result['rounds']} interleaved rounds)",
        "",
        "With no requests at all the gateway's process spends "
        f"{result['idle_cpu'].get('vibeadmin', 0) * 1000:.0f} ms of CPU a second (its background loops) and "
        f"nginx's worker {result['idle_cpu'].get('nginx', 0) * 1000:.0f} ms: included in the figures below, "
        "as what a request costs is measured with them running.",
        "",
        "| conns | "
        + " | ".join(f"{LABELS[leg]} (µs)" for leg in legs)
        + " | API port / nginx | daphne port / nginx | responses not 200 |",
        "|---|" + "---|" * (len(legs) + 3),
    ]
    for row in result["cpu"]:
        cells = [shown(row["legs"].get(leg, {}).get("us_per_request"), "{:.0f}") for leg in legs]
        failed = sum(leg["requests"] - leg["ok"] for leg in row["legs"].values())
        lines.append(
            f"| {row['connections']} | "
            + " | ".join(cells)
            + f" | {shown(row.get('vibeadmin_vs_nginx'), '{:.2f}')} | "
            f"{shown(row.get('vibeadmin_daphne_vs_nginx'), '{:.2f}')} | {failed} |"
        )
    return "\n".join(lines)


def _latency_table(lat: dict) -> str:
    lines = [
        f"**Added latency at {lat['streams']} concurrent streams** (open loop, {lat['rate_per_s']:.0f} streams/s, "
        f"{lat['stream_tokens']} tokens each, {lat['requests_per_leg']} requests per leg and round; added = the "
        "leg's percentile minus straight-to-a-member's in the same round, median (low to high) over the rounds)",
        "",
        "| leg | ok | latency p50 / p99 (ms) | added p50 (ms) | added p99 (ms) | first token p50 / p99 (ms) | "
        "added first token p50 (ms) | added first token p99 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for leg in LEGS:
        s = lat["summary"].get(leg)
        if s is None:
            continue
        added = [
            shown(s.get(f"added_{key}"), "{:+.1f}")
            for key in ("latency_p50", "latency_p99", "ttft_p50", "ttft_p99")
        ]
        lines.append(
            f"| {LABELS[leg]} | {s['ok']}/{s['requests']} | {s['latency_p50']:.1f} / {s['latency_p99']:.1f} | "
            f"{added[0]} | {added[1]} | {s['ttft_p50']:.1f} / {s['ttft_p99']:.1f} | {added[2]} | {added[3]} |"
        )
    return "\n".join(lines)
