"""CPU time per proxied request, from the serving processes' own counters.

On 2 cores shared with other work a proxy's throughput moves 20% between rounds, with
whatever else runs; the CPU a process spends on one request hardly does. utime + stime
(psutil's cpu_times: /proc/PID/stat, every thread of the process) are read before and
after wrk sends a fixed number of requests, each time once the process has gone quiet,
and the difference is divided by that number. The requests wrk cuts off when it stops
(at most connections - 1, in flight) are paid for but not counted: at most
connections / requests too high, the same for every proxy. The counters move in 10 ms
ticks: a leg should spend at least a few tenths of a second (nginx's worker at ~35 µs a
request: 12,000 requests, a quick run's count, read to about ±3%).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

from bench import wrk

TICK_S = 0.01  # the counters' resolution (USER_HZ = 100)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU so far of these processes, all their threads together."""
    return sum(t.user + t.system for t in (p.cpu_times() for p in processes))


def quiet_cpu_seconds(
    processes: list[psutil.Process], *, every_s: float = 0.1, limit_s: float = 3.0
) -> float:
    """The counters once they stop moving: what was in flight has been finished."""
    last = cpu_seconds(processes)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(every_s)
        now = cpu_seconds(processes)
        if now - last < TICK_S:
            return now
        last = now
    return last


def idle_share(processes: list[psutil.Process], *, seconds: float) -> float:
    """CPU seconds per second that the processes spend with no requests: their own
    background work, which every per-request figure includes."""
    before = quiet_cpu_seconds(processes)
    started = time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(processes) - before) / (time.monotonic() - started)


def per_request(
    url: str,
    body: dict,
    processes: Callable[[], list[psutil.Process]],
    *,
    connections: int,
    requests: int,
    key: str = "",
) -> dict:
    """One fixed-count wrk run: the CPU that `processes` spent, per response."""
    serving = processes()
    before = quiet_cpu_seconds(serving)
    started = time.monotonic()
    result = wrk.count(url, body, connections=connections, requests=requests, key=key)
    wall_s = time.monotonic() - started
    spent = quiet_cpu_seconds(serving) - before
    return {
        **result,
        "processes": len(serving),
        "cpu_s": spent,
        "cpu_us_per_request": spent * 1e6 / result["requests"],
        "wall_s": wall_s,
    }
