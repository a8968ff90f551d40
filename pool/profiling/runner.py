"""Measuring one layout for real: start its llama-server processes with the supervisor's
own command line (pool/supervisor/process.py), send N streamed answers at once for each
point, count the tokens that arrive and the time to each answer's first token, and stop
every process again, whatever happens (Ctrl-C, Stop, a crash, the budget running out).

The processes are not pool members: they have no rows, the gateway never sees them, and
each gets a random key of its own so that nothing else can use its port meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from pool import member_logs
from pool.model_file import ModelChoice
from pool.models import Member, states
from pool.profiling.plan import PRUNE_AT, START_S, Layout, Plan, Point, should_prune, stalled
from pool.supervisor import process

READY_TIMEOUT_S = 180.0
MAX_DROPPED = 3  # connections dropped in a row by one client before the layout fails
STOP_GRACE_S = 5.0
N_CTX = 512  # per slot: the prompt below and an answer of up to a few hundred tokens
# A short solve-page request: the time to the first token includes its prompt, as a student's does.
MESSAGES = [
    {
        "role": "system",
        "content": "You are a math tutor. Reason step by step and put the final answer in \\boxed{}.",
    },
    {
        "role": "user",
        "content": "A train leaves at 9:40 and arrives at 13:15. How long is the trip in minutes?",
    },
]


class ProfileStopped(Exception):
    """The operator stopped the profile, or its budget ran out; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LayoutFailed(Exception):
    """A layout's processes did not start or did not answer; the message says why."""


@dataclass
class Server:
    member: Member
    pid: int
    url: str


def connect_host() -> str:
    """Where to reach a server bound to VIBEADMIN_MEMBER_BIND from this host."""
    bind = settings.VIBEADMIN_MEMBER_BIND
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind


def start_servers(layout: Layout, model: ModelChoice) -> list[Server]:
    servers: list[Server] = []
    try:
        for i in range(layout.members):
            member = Member(
                name=f"profile-{i + 1}",
                kind=states.LOCAL,
                engine=states.LLAMA_SERVER,
                slots=layout.slots,
                n_threads=layout.threads,
                n_ctx=N_CTX,
                n_gpu_layers=layout.gpu_layers,
                api_key=secrets.token_urlsafe(24),
            )
            port = process.free_port(settings.VIBEADMIN_MEMBER_BIND)
            pid = process.spawn(member, process.member_command(member, model, port))
            servers.append(Server(member, pid, f"http://{connect_host()}:{port}"))
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers: list[Server]) -> None:
    for server in servers:
        process.stop(server.pid, STOP_GRACE_S)


def wait_ready(servers: list[Server], stop: threading.Event) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = list(servers)
    while waiting:
        if stop.is_set():
            raise ProfileStopped("stopped")
        for server in list(waiting):
            if not process.is_alive(server.pid):
                why = process.last_error_line(member_logs.read_tail(server.member)) or "it exited"
                raise LayoutFailed(f"llama-server did not start: {why}")
            if health_ok(server):
                waiting.remove(server)
        if time.monotonic() > deadline:
            raise LayoutFailed(f"llama-server was not ready within {READY_TIMEOUT_S:g} s")
        time.sleep(0.25)


