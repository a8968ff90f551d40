"""8. Fair sharing: 4 fake members of about 100 ms each (one generation at a time),
one gateway, in the same run as a FIFO leg. FIFO is the same gateway with both platforms on
one key (one tenant: its own requests keep arrival order, so the line is first come, first
served). Isolation: platform A floods on 12 connections (3x the pool's 4 slots); B sends 20%
of capacity (Poisson); B's p95 latency alone, behind FIFO and with fair queuing. Proportion:
weights 2:1, both saturating; tokens served per window. Classes: a batch key saturates, an
interactive one sends 20%. Rejection: Poisson load stepped from 50% to 150% of capacity with
a 2 s queue deadline. Microbenchmark: the queue's cost per request at 1,000 waiting.
Each leg is repeated over rounds, the legs interleaved within each round; figures are the
median and the range over rounds."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import statistics
import time
from pathlib import Path

from bench.context import Bench
from bench.figures import save
from bench.loadgen import Result, Shot, closed_loop, open_loop, percentiles, poisson
from bench.server import Vibeadmin, fake_members, register_remote

NAME = "fairness"
MEMBERS, TTFT_S, TPT_S, TOKENS = 4, 0.02, 0.002, 40
SERVICE_S = TTFT_S + TPT_S * (TOKENS - 1)
CAPACITY_RPS = MEMBERS / SERVICE_S
FLOOD_CLIENTS = 3 * MEMBERS
LIGHT_SHARE = 0.2
DEADLINE_S = 2.0
KEYS = {
    "a": (1, "interactive"),
    "b": (1, "interactive"),
    "heavy": (2, "interactive"),
    "light": (1, "interactive"),
    "bulk": (1, "batch"),
    "student": (1, "interactive"),
    "stepped": (1, "interactive"),
    "platform": (1, "interactive"),
}
CLASSMATE_AT_ONCE = 16
PREDICTED = re.compile(r"would take about ([0-9.]+)s")


def body(tokens: int = TOKENS, user: str = "") -> dict:
    sent = {"model": "vibethinker", "max_tokens": tokens, "messages": [{"role": "user", "content": "Count."}]}
    return {**sent, "user": user} if user else sent


def shots(
    url: str, key: str, rate: float, duration: float, rng: random.Random, start: float = 0.0
) -> list[Shot]:
    count = max(1, int(rate * duration))
    times = [start + t for t in poisson(rate, count, rng) if t < duration]
    return [Shot(url, body(), {"Authorization": f"Bearer {key}"}, at=t, tag=key) for t in times]


async def flood_and_light(url: str, flood_key: str | None, light_key: str, duration: float, seed: int):
    """A closed-loop flood (if any) beside an open-loop light platform, for `duration`."""
    light = shots(url, light_key, LIGHT_SHARE * CAPACITY_RPS, duration, random.Random(seed))
    headers = {"Authorization": f"Bearer {flood_key}"}
    flood = (
        closed_loop(
            lambda n, i: Shot(url, body(), headers, tag=flood_key or ""),
            FLOOD_CLIENTS,
            duration,
            warmup_s=min(1.0, duration / 4),
        )
        if flood_key
        else None
    )
    if flood is None:
        return [], await open_loop(light), duration
    (flooded, window), lit = await asyncio.gather(flood, open_loop(light))
    return flooded, lit, window


def isolation_round(server: Vibeadmin, keys: dict, duration: float, seed: int) -> dict:
    url = server.api_url + "/v1/chat/completions"
    legs = {"alone": (None, keys["b"]), "fifo": (keys["a"], keys["a"]), "fair": (keys["a"], keys["b"])}
    row = {}
    for leg, (flood_key, light_key) in legs.items():
        flooded, lit, window = asyncio.run(flood_and_light(url, flood_key, light_key, duration, seed))
        ok = [r for r in lit if r.ok]
        in_window = [r for r in flooded if r.ok] + [r for r in ok if r.end >= min(1.0, duration / 4)]
        row[leg] = {
            "b_p95_s": percentiles([r.latency_s for r in ok])["p95"],
            "b_sent": len(lit),
            "b_ok": len(ok),
            "rps": len(in_window) / window if flood_key else None,
        }
        time.sleep(0.5)  # let the line drain between legs
    return row


def students_round(server: Vibeadmin, keys: dict, duration: float, seed: int) -> dict:
    """One key, two students: a quiet one asking now and then (Poisson, 20% of capacity),
    alone, then beside a classmate who keeps 16 requests in flight. Named: each sends its
    `user` (the fair line serves them in turn); unnamed: the same requests as the key's own
    (first come, first served within the key, as before students were named)."""
    url = server.api_url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {keys['platform']}"}
    row = {}
    for leg, classmate, named in (("alone", False, True), ("named", True, True), ("unnamed", True, False)):
        rng = random.Random(seed)
        times = [
            t for t in poisson(LIGHT_SHARE * CAPACITY_RPS, int(LIGHT_SHARE * CAPACITY_RPS * duration), rng)
        ]
        quiet = [
            Shot(url, body(user="quiet" if named else ""), headers, at=t, tag="quiet")
            for t in times
            if t < duration
        ]
        loud = body(user="loud" if named else "")
        flood = (
            closed_loop(
                lambda n, i, loud=loud: Shot(url, loud, headers, tag="loud"),
                CLASSMATE_AT_ONCE,
                duration,
                warmup_s=min(1.0, duration / 4),
            )
            if classmate
            else None
        )

        async def both(flood=flood, quiet=quiet):
            if flood is None:
                return await open_loop(quiet)
            _, lit = await asyncio.gather(flood, open_loop(quiet))
            return lit

        ok = [r for r in asyncio.run(both()) if r.ok]
        row[leg] = {
            "quiet_median_s": statistics.median(r.latency_s for r in ok) if ok else None,
            "quiet_ok": len(ok),
        }
        time.sleep(0.5)
    return row


def tokens_by_window(results: list[Result], window_s: float) -> list[dict[str, int]]:
    windows: dict[int, dict[str, int]] = {}
    for r in results:
        if r.ok:
            w = windows.setdefault(int(r.end // window_s), {})
            w[r.tag] = w.get(r.tag, 0) + r.tokens
    return [windows[k] for k in sorted(windows)][1:-1] or [
        windows[k] for k in sorted(windows)
    ]  # whole windows


async def saturate_both(url: str, keys: list[str], duration: float) -> list[Result]:
    runs = [
        closed_loop(
            lambda n, i, k=k: Shot(url, body(), {"Authorization": f"Bearer {k}"}, tag=k),
            FLOOD_CLIENTS,
            duration,
            warmup_s=0.0,
        )
        for k in keys
    ]
    done = await asyncio.gather(*runs)
    return [r for results, _ in done for r in results]


def proportion_round(server: Vibeadmin, keys: dict, duration: float, window_s: float) -> dict:
    url = server.api_url + "/v1/chat/completions"
    results = asyncio.run(saturate_both(url, [keys["heavy"], keys["light"]], duration))
    ratios = [
        w.get(keys["heavy"], 0) / w[keys["light"]]
        for w in tokens_by_window(results, window_s)
        if w.get(keys["light"])
    ]
    return {"ratios": ratios}


def classes_round(server: Vibeadmin, keys: dict, duration: float, seed: int) -> dict:
    url = server.api_url + "/v1/chat/completions"
    row = {}
    for leg, flood_key in (("alone", None), ("beside_batch", keys["bulk"])):
        flooded, lit, window = asyncio.run(flood_and_light(url, flood_key, keys["student"], duration, seed))
        ok = [r for r in lit if r.ok]
        row[leg] = {
            "p95_s": percentiles([r.latency_s for r in ok])["p95"],
            "batch_rps": sum(r.ok for r in flooded) / window if flood_key else None,
            "interactive_rps": len(ok) / duration,
        }
        time.sleep(0.5)
    return row


def rejection_round(server: Vibeadmin, keys: dict, duration: float, seed: int) -> dict:
    """Poisson at 50% of capacity, then 150%: admitted requests must start before the
    deadline; each early refusal's Retry-After against the real time until the line that
    was ahead of it had started."""
    url = server.api_url + "/v1/chat/completions"
    rng = random.Random(seed)
    half = duration / 2
    plan = shots(url, keys["stepped"], 0.5 * CAPACITY_RPS, half, rng) + [
        s for s in shots(url, keys["stepped"], 1.5 * CAPACITY_RPS, half, rng, start=half)
    ]
    results = asyncio.run(open_loop(plan))
    admitted = [r for r in results if r.ok]
    starts = [(r.at, r.at + (r.queue_ms or 0) / 1000) for r in admitted]
    refused = [r for r in results if r.code == "queue_wait_too_long"]
    checks = []
    for r in refused:
        ahead = [start for at, start in starts if at < r.at < start]
        real = max(ahead) - r.at if ahead else 0.0
        match = PREDICTED.search(r.message)
        checks.append(
            {
                "real_s": real,
                "retry_after_s": r.retry_after,
                "predicted_s": float(match[1]) if match else None,
            }
        )
    in_time = [r for r in admitted if (r.queue_ms or 0) / 1000 <= DEADLINE_S]
    return {
        "sent": len(results),
        "admitted": len(admitted),
        "in_time": len(in_time),
        "refused_early": len(refused),
        "timed_out": sum(r.code == "queue_timeout" for r in results),
        "checks": checks,
    }


def microbench(rounds: int, waiting: int = 1000, steps: int = 5000) -> dict:
    """The router's cost per request with `waiting` requests in line: one slot freed (the
    first in fair order gets it) and one arrival (it joins the line), through the router
    with this process's slots and stand-in members; over 10 tenants and over 1,000."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vibeadmin.settings")
    import django

    django.setup()
    from pool.gateway.types import Tenant
    from testing.stand_in import Pool

    rows: dict[str, list[float]] = {}
    line_only: dict[str, list[float]] = {}
    second: list[float] = []
    # "10", "1000": tenants (each request its tenant's own); "students:1000": one key's
    # 1,000 students, the second level's case; "one key": the same key with no students named.
    cases = ((10, 0), (waiting, 0), (1, waiting), (1, 0))
    for _ in range(rounds):  # interleaved: each round measures every case once
        for tenants, students in cases:
            name = f"students:{students}" if students else ("one key" if tenants == 1 else str(tenants))
            rows.setdefault(name, []).append(
                asyncio.run(_cycle(Pool, Tenant, tenants, waiting, steps, students))
            )
            line_only.setdefault(name, []).append(_line_cycle(Tenant, tenants, waiting, steps * 4, students))
        second.append(_second_level_cycle(waiting, waiting, steps * 4))
    return {
        "waiting": waiting,
        "steps": steps,
        "us_per_request": rows,
        "line_us_per_request": line_only,
        "second_level_us_per_request": second,
    }


