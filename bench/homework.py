"""Homework at scale: a class's burst of the same problems through the API port, with the
answer cache and collapsed requests, against fake members that take a realistic time
(testing/fake_member.py: one answer at a time each, `TTFT_S` then `TPT_S` a token, answers
that repeat their problem so a wrong answer shows).

Legs, each repeated over rounds (the figures are the median and the range over rounds):
- burst: STUDENTS x PROBLEMS requests spread at random over WINDOW_S on a key with the
  cache on; counted: generations that reach the members, answers whole and right, the
  time to an answer for a repeat sent after its problem's first copy finished (p95), and
  for the copies that joined the first one while it was generated;
- pairs: PAIRS pairs of problems one digit or sign apart, sent at once (the members made
  fast and concurrent for this leg): answers served for the wrong problem (the goal is none);
- hits: a stored answer asked for again and again, one client then 8 at once: the latency
  of a hit through the API port (p50, p95).

    .venv/bin/python -m bench.homework [--scale 0.2] [--rounds 1]
    .venv/bin/python -m bench.homework --real [--rounds 1]   # the default pool, the real model

With --real the members are the default pool's own (`serve` with its supervisor: two
llama-server members of the default model, 1 thread and 8 slots each) and the answers
the model's, at temperature 0 with room to finish: a generation is counted by the
gateway's own metrics (requests answered by a member), an answer is whole when it ended
by itself (finish_reason "stop") and right when it is the same text as its problem's
first copy (the pairs leg, 1,000 generations, is left out: hours on 2 cores).

Writes bench/results/homework.json (homework_real.json with --real). It is not one of bench/run.py's suites (yet): run it
on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.loadgen import percentiles
from bench.server import DataFolders, Vibeadmin, fake_members, register_remote

MEMBERS, TTFT_S, TPT_S, TOKENS = 2, 0.3, 0.02, 60  # about 1.5 s an answer, one at a time
STUDENTS, PROBLEMS, WINDOW_S = 300, 10, 60.0
PAIRS = 500
HITS = 1000
OUT = Path(__file__).resolve().parent / "results" / "homework.json"
OUT_REAL = OUT.with_name("homework_real.json")
REAL_MAX_TOKENS = 1024  # room to finish: only answers that end by themselves are stored
METRICS_TOKEN = "homework-bench-metrics-token"


def problem(n: int) -> str:
    return f"Homework {n}: solve {n + 2}x + {3 * n + 1} = {7 * n + 5} for x"


def ask(text: str, max_tokens: int) -> dict:
    return {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "vibeadmin": {"task": "math"},
    }


FAKE_ROOM = TOKENS + 40  # the fake stops by itself at TOKENS: a whole answer, stored


async def post(client: aiohttp.ClientSession, url: str, key: str, text: str, room: int = FAKE_ROOM) -> dict:
    started = time.monotonic()
    body_sent = ask(text, room)
    async with client.post(url, json=body_sent, headers={"Authorization": f"Bearer {key}"}) as response:
        body = await response.json(content_type=None)
        ended = time.monotonic()
        choice = body["choices"][0] if response.status == 200 else {}
        answer = (choice.get("message") or {}).get("content") or ""
        return {
            "status": response.status,
            "cache": response.headers.get("x-vibeadmin-cache", ""),
            "started": started,
            "ended": ended,
            "latency_s": ended - started,
            "answer": answer,
            "finish_reason": choice.get("finish_reason"),
            "right": answer.startswith(text),  # the fake repeats its problem
            "whole": len(answer.split()) >= TOKENS,
        }


async def burst(url: str, key: str, students: int, rng: random.Random, room: int = FAKE_ROOM) -> list[dict]:
    shots = sorted((rng.uniform(0, WINDOW_S), n) for _ in range(students) for n in range(PROBLEMS))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=900)) as client:
        t0 = time.monotonic()
        tasks = []
        for at, n in shots:
            delay = t0 + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(post(client, url, key, problem(n), room)))
        results = await asyncio.gather(*tasks)
    for (_, n), result in zip(shots, results, strict=True):
        result["problem"] = n
    return list(results)


def judge_real(results: list[dict]) -> None:
    """The model's answers: whole when they ended by themselves, right when each copy of a
    problem got its first copy's text (one generation, shared or stored, for all of them)."""
    first: dict[int, str] = {}
    for r in sorted(results, key=lambda r: r["ended"]):
        if r["status"] == 200:
            first.setdefault(r["problem"], r["answer"])
    for r in results:
        r["whole"] = r["finish_reason"] == "stop"
        r["right"] = r["status"] == 200 and bool(r["answer"]) and r["answer"] == first.get(r["problem"])


