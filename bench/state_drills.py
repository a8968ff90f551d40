"""8. Drills for the shared state: the deployment beyond one machine (PostgreSQL, Redis, two
gateways, one `supervise`), under a steady load, through four faults one after another:

- redis: Redis restarted without persistence (every lease, line, limit and quota counter gone);
- postgres: PostgreSQL restarted (fast shutdown: every connection cut);
- gateway: one gateway SIGKILLed; from then on the load balancer sends only to the other;
- supervisor: `supervise` SIGKILLed and started again a second later.

For each: requests failed (an error reply or error event), requests lost without an answer
(no status, a reply or a stream cut short, no end), members over their capacity (a member's
most requests inside at once, from the fake member's own count), the quota overspend of a
key whose daily quota runs out around the fault (tokens used past it, against one
request's reservation per gateway), and seconds to recover (from the fault to the start of
the first request after which every request succeeded).

The members are testing.fake_member processes (small fake OpenAI servers, one generation
at a time, capacity 1 each, counting what they take in), registered as remote members of
the supervisor's node: the drill is about the shared state, not the model, and a fake's
count of requests inside it is exact. PostgreSQL and Redis are real servers
(testing/services.py) on free loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench.context import Bench
from bench.loadgen import Result, Shot, open_loop, poisson
from bench.server import CODE, MODEL_ENV, Vibeadmin, clean_env, fake_members, run_manage
from testing.helpers import wait_until
from testing.processes import end_process
from testing.services import _pg_bin, postgres_missing, redis_missing, start_postgres, start_redis

NAME = "state_drills"
FAULTS = ("redis", "postgres", "gateway", "supervisor")
MEMBERS = 3
TTFT_S, TPT_S, TOKENS = 0.05, 0.01, 16  # about 0.2 s a request on a member
LOAD = 0.4  # of the pool's capacity
QUOTA_RATE = 2.0  # requests per second on the key with a quota
HANG_S = 60.0
NODE = "n1"


def run(bench: Bench) -> dict:
    missing = redis_missing() or postgres_missing()
    if missing:
        bench.note(f"state_drills skipped: {missing}")
        return {"name": NAME, "skipped": missing, "drills": []}
    duration = bench.scale.seconds(24.0, least=12.0)
    fault_at = duration / 3
    # Every round runs the four drills once, so a figure is a median over rounds with its range.
    rounds = 1 if bench.scale.smoke else max(3, bench.scale.rounds)
    postgres, redis = start_postgres(), start_redis()
    folders = bench.folders
    env = {"DATABASE_URL": postgres.url, "REDIS_URL": redis.url, "VIBEADMIN_LOG_LEVEL": "WARNING"}
    run_manage(folders.new(), "migrate", "--noinput", "-v", "0", env=env)
    cluster = Cluster(folders, env)
    drills = []
    try:
        with fake_members(MEMBERS, ttft=TTFT_S, tpt=TPT_S, max_tokens=TOKENS) as members:
            cluster.start([m.url for m in members])
            capacity = MEMBERS / SERVICE_S
            rate = capacity * LOAD
            per_request = tokens_per_request(cluster)
            print(f"  pool capacity {capacity:.1f} req/s; load {rate:.1f} req/s", flush=True)
            for round_ in range(1, rounds + 1):
                for n, fault in enumerate(FAULTS):
                    for member in members:
                        member.reset()
                    row = drill(
                        cluster,
                        fault,
                        rate,
                        (duration, fault_at),
                        per_request,
                        seed=90 + 10 * round_ + n,
                        services=(redis, postgres),
                    )
                    row["round"] = round_
                    row["most_inside_a_member"] = max(m.stats()["max_concurrent"] for m in members)
                    row["members_over_capacity"] = sum(m.stats()["max_concurrent"] > 1 for m in members)
                    drills.append(row)
                    print(
                        f"  round {round_} {fault:10} failed {row['failed']}, lost {row['lost']} "
                        f"({row['lost_in_flight_on_the_dead']} in flight on a process that died), "
                        f"members over capacity {row['members_over_capacity']}, quota overspend "
                        f"{row['quota_overspend_tokens']} tokens, recovered in {row['recover_s']} s",
                        flush=True,
                    )
                    cluster.heal()
    finally:
        cluster.stop()
        redis.stop()
        postgres.stop()
    return {
        "name": NAME,
        "members": MEMBERS,
        "member_kind": "fake (testing.fake_member), capacity 1 each",
        "tokens": TOKENS,
        "rate": rate,
        "duration_s": duration,
        "fault_at_s": fault_at,
        "rounds": rounds,
        "drills": drills,
    }


class Cluster:
    """Two gateways (`serve --no-supervisor`) and one `supervise --node n1`, sharing
    PostgreSQL and Redis; the fake members are n1's remote members."""

    def __init__(self, folders, env: dict[str, str]) -> None:
        self.folders, self.env = folders, env
        self.gateways: list[Vibeadmin] = []
        self.supervisor: subprocess.Popen | None = None
        self.key = ""

    def start(self, urls: list[str]) -> None:
        admin = self.folders.new()
        for i, url in enumerate(urls):
            run_manage(
                admin, "pool", "add", "--url", url, "--name", f"f{i + 1}", "--node", NODE, env=self.env
            )
        run_manage(
            admin,
            "shell",
            "-c",
            "from pool.models import Member; Member.objects.update(max_inflight=1)",
            env=self.env,
        )
        self.key = run_manage(admin, "apikey", "create", "load", env=self.env).strip().splitlines()[-1]
        self.admin = admin
        self.start_supervisor()
        self.gateways = [self.start_gateway() for _ in range(2)]
        wait_until(lambda: self.ready() == MEMBERS, 60, interval=0.5, what="the members to be ready")

    def start_gateway(self) -> Vibeadmin:
        return Vibeadmin(self.folders.new(), supervisor=False, env=self.env).start()

    def start_supervisor(self) -> None:
        log = (self.folders.new() / "supervise.out").open("w")
        self.supervisor = subprocess.Popen(
            [sys.executable, "manage.py", "supervise", "--node", NODE],
            cwd=CODE,
            env=clean_env(self.admin, CODE, **MODEL_ENV, **self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> int:
        code = "from pool.models import Member; print(Member.objects.filter(state='ready').count())"
        said = run_manage(self.admin, "shell", "-c", code, env=self.env).strip().splitlines()
        return int(said[-1]) if said else 0  # the last line: Django's shell may say what it imported

    def quota_key(self, name: str, tokens: int) -> str:
        made = run_manage(self.admin, "apikey", "create", name, "--tokens-per-day", str(tokens), env=self.env)
        return made.strip().splitlines()[-1]

    def heal(self) -> None:
        """After a drill: both gateways up, the supervisor up, every member ready."""
        self.gateways = [
            g if g.proc and g.proc.poll() is None else self.start_gateway() for g in self.gateways
        ]
        if self.supervisor is None or self.supervisor.poll() is not None:
            self.start_supervisor()
        wait_until(lambda: self.ready() == MEMBERS, 90, interval=0.5, what="the members to be ready again")
        time.sleep(1.0)

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        if self.supervisor is not None:
            end_process(self.supervisor, grace=10)


def body(stream: bool) -> dict:
    return {
        "model": "vibethinker",
        "max_tokens": TOKENS,
        "stream": stream,
        "messages": [{"role": "user", "content": "Name a prime number."}],
    }


SERVICE_S = TTFT_S + TPT_S * (TOKENS - 1) + 0.02  # a request's time on a fake member, as it is told


def tokens_per_request(cluster: Cluster) -> int:
    """What one request of body() is charged (the fake counts the same for each)."""
    request = urllib.request.Request(
        cluster.gateways[0].api_url + "/v1/chat/completions",
        data=json.dumps(body(False)).encode(),
        headers={"Authorization": f"Bearer {cluster.key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        usage = json.loads(response.read())["usage"]
    return usage["prompt_tokens"] + usage["completion_tokens"]


def plan(
    cluster: Cluster,
    rate: float,
    times: tuple[float, float],
    quota_key: str,
    seed: int,
    *,
    lb_drop: int | None,
):
    """The load: Poisson arrivals alternated between the gateways (after the fault, only the
    live one where `lb_drop` names a dead one), half streamed; and the quota key's requests."""
    duration, fault_at = times
    rng = random.Random(seed)
    shots = []
    urls = [g.api_url + "/v1/chat/completions" for g in cluster.gateways]
    auth = {"Authorization": f"Bearer {cluster.key}"}
    for n, at in enumerate(poisson(rate, int(rate * duration * 2) + 5, rng)):
        if at > duration:
            break
        target = n % 2 if lb_drop is None or at < fault_at else 1 - lb_drop
        shots.append(Shot(urls[target], body(rng.random() < 0.5), auth, at=at, tag=f"load:{target}"))
    quota_auth = {"Authorization": f"Bearer {quota_key}"}
    for n, at in enumerate(poisson(QUOTA_RATE, int(QUOTA_RATE * duration * 2) + 5, rng)):
        if at > duration:
            break
        target = n % 2 if lb_drop is None or at < fault_at else 1 - lb_drop
        shots.append(Shot(urls[target], body(False), quota_auth, at=at, tag=f"quota:{target}"))
    return shots


def drill(
    cluster: Cluster,
    fault: str,
    rate: float,
    times: tuple[float, float],
    per_request: int,
    *,
    seed: int,
    services,
) -> dict:
    duration, fault_at = times
    # A quota the key's requests reach about halfway to the fault, so the fault lands while
    # the gateways refuse at the limit.
    quota = int(per_request * QUOTA_RATE * fault_at * 0.6)
    quota_key = cluster.quota_key(f"quota-{fault}-{seed}", quota)  # a new key each drill
    dead_gateway = 0 if fault == "gateway" else None
    shots = plan(cluster, rate, times, quota_key, seed, lb_drop=dead_gateway)
    t0 = time.monotonic() + 0.3
    action = threading.Timer(t0 + fault_at - time.monotonic(), FAULT_ACTIONS[fault], (cluster, *services))
    action.start()
    try:
        results = asyncio.run(open_loop(shots, timeout_s=HANG_S, t0=t0))
    finally:
        action.join()
    load = [r for r in results if r.tag.startswith("load")]
    # The quota key's refusals at its limit are the quota working; any other error is a failure.
    broken = [r for r in results if r.error and r.code != "quota_exceeded" and not is_lost(r)]
    quota_ok = [r for r in results if r.tag.startswith("quota") and r.ok]
    used = sum(per_request for r in quota_ok)  # the fake's usage is the same for each
    lost = [r for r in results if is_lost(r)]
    # Requests a gateway that died held when it died: the only ones it may lose.
    on_the_dead = [
        r
        for r in lost
        if dead_gateway is not None and r.tag.endswith(f":{dead_gateway}") and r.at <= fault_at
    ]
    return {
        "fault": fault,
        "requests": len(results),
        "failed": len(broken),
        "errors": sorted({r.error + (f" {r.code}" if r.code else "") for r in broken + lost}),
        "lost": len(lost),
        "lost_in_flight_on_the_dead": len(on_the_dead),
        "quota_tokens": quota,
        "quota_used_tokens": used,
        "quota_overspend_tokens": max(0, used - quota),
        "quota_reservation_tokens": per_request,
        "quota_refused": sum(1 for r in results if r.tag.startswith("quota") and r.code == "quota_exceeded"),
        "recover_s": recover_s(load, fault_at),
    }


def is_lost(r: Result) -> bool:
    """No answer at all: no status, or a 200 whose body was cut (a stream without its end,
    a reply's bytes short of its length) or never ended; an error event is an answer."""
    return r.status == 0 or (
        r.status == 200 and bool(r.error) and r.error != "stream ended with an error event"
    )


def recover_s(results: list[Result], fault_at: float) -> float | None:
    """From the fault to the send time of the first request after which all succeeded."""
    after = sorted((r for r in results if r.at >= fault_at - 1.0), key=lambda r: r.at)
    last_bad = max((i for i, r in enumerate(after) if r.error), default=None)
    if last_bad is None:
        return 0.0
    if last_bad + 1 >= len(after):
        return None  # never recovered within the drill
    return round(max(0.0, after[last_bad + 1].at - fault_at), 2)


# --- the faults ---------------------------------------------------------------------------


def restart_redis(cluster: Cluster, redis, postgres) -> None:
    args = redis.proc.args
    end_process(redis.proc, grace=5)
    redis.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis as client

    port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
    wait_until(lambda: _pings(client, port), 10, what="Redis to answer again")


def _pings(client, port: int) -> bool:
    try:
        return bool(client.Redis(port=port).ping())
    except client.ConnectionError:
        return False


def restart_postgres(cluster: Cluster, redis, postgres) -> None:
    bin_dir = _pg_bin()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = postgres.folder / "data"
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True
    )
    with contextlib.suppress(subprocess.TimeoutExpired):
        postgres.proc.wait(timeout=10)
    postgres.proc = subprocess.Popen(postgres.proc.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = postgres.url.rsplit(":", 1)[1].split("/")[0]
    wait_until(
        lambda: (
            subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", port], capture_output=True
            ).returncode
            == 0
        ),
        30,
        what="PostgreSQL to accept connections again",
    )


def kill_gateway(cluster: Cluster, redis, postgres) -> None:
    proc = cluster.gateways[0].proc
    assert proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def restart_supervisor(cluster: Cluster, redis, postgres) -> None:
    assert cluster.supervisor is not None
    cluster.supervisor.send_signal(signal.SIGKILL)
    cluster.supervisor.wait()
    time.sleep(1.0)
    cluster.start_supervisor()


FAULT_ACTIONS = {
    "redis": restart_redis,
    "postgres": restart_postgres,
    "gateway": kill_gateway,
    "supervisor": restart_supervisor,
}


# --- the report -----------------------------------------------------------------------------


def by_fault(result: dict) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in result.get("drills", []):
        rows.setdefault(row["fault"], []).append(row)
    return rows


def _goal(fault: str, what: str, unit: str, values: list[float], met: bool) -> dict:
    """A goal over the rounds: the median with its range; met only where every round met it."""
    return {
        "benchmark": NAME,
        "goal": f"{fault}: {what}",
        "unit": unit,
        "value": statistics.median(values),
        "range": [min(values), max(values)] if len(values) > 1 else None,
        "rounds": len(values),
        "met": met,
    }


def goals(result: dict) -> list[dict]:
    out = []
    for fault, rows in by_fault(result).items():
        beyond = [r["lost"] - r["lost_in_flight_on_the_dead"] for r in rows]
        over = [r["members_over_capacity"] for r in rows]
        spent = [r["quota_overspend_tokens"] for r in rows]
        out += [
            _goal(
                fault,
                "nothing lost that was not in flight on a process that died",
                "",
                beyond,
                max(beyond) == 0,
            ),
            _goal(fault, "members over capacity = 0", "", over, max(over) == 0),
            _goal(
                fault,
                "quota overspent by at most one request per gateway (2 gateways)",
                "tokens",
                spent,
                all(r["quota_overspend_tokens"] <= 2 * r["quota_reservation_tokens"] for r in rows),
            ),
        ]
    return out


def plot(result: dict, out: Path) -> list[str]:
    return []


def _cell(values: list) -> str:
    """The median of the rounds, and their range where they differ; a dash where none recovered."""
    if any(v is None for v in values):
        known = [v for v in values if v is not None]
        return f"– in {len(values) - len(known)} of {len(values)}" + (f"; {_cell(known)}" if known else "")
    median = statistics.median(values)
    low, high = min(values), max(values)
    return f"{median:g}" if low == high else f"{median:g} ({low:g}–{high:g})"


def markdown(result: dict) -> str:
    if result.get("skipped"):
        return f"Skipped: {result['skipped']}."
    rounds = result.get("rounds", 1)
    lines = [
        f"Load: {result['rate']:.1f} req/s Poisson ({LOAD:.0%} of the pool's capacity), alternated between two "
        f"gateways, half streamed, {result['tokens']}-token replies, plus {QUOTA_RATE:g} req/s on a key whose "
        f"daily quota runs out before the fault; {result['duration_s']:.0f} s a drill, the fault at "
        f"{result['fault_at_s']:.0f} s; {result['members']} members ({result['member_kind']}). "
        f"{rounds} round(s), each of the four drills one after another; each cell is the median over the rounds "
        "with their range (on a machine shared with other work).",
        "",
        "| fault | requests | failed | lost | of them in flight on a process that died | members over capacity "
        "| most inside one member | quota overspend, tokens | one request's reservation, tokens "
        "| seconds to recover | errors seen |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fault, rows in by_fault(result).items():
        cells = [
            _cell([r[key] for r in rows])
            for key in (
                "requests",
                "failed",
                "lost",
                "lost_in_flight_on_the_dead",
                "members_over_capacity",
                "most_inside_a_member",
                "quota_overspend_tokens",
                "quota_reservation_tokens",
                "recover_s",
            )
        ]
        errors = sorted({e for r in rows for e in r["errors"]})
        lines.append(f"| {fault} | {' | '.join(cells)} | {', '.join(errors) or 'none'} |")
    return "\n".join(lines)