def _line_cycle(Tenant, tenants: int, waiting: int, steps: int, students: int = 0) -> float:
    """The fair line's own work per request, without the event loop's: tag, join, predict,
    first, leave, start, settle."""
    from types import SimpleNamespace

    from pool.gateway.fair import FairClock, FairLine
    from pool.gateway.types import RouteContext

    clock, line = FairClock(), FairLine()
    names = [Tenant(f"key:{i}", f"t{i}", weight=1 + i % 3) for i in range(tenants)]

    def waiter(i: int):
        ctx = RouteContext("", TOKENS, names[i % tenants], student=f"u{i % students}" if students else "")
        w = SimpleNamespace(
            ctx=ctx, tag=clock.tag(ctx.tenant, TOKENS), turn=None, number=0, queued=False, second=(0.0, 0)
        )
        line.push(w)  # type: ignore[arg-type]

    for i in range(waiting):
        waiter(i)
    started = time.perf_counter()
    for i in range(steps):
        line.work_ahead(names[i % tenants], TOKENS)
        waiter(i)
        first = line.first()
        line.remove(first)  # type: ignore[arg-type]
        clock.start(first.tag)  # type: ignore[union-attr]
        clock.settle(first.ctx.tenant, TOKENS, TOKENS // 2)  # type: ignore[union-attr]
    return (time.perf_counter() - started) / steps * 1e6


def _second_level_cycle(students: int, waiting: int, steps: int) -> float:
    """The second level's own work per request (TenantLine: a student's turn joined, the
    first in turn handed the tenant's first place, and gone), timed around those calls
    only, with `waiting` requests of `students` students of one key in line."""
    from types import SimpleNamespace

    from pool.gateway.fair import TenantLine, place
    from pool.gateway.types import RouteContext, Tenant, Turn

    tenant = Tenant("key:1", "platform")
    line = TenantLine(tenant)
    numbers = itertools.count()

    def arrive(i: int) -> SimpleNamespace:
        n = next(numbers)
        ctx = RouteContext("", TOKENS, tenant, student=f"u{(i * 7919) % students}")
        turn = Turn(f"{n:012d}", 0.0, tenant, TOKENS, float(n))
        w = SimpleNamespace(ctx=ctx, turn=turn, tag=float(n), number=n, queued=True, second=(0.0, 0))
        line.places.append(place(w))  # the first level's part, outside the timing
        line.owner[place(w)] = w
        return w

    for i in range(waiting):
        line.join(arrive(i))
    spent = 0
    for i in range(steps):
        w = arrive(i)
        started = time.perf_counter_ns()
        line.join(w)
        first = line.promote(0)
        line.leave(first)
        spent += time.perf_counter_ns() - started
        del line.owner[line.places.popleft()]
    return spent / steps / 1000


async def _cycle(Pool, Tenant, tenants: int, waiting: int, steps: int, students: int = 0) -> float:
    pool = Pool(MEMBERS, queue_timeout_s=1e6)  # no early refusals: the line stays at `waiting`
    names = [Tenant(f"key:{i}", f"t{i}", weight=1 + i % 3) for i in range(tenants)]

    def student(i: int) -> str:
        return f"u{i % students}" if students else ""

    for i in range(MEMBERS + waiting):
        pool.arrive(names[i % tenants], student=student(i))
    await pool.settle()
    started = time.perf_counter()
    for i in range(steps):
        pool.finish(0)
        pool.arrive(names[i % tenants], student=student(i))
        await asyncio.sleep(0)  # the served waiter's task and the arrival's run
        await asyncio.sleep(0)
    per = (time.perf_counter() - started) / steps * 1e6
    assert len(pool.router.queue) >= waiting - MEMBERS, "the line drained: the figure would not be at 1,000"
    await pool.close()
    return per


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "low": None, "high": None}
    return {"median": statistics.median(values), "low": min(values), "high": max(values)}


