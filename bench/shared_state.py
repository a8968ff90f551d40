"""7. Two gateways behind one load balancer, least connections: in-flight counts shared in
Redis versus each gateway keeping its own. Same Poisson arrivals at 80% of the pool's
capacity, the same request lengths as the strategies benchmark, alternated between the
two gateways as a round-robin load balancer would.

With counts of its own, each gateway believes a member is free while the other gateway
keeps it busy, so requests land on busy members and wait inside them, where no strategy
can help. With shared counts, they wait for the next free member in one line that both
gateways share (arrival order kept in Redis), so the earliest request anywhere goes first.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path

from bench.context import Bench
from bench.figures import save
from bench.loadgen import Shot, open_loop
from bench.server import Vibeadmin, fake_members, register_remote
from bench.strategies import TPT_S, TTFT_S, calibrate, load_problems, measure, schedule, tokens_of
from testing.services import redis_missing, start_redis

NAME = "shared_state"
MEMBERS = 4
LOAD = 0.8
MODES = ("separate", "shared")


def run(bench: Bench) -> dict:
    missing = redis_missing()
    if missing:
        bench.note(f"shared_state skipped: {missing}")
        return {"name": NAME, "skipped": missing, "runs": []}
    problems = load_problems()
    count = bench.scale.count(300, least=20)
    redis = start_redis()
    runs = []
    try:
        with fake_members(MEMBERS, ttft=TTFT_S, tpt=TPT_S, max_tokens=4096) as members:
            fixed, per_token = calibrate(members[0].url)
            capacity = MEMBERS / (sum(fixed + per_token * tokens_of(p) for p in problems) / len(problems))
            for mode in MODES:
                for member in members:
                    member.reset()
                shots = schedule(problems, capacity * LOAD, count, "", "", seed=80)
                row = one_mode(bench, mode, redis.url, [m.url for m in members], shots, (fixed, per_token))
                row["max_concurrent"] = max(m.stats()["max_concurrent"] for m in members)
                runs.append(row)
                print(
                    f"  {mode:8} p50 {row['latency_s']['p50']:.3f} p99 {row['latency_s']['p99']:.3f} s, "
                    f"most requests on one member at once {row['max_concurrent']}, failed {row['failed']}",
                    flush=True,
                )
            student = student_quota_leg(bench, redis.url, [m.url for m in members])
            print(
                f"  a student's day of {student['quota']} tokens through two gateways: used "
                f"{student['used']}, over by {student['over']} (one request reserves {student['reservation']})",
                flush=True,
            )
    finally:
        redis.stop()
    by_mode = {r["mode"]: r for r in runs}
    ratio = by_mode["shared"]["latency_s"]["p99"] / by_mode["separate"]["latency_s"]["p99"]
    return {
        "name": NAME,
        "members": MEMBERS,
        "load": LOAD,
        "capacity_rps": capacity,
        "requests": count,
        "runs": runs,
        "p99_shared_vs_separate": ratio,
        "student_quota": student,
    }


def one_mode(bench: Bench, mode: str, redis_url: str, urls: list[str], shots, service) -> dict:
    data = bench.folders.new()
    env = {"REDIS_URL": redis_url} if mode == "shared" else {}
    first = Vibeadmin(data, supervisor=False, env=env)
    second = Vibeadmin(data, supervisor=False, env=env)
    second.log = data / "serve-second.out"
    register_remote(first, urls)
    first.manage("pool", "strategy", "least_connections")
    key = first.create_key()
    with first, second:
        for i, shot in enumerate(shots):  # the load balancer: every other request to the second gateway
            shot.url = (second.url if i % 2 else first.url) + "/v1/chat/completions"
            shot.headers["Authorization"] = f"Bearer {key}"
        results = asyncio.run(open_loop(shots, timeout_s=120))
    row = measure(results, *service)
    row["mode"] = mode
    return row


STUDENT_QUOTA, STUDENT_REQUESTS, STUDENT_MAX_TOKENS = 3_000, 400, 40
STUDENT_SPACING_S = 0.01  # apart enough that answers end (and settle) while others arrive


def student_quota_leg(bench: Bench, redis_url: str, urls: list[str]) -> dict:
    """Two gateways sharing Redis, one key whose students may use STUDENT_QUOTA tokens a
    day; one student sends STUDENT_REQUESTS 10 ms apart, every other one to the second gateway.
    What the student used, as the gateway counted it (GET /v1/usage?user=), against the
    quota: over by at most one request's reservation is the goal."""
    data = bench.folders.new()
    env = {"REDIS_URL": redis_url}
    first = Vibeadmin(data, supervisor=False, env=env)
    second = Vibeadmin(data, supervisor=False, env=env)
    second.log = data / "serve-second.out"
    register_remote(first, urls)
    key = first.manage("apikey", "create", "school", "--user-tokens-per-day", str(STUDENT_QUOTA))
    key = key.strip().splitlines()[-1]
    messages = [{"role": "user", "content": "Count to forty."}]
    body = {"model": "vibethinker", "max_tokens": STUDENT_MAX_TOKENS, "messages": messages, "user": "alice"}
    with first, second:
        shots = [
            Shot(
                (second.url if i % 2 else first.url) + "/v1/chat/completions",
                body,
                {"Authorization": f"Bearer {key}"},
                at=i * STUDENT_SPACING_S,
            )
            for i in range(STUDENT_REQUESTS)
        ]
        results = asyncio.run(open_loop(shots, timeout_s=120))
        time.sleep(3.0)  # both gateways write their books every two seconds
        with urllib.request.urlopen(
            urllib.request.Request(
                first.url + "/v1/usage?user=alice", headers={"Authorization": f"Bearer {key}"}
            ),
            timeout=10,
        ) as reply:
            used = json.load(reply)["today"]["total_tokens"]
    reservation = STUDENT_MAX_TOKENS + prompt_estimate(messages)
    return {
        "quota": STUDENT_QUOTA,
        "requests": STUDENT_REQUESTS,
        "served": sum(r.ok for r in results),
        "refused": sum(r.code == "user_quota_exceeded" for r in results),
        "used": used,
        "over": max(0, used - STUDENT_QUOTA),
        "reservation": reservation,
    }