def member_requests(server: Vibeadmin) -> int:
    """Requests the gateway's members have answered (its /metrics): the generations."""
    import urllib.request

    request = urllib.request.Request(
        server.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vibeadmin_requests_total{") and 'member="-"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def burst_figures(results: list[dict], generations: int) -> dict:
    first_done: dict[int, float] = {}
    for r in sorted(results, key=lambda r: r["ended"]):
        if r["status"] == 200:
            first_done.setdefault(r["problem"], r["ended"])
    after = [
        r["latency_s"]
        for r in results
        if r["status"] == 200 and r["started"] >= first_done.get(r["problem"], 1e18)
    ]
    joined = [
        r["latency_s"]
        for r in results
        if r["status"] == 200 and r["started"] < first_done.get(r["problem"], 0)
    ]
    return {
        "requests": len(results),
        "generations": generations,
        "ok": sum(r["status"] == 200 for r in results),
        "whole_and_right": sum(r["status"] == 200 and r["whole"] and r["right"] for r in results),
        "repeat_after_first_s": percentiles(after),
        "joined_first_s": percentiles(joined),
        "cache_labels": {
            label: sum(r["cache"] == label for r in results) for label in ("hit", "miss", "bypass")
        },
    }


async def pairs(url: str, key: str, count: int) -> dict:
    texts = []
    for i in range(count):
        a, b = 3 + i, 11 + 2 * i
        texts += [
            f"Pair {i}: solve {a}x+{b}=7",
            f"Pair {i}: solve {a}x-{b}=7" if i % 2 else f"Pair {i}: solve {a}x+{b + 1}=7",
        ]
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as client:
        results = await asyncio.gather(*(post(client, url, key, t) for t in texts))
    return {
        "requests": len(texts),
        "ok": sum(r["status"] == 200 for r in results),
        "wrong": sum(r["status"] == 200 and not r["right"] for r in results),
    }


async def hits(url: str, key: str, count: int, concurrency: int, room: int = FAKE_ROOM) -> dict:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:
        await post(client, url, key, problem(0), room)  # stored by the burst; make sure
        latencies: list[float] = []
        labels: set[str] = set()

        async def client_loop(n: int) -> None:
            for _ in range(n):
                r = await post(client, url, key, problem(0), room)
                latencies.append(r["latency_s"])
                labels.add(r["cache"])

        await asyncio.gather(*(client_loop(count // concurrency) for _ in range(concurrency)))
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "labels": sorted(labels),
        "latency_ms": {k: v * 1000 for k, v in percentiles(latencies).items() if v is not None},
    }


def one_round(folders: DataFolders, scale: float, seed: int) -> dict:
    model = Path(tempfile.mkdtemp(prefix="vibeadmin-homework-")) / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 4096)  # the cache keys on its sha256
    env = {"VIBEADMIN_MODEL": str(model), "VIBEADMIN_QUEUE_TIMEOUT_S": "600"}
    with (
        fake_members(MEMBERS, ttft=TTFT_S, tpt=TPT_S, max_tokens=TOKENS, echo=True) as members,
        Vibeadmin(folders.new(), supervisor=False, env=env) as server,
    ):
        register_remote(server, [m.url for m in members])
        server.shell(
            "from pool.models import PoolSettings; PoolSettings.objects.get_or_create(pk=1); PoolSettings.objects.update(queue_size=100000, queue_timeout_s=600)"
        )
        key = server.manage("apikey", "create", "school", "--cache").strip().splitlines()[-1]
        time.sleep(1.5)  # the gateway's next refresh sees the members and the key
        url = server.api_url + "/v1/chat/completions"
        students = max(1, round(STUDENTS * scale))
        before = sum(m.stats()["requests"] for m in members)
        results = asyncio.run(burst(url, key, students, random.Random(seed)))
        generations = sum(m.stats()["requests"] for m in members) - before
        figures = {"burst": burst_figures(results, generations)}
        print(json.dumps(figures["burst"]), flush=True)
        figures["hits_1"] = asyncio.run(hits(url, key, max(50, round(HITS * scale)), 1))
        figures["hits_8"] = asyncio.run(hits(url, key, max(80, round(HITS * scale)), 8))
        print(json.dumps({"hits_1": figures["hits_1"], "hits_8": figures["hits_8"]}), flush=True)
        for member in members:  # what is checked now is which answer, not how long it takes
            member.configure(ttft=0.001, tpt=0.0001, concurrent=True)
        before = sum(m.stats()["requests"] for m in members)
        figures["pairs"] = asyncio.run(pairs(url, key, max(10, round(PAIRS * scale))))
        figures["pairs"]["generations"] = sum(m.stats()["requests"] for m in members) - before
        return figures


def one_real_round(folders: DataFolders, scale: float, seed: int) -> dict:
    """The burst and the hits on the default pool (its supervisor, the default model)."""
    env = {"VIBEADMIN_QUEUE_TIMEOUT_S": "900", "VIBEADMIN_METRICS_TOKEN": METRICS_TOKEN}
    with Vibeadmin(folders.new(), supervisor=True, env=env) as server:
        server.wait_ready(list(server.members()) or ["m1", "m2"], timeout=300)
        server.shell(
            "from pool.models import PoolSettings; PoolSettings.objects.get_or_create(pk=1); PoolSettings.objects.update(queue_size=100000, queue_timeout_s=900)"
        )
        key = server.manage("apikey", "create", "school", "--cache").strip().splitlines()[-1]
        time.sleep(1.5)  # the gateway's next refresh sees the key
        url = server.api_url + "/v1/chat/completions"
        students = max(1, round(STUDENTS * scale))
        before = member_requests(server)
        started = time.monotonic()
        results = asyncio.run(burst(url, key, students, random.Random(seed), REAL_MAX_TOKENS))
        took = time.monotonic() - started
        judge_real(results)
        figures = {"burst": {**burst_figures(results, member_requests(server) - before), "took_s": took}}
        figures["burst"]["answer_tokens_sample"] = [len(r["answer"].split()) for r in results[:3]]
        print(json.dumps(figures["burst"]), flush=True)
        figures["hits_1"] = asyncio.run(hits(url, key, max(50, round(HITS * scale)), 1, REAL_MAX_TOKENS))
        figures["hits_8"] = asyncio.run(hits(url, key, max(80, round(HITS * scale)), 8, REAL_MAX_TOKENS))
        print(json.dumps({"hits_1": figures["hits_1"], "hits_8": figures["hits_8"]}), flush=True)
        return figures


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="students and pairs, as a share of the full size"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--real", action="store_true", help="the default pool and model instead of fake members"
    )
    args = parser.parse_args()
    folders = DataFolders()
    rounds = []
    for i in range(args.rounds):
        figures = (one_real_round if args.real else one_round)(folders, args.scale, seed=i)
        print(json.dumps(figures, indent=1), flush=True)
        rounds.append(figures)
    summary = {
        "generations": spread([r["burst"]["generations"] for r in rounds]),
        "repeat_after_first_p95_s": spread([r["burst"]["repeat_after_first_s"]["p95"] or 0 for r in rounds]),
        "hit_p95_ms_1_client": spread([r["hits_1"]["latency_ms"]["p95"] for r in rounds]),
        "hit_p95_ms_8_clients": spread([r["hits_8"]["latency_ms"]["p95"] for r in rounds]),
    }
    if not args.real:
        summary["wrong_answers_in_pairs"] = spread([r["pairs"]["wrong"] for r in rounds])
    (OUT_REAL if args.real else OUT).write_text(
        json.dumps({"scale": args.scale, "rounds": rounds, "summary": summary}, indent=1) + "\n"
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