def run(bench: Bench) -> dict:
    rounds = 1 if bench.scale.smoke else max(3, bench.scale.rounds)
    duration = bench.scale.seconds(20.0, least=2.0)
    window_s = bench.scale.seconds(30.0, least=2.0)
    result: dict = {
        "name": NAME,
        "members": MEMBERS,
        "service_s": SERVICE_S,
        "capacity_rps": CAPACITY_RPS,
        "duration_s": duration,
        "window_s": window_s,
        "rounds": rounds,
        "deadline_s": DEADLINE_S,
    }
    with fake_members(MEMBERS, ttft=TTFT_S, tpt=TPT_S, max_tokens=TOKENS) as members:
        server = Vibeadmin(bench.folders.new(), supervisor=False)
        register_remote(server, [m.url for m in members])
        keys = {
            name: server.manage("apikey", "create", name, "--weight", str(weight), "--priority", priority)
            .strip()
            .splitlines()[-1]
            for name, (weight, priority) in KEYS.items()
        }
        with server:
            time.sleep(1.0)
            iso, prop, cls, stu = [], [], [], []
            for n in range(rounds):
                iso.append(isolation_round(server, keys, duration, seed=n))
                stu.append(students_round(server, keys, duration, seed=n))
                prop.append(proportion_round(server, keys, max(duration, 2 * window_s + 1), window_s))
                cls.append(classes_round(server, keys, duration, seed=n))
                print(
                    f"  round {n + 1}: B p95 alone {iso[-1]['alone']['b_p95_s']:.3f} s, FIFO "
                    f"{iso[-1]['fifo']['b_p95_s']:.3f} s, fair {iso[-1]['fair']['b_p95_s']:.3f} s; quiet "
                    f"student's median alone {stu[-1]['alone']['quiet_median_s'] or 0:.3f} s, beside a classmate "
                    f"named {stu[-1]['named']['quiet_median_s'] or 0:.3f} s, unnamed "
                    f"{stu[-1]['unnamed']['quiet_median_s'] or 0:.3f} s",
                    flush=True,
                )
            server.shell(
                f"from pool.models import PoolSettings; PoolSettings.objects.get_or_create(pk=1); "
                f"PoolSettings.objects.update(queue_timeout_s={DEADLINE_S})"
            )
            time.sleep(1.0)
            rej = [rejection_round(server, keys, 2 * duration, seed=n) for n in range(rounds)]
    result.update(
        isolation=iso, proportion=prop, classes=cls, students=stu, rejection=rej, micro=microbench(rounds)
    )
    result["figures"] = figures(result)
    return result