def prompt_estimate(messages: list[dict]) -> int:
    """The gateway's own estimate of the prompt, the operator's system prompt added."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vibeadmin.settings")
    import django

    django.setup()
    from pool.gateway.admission import estimate_prompt_tokens

    system = {"role": "system", "content": "You are a helpful assistant."}
    return estimate_prompt_tokens({"messages": [system, *messages]})


def goals(result: dict) -> list[dict]:
    if result.get("skipped"):
        return []
    shared = next(r for r in result["runs"] if r["mode"] == "shared")
    ratio = result["p99_shared_vs_separate"]
    student = result.get("student_quota")
    overspend = (
        [
            {
                "benchmark": NAME,
                "unit": "requests",
                "value": round(student["over"] / student["reservation"], 3),
                "met": student["over"] <= student["reservation"],
                "goal": "two gateways sharing Redis: a student's daily tokens overspent by at most one request",
            }
        ]
        if student
        else []
    )
    return overspend + [
        {
            "benchmark": NAME,
            "unit": "requests",
            "value": shared["max_concurrent"],
            "met": shared["max_concurrent"] <= 1,
            "goal": "two gateways with shared counts: a member never holds more than its capacity (1)",
        },
        {
            "benchmark": NAME,
            "unit": "×",
            "value": round(ratio, 3),
            "met": ratio < 1.0,
            "goal": "two gateways, least connections, p99 at 80% load: shared counts vs separate < 1 ×",
        },
    ]


def plot(result: dict, out: Path) -> list[str]:
    if result.get("skipped"):
        return []
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    modes = [r["mode"] for r in result["runs"]]
    for i, p in enumerate(("p50", "p95", "p99")):
        ax.bar(
            [x + (i - 1) * 0.27 for x in range(len(modes))],
            [r["latency_s"][p] for r in result["runs"]],
            0.27,
            label=p,
        )
    ax.set_xticks(range(len(modes)), [f"{m} counts" for m in modes])
    ax.set_ylabel("latency (s)")
    ax.set_title("two gateways, least connections, 80% load")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return [save(fig, out, "shared_state.png")]


def markdown(result: dict) -> str:
    if result.get("skipped"):
        return f"Skipped: {result['skipped']}."
    lines = [
        "| counts | p50 / p95 / p99 latency (s) | requests that waited inside a busy member | failed |",
        "|---|---|---|---|",
    ]
    for r in result["runs"]:
        lat = r["latency_s"]
        lines.append(
            f"| {r['mode']} | {lat['p50']:.3f} / {lat['p95']:.3f} / {lat['p99']:.3f} | "
            f"{'yes' if r['max_concurrent'] > 1 else 'none'} (max {r['max_concurrent']} at once) | "
            f"{r['failed']} |"
        )
    lines.append(
        f"\np99 with shared counts is **{result['p99_shared_vs_separate']:.2f} ×** that with separate counts."
    )
    student = result.get("student_quota")
    if student:
        lines.append(
            f"\nA student's day of {student['quota']} tokens, {student['requests']} requests 10 ms apart through the "
            f"two gateways: {student['served']} served, {student['refused']} refused (user_quota_exceeded); "
            f"used {student['used']}, over by {student['over']} tokens, where one request reserves "
            f"{student['reservation']}."
        )
    return "\n".join(lines)
