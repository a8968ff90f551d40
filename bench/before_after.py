"""The gateway's CPU per proxied request, this checkout against another commit's, side by
side: does a change make the gateway dearer?

    .venv/bin/python -m bench.before_after --before REV [--after REV] [--rounds 7] [--requests 6000]

Both gateways (`manage.py serve --no-supervisor` of each checkout: this one, or with --after
another commit's, and the before one, each from a temporary `git worktree`) run at once over the same two fake members (concurrent,
20 ms a reply, testing.fake_member), each with its own data folder migrated by its own
code. In every round each gateway's API port takes the same fixed number of plain
requests from wrk at 64 connections (bench/cpu.py: user + system CPU of the gateway's
process from its own counters, before and after), the order of the two turning each
round. The figure is after / before per round: median and range over the rounds. CPU time
per request is what the machine's other work hardly moves, unlike throughput.

Writes bench/results/before_after.json (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from bench import cpu, wrk
from bench.server import ROOT, DataFolders, Vibeadmin, fake_members, register_remote, served_code

TTFT_S, TPT_S = 0.02, 0.002
CONNECTIONS = 64
BODY = {
    "model": "vibethinker",
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 1,
    "stream": False,
}
RESULT = ROOT / "bench" / "results" / "before_after.json"


@contextlib.contextmanager
def worktree(rev: str | None):
    """REV checked out beside this one, removed on the way out (None: this checkout)."""
    if rev is None:
        yield ROOT
        return
    path = Path(tempfile.mkdtemp(prefix="vibeadmin-before-")) / "code"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True
        )


def gateway(code: Path, urls: list[str]) -> Vibeadmin:
    server = Vibeadmin(DataFolders(code).new(), supervisor=False, code=code)
    register_remote(server, urls, max_inflight=4096)
    server.create_key()
    return server


def measure(before_rev: str, after_rev: str | None, rounds: int, requests: int) -> dict:
    with (
        worktree(before_rev) as before_code,
        worktree(after_rev) as after_code,
        fake_members(2, concurrent=True, ttft=TTFT_S, tpt=TPT_S) as members,
    ):
        urls = [m.url for m in members]
        servers = {"before": gateway(before_code, urls), "after": gateway(after_code, urls)}
        with servers["before"], servers["after"]:
            for server in servers.values():  # warm up connections and each gateway's picture
                wrk.run(
                    server.api_url + "/v1/chat/completions",
                    BODY,
                    connections=16,
                    duration_s=2,
                    key=server.key,
                )
            rows = []
            for round_no in range(rounds):
                order = ["before", "after"] if round_no % 2 == 0 else ["after", "before"]
                for leg in order:
                    server = servers[leg]
                    assert server.proc is not None
                    process = psutil.Process(server.proc.pid)
                    result = cpu.per_request(
                        server.api_url + "/v1/chat/completions",
                        BODY,
                        lambda process=process: [process],
                        connections=CONNECTIONS,
                        requests=requests,
                        key=server.key,
                    )
                    if result["ok"] < result["requests"] * 0.99:
                        raise RuntimeError(f"{leg}: only {result['ok']} of {result['requests']} ok: {result}")
                    rows.append({"round": round_no, "leg": leg, **result})
                    print(
                        f"round {round_no} {leg:6} {result['cpu_us_per_request']:7.1f} µs/request "
                        f"({result['ok']}/{result['requests']} ok, {result['wall_s']:.1f} s)",
                        flush=True,
                    )
        codes = {"before": served_code(before_code), "after": served_code(after_code)}
    ratios = []
    for round_no in range(rounds):
        per = {r["leg"]: r["cpu_us_per_request"] for r in rows if r["round"] == round_no}
        ratios.append(per["after"] / per["before"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": list(psutil.getloadavg()),
        "code": codes,
        "connections": CONNECTIONS,
        "requests": requests,
        "runs": rows,
        "ratio_after_before": {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios)},
        "cpu_us": {
            leg: statistics.median(r["cpu_us_per_request"] for r in rows if r["leg"] == leg)
            for leg in ("before", "after")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--before", required=True, metavar="REV", help="the commit to compare this checkout with"
    )
    parser.add_argument("--after", default=None, metavar="REV", help="instead of this checkout")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=6000, help="plain requests per gateway and round")
    parser.add_argument(
        "--out", type=Path, default=RESULT, help=f"where the results go (default {RESULT.name})"
    )
    args = parser.parse_args()
    result = measure(args.before, args.after, args.rounds, args.requests)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ratio = result["ratio_after_before"]
    print(
        f"CPU per proxied request, after / before: {ratio['median']:.3f}x "
        f"({ratio['low']:.3f} to {ratio['high']:.3f}, {args.rounds} rounds); "
        f"{result['cpu_us']['after']:.0f} µs against {result['cpu_us']['before']:.0f} µs (medians)"
    )


if __name__ == "__main__":
    main()