def health_ok(server: Server) -> bool:
    try:
        with urllib.request.urlopen(server.url + "/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


async def measure(
    servers: list[Server],
    model_id: str,
    level: int,
    plan: Plan,
    answer_tokens: int,
    stop: threading.Event,
    deadline: float,
) -> tuple[float, float | None, bool]:
    """`level` clients keep an answer each in flight (closed loop), each to the server with
    the fewest in flight, as the gateway's least connections does. They start at once (a
    burst of `level` new answers); the window in which tokens are counted opens when every
    answer of the burst has its first token (its prompt processed: a steady pace is what
    tokens/s means), at the earliest after the warm-up and at the latest half a point after
    it, and lasts a point. TTFT is the p50 over the answers started before the
    window's middle, the burst among them; an answer with no first token yet when the point
    ends counts as its wait so far (censored)."""
    import aiohttp

    started = time.monotonic()
    latest_open = started + plan.warm_s + plan.point_s / 2
    window = [latest_open, latest_open + plan.point_s]
    inflight = [0] * len(servers)
    tokens = 0
    burst_started = 0  # answers of the burst that have their first token
    ttfts: list[tuple[float, bool]] = []  # (seconds, censored)

    async def one_answer(client: aiohttp.ClientSession, at: int, burst: bool) -> None:
        nonlocal tokens, burst_started
        server = servers[at]
        body = {
            "model": model_id,
            "messages": MESSAGES,
            "max_tokens": answer_tokens,
            "temperature": 0.7,
            "stream": True,
            "ignore_eos": True,  # every answer as long as asked: the pace, not the model's brevity
        }
        sent = time.monotonic()
        first: float | None = None
        headers = {"Authorization": f"Bearer {server.member.api_key}"}
        try:
            async with client.post(
                server.url + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                if response.status != 200:
                    raise LayoutFailed(
                        f"llama-server answered {response.status}: {(await response.text())[:200]}"
                    )
                async for line in response.content:
                    if not line.startswith(b"data: ") or line[6:].strip() == b"[DONE]":
                        continue
                    event = json.loads(line[6:])
                    choices = event.get("choices") or [{}]
                    if not (choices[0].get("delta") or {}).get("content"):
                        continue
                    now = time.monotonic()
                    if first is None:
                        first = now - sent
                        burst_started += burst
                        if burst and burst_started == level and now < window[0]:
                            opens = max(started + plan.warm_s, now)
                            window[:] = [opens, opens + plan.point_s]
                    if window[0] <= now <= window[1]:
                        tokens += 1
        finally:
            if sent <= window[0] + plan.point_s / 2:
                ttfts.append((first, False) if first is not None else (time.monotonic() - sent, True))

    async def keep_one_in_flight(client: aiohttp.ClientSession) -> None:
        dropped, burst = 0, True
        while time.monotonic() < window[1]:
            at = min(range(len(servers)), key=inflight.__getitem__)
            inflight[at] += 1
            try:
                await one_answer(client, at, burst)
                dropped, burst = 0, False
            except aiohttp.ClientConnectionError as exc:
                # Seen here: "Server disconnected" on a busy llama-server now and then.
                # Ask again; a server that died, or drops every try, fails the layout.
                dropped += 1
                if not process.is_alive(servers[at].pid) or dropped >= MAX_DROPPED:
                    why = process.last_error_line(member_logs.read_tail(servers[at].member)) or str(exc)
                    raise LayoutFailed(f"llama-server dropped the connection: {why}") from None
            finally:
                inflight[at] -= 1

    # A connection per answer: no kept-alive connection that the server may have closed.
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        clients = [asyncio.create_task(keep_one_in_flight(client)) for _ in range(level)]
        try:
            while time.monotonic() < window[1]:
                if stop.is_set():
                    raise ProfileStopped("stopped")
                if time.monotonic() > deadline:
                    raise ProfileStopped("budget")
                done = [task for task in clients if task.done()]
                for task in done:
                    task.result()  # a failure ends the point at once
                await asyncio.sleep(min(0.25, max(0.0, window[1] - time.monotonic())))
        finally:
            for task in clients:
                task.cancel()  # closes the streams: llama-server ends those generations
            await asyncio.gather(*clients, return_exceptions=True)
    ttft = statistics.median_low(sorted(ttfts)) if ttfts else None
    return tokens / plan.point_s, ttft[0] if ttft else None, bool(ttft and ttft[1])


def warm_up(servers: list[Server], model_id: str, stop: threading.Event) -> None:
    """One short answer on each server: a first generation is slower than the rest."""

    async def each() -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=300)
        ) as client:
            for server in servers:
                body = {"model": model_id, "messages": MESSAGES, "max_tokens": 4}
                headers = {"Authorization": f"Bearer {server.member.api_key}"}
                async with client.post(server.url + "/v1/chat/completions", json=body, headers=headers) as r:
                    await r.read()

    if stop.is_set():
        raise ProfileStopped("stopped")
    asyncio.run(each())


def profile_layout(
    layout: Layout,
    plan: Plan,
    model: ModelChoice,
    *,
    answer_tokens: int,
    best_at_prune: float | None,
    stop: threading.Event,
    deadline: float,
    on_point: Callable[[Point], None],
) -> str:
    """Measure `layout` at each of the plan's levels; returns 'done' or 'pruned'. Raises
    ProfileStopped (stop or deadline) or LayoutFailed; its processes are gone either way."""
    if time.monotonic() + START_S + plan.warm_s + plan.point_s > deadline:
        raise ProfileStopped("budget")  # not even one point would fit: start nothing
    servers = start_servers(layout, model)
    try:
        wait_ready(servers, stop)
        warm_up(servers, model.model_id, stop)
        for level in plan.levels:
            if time.monotonic() + plan.warm_s + plan.point_s > deadline:
                raise ProfileStopped("budget")
            tokens_per_s, ttft, censored = asyncio.run(
                measure(servers, model.model_id, level, plan, answer_tokens, stop, deadline)
            )
            on_point(Point(layout.key, level, tokens_per_s, ttft, censored))
            if level == plan.levels[-1]:
                break
            if stalled(tokens_per_s) or (level == PRUNE_AT and should_prune(tokens_per_s, best_at_prune)):
                return "pruned"
        return "done"
    finally:
        stop_servers(servers)
