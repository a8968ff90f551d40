"""An async load generator written for these benchmarks (aiohttp's client).

Open loop: each request is sent at its scheduled time whatever happened to the ones
before, and its latency is measured from that scheduled time, not from when it was
actually sent, so a stall anywhere (client, gateway, member) shows up in the latency
instead of silently thinning the load (no coordinated omission). Closed loop (N clients
each sending its next request when the last one ends) measures throughput at saturation.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import asdict, dataclass, field

import aiohttp
import numpy as np


@dataclass
class Shot:
    """One request to send: where, what, when (seconds after the start, open loop)."""

    url: str
    body: dict
    headers: dict = field(default_factory=dict)
    at: float = 0.0
    tag: str = ""


@dataclass
class Result:
    tag: str
    at: float  # scheduled send time, seconds after the start
    end: float  # seconds after the start
    latency_s: float  # end - at
    status: int = 0
    ttft_s: float | None = None
    queue_ms: float | None = None  # X-Vibeadmin-Queue-Ms
    overhead_ms: float | None = None  # X-Vibeadmin-Overhead-Ms
    member: str = ""  # X-Vibeadmin-Member
    tokens: int = 0
    error: str = ""  # "" when the request succeeded
    code: str = ""  # the error's code, when the gateway refused the request
    message: str = ""
    retry_after: float | None = None  # Retry-After, seconds

    @property
    def ok(self) -> bool:
        return not self.error


def poisson(rate: float, count: int, rng: random.Random) -> list[float]:
    """`count` arrival times of a Poisson process of `rate` per second."""
    t, times = 0.0, []
    for _ in range(count):
        t += rng.expovariate(rate)
        times.append(t)
    return times


def session(timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s))


async def send(client: aiohttp.ClientSession, shot: Shot, due: float, t0: float) -> Result:
    loop = asyncio.get_running_loop()
    result = Result(tag=shot.tag, at=due - t0, end=0.0, latency_s=0.0)
    stream = bool(shot.body.get("stream"))
    try:
        async with client.post(shot.url, json=shot.body, headers=shot.headers) as response:
            result.status = response.status
            result.queue_ms = _float(response.headers.get("x-vibeadmin-queue-ms"))
            result.overhead_ms = _float(response.headers.get("x-vibeadmin-overhead-ms"))
            result.member = response.headers.get("x-vibeadmin-member", "")
            if response.status != 200:
                result.error = f"HTTP {response.status}"
                result.retry_after = _float(response.headers.get("retry-after"))
                _refusal(result, await response.read())
            elif stream:
                await _read_stream(response, result, due, loop)
            else:
                body = await response.json(content_type=None)
                result.tokens = (body.get("usage") or {}).get("completion_tokens", 0)
    except TimeoutError:
        result.error = "timeout (hung)"
    except aiohttp.ClientError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.end = loop.time() - t0
    result.latency_s = loop.time() - due
    return result


async def _read_stream(response, result: Result, due: float, loop) -> None:
    done = False
    async for line in response.content:
        if not line.startswith(b"data: "):
            continue
        if result.ttft_s is None:
            result.ttft_s = loop.time() - due
        data = line[6:].strip()
        if data == b"[DONE]":
            done = True
        elif b'"error"' in data and "error" in json.loads(data):
            result.error = "stream ended with an error event"
            return
        else:
            result.tokens += 1
    if not done:
        result.error = "stream ended without [DONE]"


def _refusal(result: Result, content: bytes) -> None:
    """The code and message of an error in OpenAI's shape, if it is one."""
    try:
        error = json.loads(content)["error"]
        result.code, result.message = str(error.get("code") or ""), str(error.get("message") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass


def _float(value: str | None) -> float | None:
    return float(value) if value else None


async def open_loop(shots: list[Shot], timeout_s: float = 120.0, t0: float | None = None) -> list[Result]:
    """Send each shot at its time `at` after `t0` (a time.monotonic() reading; default:
    now); all results, in schedule order."""
    loop = asyncio.get_running_loop()  # its clock is time.monotonic()
    async with session(timeout_s) as client:
        t0 = loop.time() + 0.05 if t0 is None else t0
        tasks = []
        for shot in sorted(shots, key=lambda s: s.at):
            delay = t0 + shot.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(send(client, shot, t0 + shot.at, t0)))
        return list(await asyncio.gather(*tasks))


async def closed_loop(
    make_shot, concurrency: int, duration_s: float, warmup_s: float, timeout_s: float = 120.0
) -> tuple[list[Result], float]:
    """`concurrency` clients back to back for `duration_s`; returns the requests that
    ended in the window after the warm-up (so completions / window is the throughput),
    and the window's length."""
    loop = asyncio.get_running_loop()
    results: list[Result] = []
    async with session(timeout_s) as client:
        t0 = loop.time()
        end = t0 + duration_s

        async def worker(n: int) -> None:
            i = 0
            while loop.time() < end:
                result = await send(client, make_shot(n, i), loop.time(), t0)
                i += 1
                if warmup_s <= result.end <= duration_s:
                    results.append(result)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return results, duration_s - warmup_s


def percentiles(values, ps=(50, 95, 99)) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {f"p{p}": None for p in ps}
    return {f"p{p}": float(np.percentile(values, p)) for p in ps}


def summarize(results: list[Result]) -> dict:
    """Counts and latency percentiles (seconds) of one run."""
    ok = [r for r in results if r.ok]
    errors: dict[str, int] = {}
    for r in results:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {
        "requests": len(results),
        "ok": len(ok),
        "errors": errors,
        "latency_s": percentiles([r.latency_s for r in ok]),
        "ttft_s": percentiles([r.ttft_s for r in ok]),
        "queue_ms": percentiles([r.queue_ms for r in ok]),
        "overhead_ms": percentiles([r.overhead_ms for r in ok]),
        "tokens": sum(r.tokens for r in ok),
    }


def as_dicts(results: list[Result]) -> list[dict]:
    return [asdict(r) for r in results]