def figures(result: dict) -> dict:
    """Medians and ranges over rounds of what the goals are about."""
    iso, cls, rej = result["isolation"], result["classes"], result["rejection"]
    ratios = [r for row in result["proportion"] for r in row["ratios"]]
    checks = [c for row in rej for c in row["checks"] if c["real_s"] > 0]
    return {
        "b_p95_alone_s": spread([r["alone"]["b_p95_s"] for r in iso]),
        "b_p95_fifo_s": spread([r["fifo"]["b_p95_s"] for r in iso]),
        "b_p95_fair_s": spread([r["fair"]["b_p95_s"] for r in iso]),
        "fair_vs_alone": spread([r["fair"]["b_p95_s"] / r["alone"]["b_p95_s"] for r in iso]),
        "fair_vs_fifo": spread([r["fair"]["b_p95_s"] / r["fifo"]["b_p95_s"] for r in iso]),
        "throughput_fair_vs_fifo": spread([r["fair"]["rps"] / r["fifo"]["rps"] for r in iso]),
        "weight_ratio": spread(ratios),
        "windows_within_5pct": sum(abs(r / 2 - 1) <= 0.05 for r in ratios),
        "windows": len(ratios),
        "interactive_vs_alone": spread([r["beside_batch"]["p95_s"] / r["alone"]["p95_s"] for r in cls]),
        "batch_rps": spread([r["beside_batch"]["batch_rps"] for r in cls]),
        "pool_rps_with_batch": spread(
            [r["beside_batch"]["batch_rps"] + r["beside_batch"]["interactive_rps"] for r in cls]
        ),
        # Admitted: let into the line (served, or timed out in it), not refused at once.
        "in_time": spread([r["in_time"] / (r["admitted"] + r["timed_out"]) for r in rej if r["admitted"]]),
        "refused_early": sum(r["refused_early"] for r in rej),
        "timed_out": sum(r["timed_out"] for r in rej),
        "retry_after_within_30pct": spread(
            [
                sum(abs(c["retry_after_s"] / c["real_s"] - 1) <= 0.3 for c in row_checks) / len(row_checks)
                for row_checks in ([c for c in row["checks"] if c["real_s"] > 0] for row in rej)
                if row_checks
            ]
        ),
        "predicted_within_30pct": spread(
            [sum(abs(c["predicted_s"] / c["real_s"] - 1) <= 0.3 for c in checks) / len(checks)]
            if checks
            else []
        ),
        "quiet_median_alone_s": spread([r["alone"]["quiet_median_s"] for r in result.get("students", [])]),
        "quiet_median_named_s": spread([r["named"]["quiet_median_s"] for r in result.get("students", [])]),
        "quiet_median_unnamed_s": spread(
            [r["unnamed"]["quiet_median_s"] for r in result.get("students", [])]
        ),
        "quiet_named_vs_alone": spread(
            [
                r["named"]["quiet_median_s"] / r["alone"]["quiet_median_s"]
                for r in result.get("students", [])
                if r["named"]["quiet_median_s"] and r["alone"]["quiet_median_s"]
            ]
        ),
        "quiet_unnamed_vs_alone": spread(
            [
                r["unnamed"]["quiet_median_s"] / r["alone"]["quiet_median_s"]
                for r in result.get("students", [])
                if r["unnamed"]["quiet_median_s"] and r["alone"]["quiet_median_s"]
            ]
        ),
        "line_us_1000_students": spread(
            result["micro"]["line_us_per_request"].get(f"students:{result['micro']['waiting']}", [])
        ),
        "line_us_one_key": spread(result["micro"]["line_us_per_request"].get("one key", [])),
        "second_level_us_1000_students": spread(result["micro"].get("second_level_us_per_request", [])),
        "micro_us_1000_students": spread(
            result["micro"]["us_per_request"].get(f"students:{result['micro']['waiting']}", [])
        ),
        "micro_us_10_tenants": spread(result["micro"]["us_per_request"]["10"]),
        "micro_us_1000_tenants": spread(result["micro"]["us_per_request"][str(result["micro"]["waiting"])]),
        "line_us_10_tenants": spread(result["micro"]["line_us_per_request"]["10"]),
        "line_us_1000_tenants": spread(
            result["micro"]["line_us_per_request"][str(result["micro"]["waiting"])]
        ),
    }


def goals(result: dict) -> list[dict]:
    f = result["figures"]

    def goal(text: str, value, met: bool, unit: str = "") -> dict:
        return {"benchmark": NAME, "goal": text, "unit": unit, "value": value, "met": met}

    def median(key: str):
        return f[key]["median"]

    def at_most(text: str, key: str, bound: float, unit: str) -> dict:
        value = median(key)
        return goal(text, _r(value), value is not None and value <= bound, unit)

    def at_least(text: str, key: str, bound: float) -> dict:
        return goal(text, _r(median(key)), (median(key) or 0) >= bound)

    return [
        at_most(
            "isolation: B's p95 with fair queuing <= 2x its p95 alone",
            "fair_vs_alone",
            2.0,
            "x",
        ),
        at_most(
            "isolation: B's p95 with fair queuing <= 0.3x its p95 behind FIFO",
            "fair_vs_fifo",
            0.3,
            "x",
        ),
        goal(
            "isolation: pool throughput with fair queuing within 5% of FIFO's",
            _r(median("throughput_fair_vs_fifo")),
            abs((median("throughput_fair_vs_fifo") or 0) - 1) <= 0.05,
            "x",
        ),
        goal(
            "proportion: weights 2:1 serve tokens within +-5% of 2:1 in every window (share of windows)",
            _r(f["windows_within_5pct"] / f["windows"]) if f["windows"] else None,
            f["windows"] > 0 and f["windows_within_5pct"] == f["windows"],
        ),
        at_most(
            "classes: interactive p95 beside a saturating batch key <= 2x alone",
            "interactive_vs_alone",
            2.0,
            "x",
        ),
        at_most(
            "students: a quiet student's median latency beside a classmate of the same key sending 16 at "
            "once <= 2x alone",
            "quiet_named_vs_alone",
            2.0,
            "x",
        ),
        at_most(
            "students: the second level's own cost < 10 us per request with 1,000 students of one key "
            "waiting",
            "second_level_us_1000_students",
            10,
            "us",
        ),
        at_least("rejection: >= 95% of admitted requests start before the deadline", "in_time", 0.95),
        at_least(
            "rejection: Retry-After within +-30% of the real time until a slot was free",
            "retry_after_within_30pct",
            0.95,
        ),
        at_most(
            "the fair line's own work < 50 us per request at 1,000 waiting (10 tenants)",
            "line_us_10_tenants",
            50,
            "us",
        ),
        at_most(
            "the fair line's own work < 50 us per request at 1,000 waiting (1,000 tenants)",
            "line_us_1000_tenants",
            50,
            "us",
        ),
        at_most(
            "through the router (event loop included) < 50 us per request at 1,000 waiting (10 tenants)",
            "micro_us_10_tenants",
            50,
            "us",
        ),
        at_most(
            "through the router (event loop included) < 50 us per request at 1,000 waiting (1,000 tenants)",
            "micro_us_1000_tenants",
            50,
            "us",
        ),
    ]


def _r(value):
    return round(value, 3) if isinstance(value, float) else value


def plot(result: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    f = result["figures"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(11, 3.4))
    legs = ["alone", "fifo", "fair"]
    meds = [f[f"b_p95_{leg}_s"]["median"] for leg in legs]
    errs = [
        [m - f[f"b_p95_{leg}_s"]["low"] for m, leg in zip(meds, legs, strict=True)],
        [f[f"b_p95_{leg}_s"]["high"] - m for m, leg in zip(meds, legs, strict=True)],
    ]
    left.bar(legs, meds, yerr=errs, color=["#888", "#d1345b", "#3451d1"])
    left.set_ylabel("B's p95 latency (s)")
    left.set_title("isolation (median, range)")
    ratios = [r for row in result["proportion"] for r in row["ratios"]]
    middle.plot(range(1, len(ratios) + 1), ratios, marker="o")
    middle.axhspan(1.9, 2.1, color="green", alpha=0.15, label="goal 2 +-5%")
    middle.set_xlabel("window")
    middle.set_ylabel("tokens, weight 2 / weight 1")
    middle.legend()
    checks = [c for row in result["rejection"] for c in row["checks"] if c["real_s"] > 0]
    right.scatter(
        [c["real_s"] for c in checks], [c["retry_after_s"] for c in checks], s=8, label="Retry-After"
    )
    right.scatter([c["real_s"] for c in checks], [c["predicted_s"] for c in checks], s=8, label="prediction")
    top = max([c["real_s"] for c in checks] + [1.0])
    right.plot([0, top], [0, top], color="#888", ls=":")
    right.set_xlabel("real time until the line ahead started (s)")
    right.set_ylabel("said (s)")
    right.legend()
    return [save(fig, out, "fairness.png")]


def markdown(result: dict) -> str:
    f = result["figures"]

    def cell(key: str, digits: int = 3) -> str:
        s = f.get(key)  # a result from before the figure existed has none
        if s is None or s["median"] is None:
            return "–"
        return f"{s['median']:.{digits}f} ({s['low']:.{digits}f}–{s['high']:.{digits}f})"

    return "\n".join(
        [
            f"{result['members']} members of {result['service_s'] * 1000:.0f} ms ({result['capacity_rps']:.0f} req/s), "
            f"{result['rounds']} rounds of {result['duration_s']:.0f} s legs; median (range) over rounds.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| B's p95 alone / behind FIFO / fair (s) | {cell('b_p95_alone_s')} / {cell('b_p95_fifo_s')} / "
            f"{cell('b_p95_fair_s')} |",
            f"| B's p95, fair over alone | {cell('fair_vs_alone', 2)} |",
            f"| B's p95, fair over FIFO | {cell('fair_vs_fifo', 2)} |",
            f"| pool throughput, fair over FIFO | {cell('throughput_fair_vs_fifo')} |",
            f"| tokens served, weight 2 over weight 1 ({result['window_s']:.0f} s windows) | {cell('weight_ratio')}; "
            f"{f['windows_within_5pct']}/{f['windows']} windows within 5% |",
            f"| interactive p95 beside batch, over alone | {cell('interactive_vs_alone', 2)} |",
            f"| batch req/s beside it; pool req/s | {cell('batch_rps', 1)}; {cell('pool_rps_with_batch', 1)} |",
            f"| admitted requests (served or timed out in line) that started before the {result['deadline_s']:g} s "
            f"deadline | {cell('in_time')} |",
            f"| refused early / timed out in line | {f['refused_early']} / {f['timed_out']} |",
            f"| Retry-After within 30% of the real wait | {cell('retry_after_within_30pct')} |",
            f"| prediction (unrounded) within 30% of the real wait | {cell('predicted_within_30pct')} |",
            f"| queue cost per request at 1,000 waiting, 10 / 1,000 tenants (µs), through the router | "
            f"{cell('micro_us_10_tenants', 1)} / {cell('micro_us_1000_tenants', 1)} |",
            f"| the same, the fair line's own work only (µs) | {cell('line_us_10_tenants', 1)} / "
            f"{cell('line_us_1000_tenants', 1)} |",
            f"| one key, a quiet student's median latency alone / beside a classmate's 16 at once, named / "
            f"unnamed (s) | {cell('quiet_median_alone_s')} / {cell('quiet_median_named_s')} / "
            f"{cell('quiet_median_unnamed_s')} |",
            f"| the same, named over alone; unnamed over alone | {cell('quiet_named_vs_alone', 2)}; "
            f"{cell('quiet_unnamed_vs_alone', 2)} |",
            f"| 1,000 students of one key waiting: the fair line's own work; through the router (µs) | "
            f"{cell('line_us_1000_students', 1)}; {cell('micro_us_1000_students', 1)} |",
            f"| the same key with no students named: the fair line's own work (µs) | {cell('line_us_one_key', 1)} |",
            f"| the second level's own work alone, 1,000 students of one key waiting (µs) | "
            f"{cell('second_level_us_1000_students', 2)} |",
        ]
    )
