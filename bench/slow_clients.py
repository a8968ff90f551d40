"""Idle and slow sockets held against each door: do real requests slow down, does the
dashboard stay live, and are the held sockets closed within a minute?

    python -m bench.slow_clients [--sockets 5000] [--rounds 3] [--requests 200]

On loopback only. One `manage.py serve --no-supervisor` with one fake member
(testing.fake_member, concurrent, one token at once), its default bounds. Each round, for
each door in turn (the API's own port, then the main port): real requests' p50 without
held sockets, then with `--sockets` held against that door by a holder process (half of
them idle, half sending their request's head a byte a second, each reopened when the
server closes it, as an attacker keeps them up), with the dashboard's login page timed on
the main door meanwhile; then the holder stops reopening and the time until the server
has closed every one of them is taken. A figure is the median of its rounds, with the range.

The held sockets come from several loopback addresses (127.0.3.1, .2, ...: each its own
client network to the server), SOCKETS_PER_ADDRESS from each, under the door's cap per
network (VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK, 1,000), as an attacker with several hosts
would hold them; the real requests come from 127.0.0.1. Their count stays under the
door's own cap (VIBEADMIN_MAX_CONNECTIONS, 8,000): past it every newcomer, the real ones
too, gets the 503, which is that cap's point and not what this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import resource
import statistics
import time

from bench.server import DataFolders, Vibeadmin, fake_members, register_remote

HOLD_UNTIL_CLOSED_S = 90  # the holder waits at most this long for the server to close its sockets
SOCKETS_PER_ADDRESS = 900  # under the door's cap per client network


def holder_address(i: int) -> str:
    return f"127.0.3.{i // SOCKETS_PER_ADDRESS + 1}"


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the holder, in a process of its own ------------------------------------------------
# Cheap on purpose: the holder shares the 2 cores with the server it measures, so its own
# CPU would count as the server's slowdown. One protocol object per socket (no stream, no
# timer each), one ticker that sends every slow socket its next byte once a second.

SLOW_HEAD = b"POST /solve/api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000


class Held(asyncio.Protocol):
    """One held socket: sends nothing (idle) or its head a byte a tick (slow); `closed` is
    done when the server closes it."""

    def __init__(self, slow: bool) -> None:
        self.slow = slow
        self.sent = 0
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass  # a 503 or 408 before the close: the close is what counts

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def tick(self) -> None:
        if (
            self.slow
            and self.transport is not None
            and not self.transport.is_closing()
            and self.sent < len(SLOW_HEAD)
        ):
            self.transport.write(SLOW_HEAD[self.sent : self.sent + 1])
            self.sent += 1


async def _hold_one(
    port: int,
    source: str,
    slow: bool,
    holding: asyncio.Event,
    live: set,
    closed_after: list[float],
    stop_at: list,
    not_accepted: list,
):
    """One socket, reopened while `holding` is set; once it is cleared, how long the server
    took to close the last one (from the moment reopening stopped)."""
    loop = asyncio.get_running_loop()
    while True:
        held = Held(slow)
        try:
            async with asyncio.timeout(10):
                await loop.create_connection(
                    lambda held=held: held, "127.0.0.1", port, local_addr=(source, 0)
                )
        except (OSError, TimeoutError):  # not accepted (yet): the listen backlog is full
            not_accepted[0] += 1
            await asyncio.sleep(0.5)
            if not holding.is_set():
                return
            continue
        live.add(held)
        try:
            await held.closed
        finally:
            live.discard(held)
        if not holding.is_set():
            closed_after.append(time.monotonic() - stop_at[0])
            return


async def _tick(live: set) -> None:
    while True:
        await asyncio.sleep(1.0)
        for held in list(live):
            held.tick()


async def _hold(port: int, count: int, control) -> None:
    holding = asyncio.Event()
    holding.set()
    live: set = set()
    closed_after: list[float] = []
    stop_at = [0.0]
    not_accepted = [0]  # connection attempts that timed out or failed
    ticker = asyncio.ensure_future(_tick(live))
    tasks = []
    for i in range(count):
        tasks.append(
            asyncio.ensure_future(
                _hold_one(
                    port, holder_address(i), i % 2 == 1, holding, live, closed_after, stop_at, not_accepted
                )
            )
        )
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # not all in one burst: the listen backlog is 2,048
    deadline = time.monotonic() + 60
    while len(live) < count and time.monotonic() < deadline:  # all of them open before measuring
        await asyncio.sleep(0.2)
    control.send(("held", len(live)))
    await asyncio.get_running_loop().run_in_executor(None, control.recv)  # "stop"
    held_at_end = len(live)
    stop_at[0] = time.monotonic()
    holding.clear()
    done, pending = await asyncio.wait(tasks, timeout=HOLD_UNTIL_CLOSED_S)
    ticker.cancel()
    for task in pending:
        task.cancel()
    control.send(
        {
            "closed_all_s": max(closed_after, default=0.0),
            "still_open": len(pending),
            "open_when_stopped": held_at_end,
            "not_accepted": not_accepted[0],
        }
    )


def holder(port: int, count: int, control) -> None:
    raise_file_limit()
    asyncio.run(_hold(port, count, control))


# --- the measuring side -------------------------------------------------------------------


def timed_requests(port: int, key: str, n: int) -> list[float]:
    body = json.dumps(
        {"model": "vibethinker", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    )
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Host": "127.0.0.1"}
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/v1/chat/completions", body, headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200, response.status
        seconds.append(time.perf_counter() - started)
    return seconds


def dashboard_page_s(port: int) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/login/", headers={"Host": "127.0.0.1"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200, response.status
    return time.perf_counter() - started


def one_door(server: Vibeadmin, port: int, sockets: int, requests: int) -> dict:
    base = statistics.median(timed_requests(port, server.key, requests))
    base_page = statistics.median(dashboard_page_s(server.port) for _ in range(10))
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=holder, args=(port, sockets, theirs))
    process.start()
    try:
        assert ours.poll(120)
        said, open_at_start = ours.recv()
        assert said == "held"
        time.sleep(2)  # the slow ones have sent a byte or two
        held = statistics.median(timed_requests(port, server.key, requests))
        held_page = statistics.median(dashboard_page_s(server.port) for _ in range(10))
        ours.send("stop")
        assert ours.poll(HOLD_UNTIL_CLOSED_S + 30)
        closing = ours.recv()
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    return {
        "p50_ratio": held / base,
        "p50_ms": (base * 1000, held * 1000),
        "login_page_ratio": held_page / base_page,
        "open_at_start": open_at_start,
        **closing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    raise_file_limit()
    folders = DataFolders()
    try:
        with fake_members(1, concurrent=True, ttft=0.0, tpt=0.0, max_tokens=1) as members:
            server = Vibeadmin(folders.new(), supervisor=False)
            with server:
                register_remote(server, [m.url for m in members], max_inflight=256)
                server.create_key()
                timed_requests(server.api_port, server.key, 20)  # warm up: the key, the pool
                results: dict[str, list[dict]] = {"api": [], "main": []}
                for round_ in range(args.rounds):
                    for door, port in (("api", server.api_port), ("main", server.port)):
                        result = one_door(server, port, args.sockets, args.requests)
                        results[door].append(result)
                        print(f"round {round_ + 1} {door}: {json.dumps(result)}", flush=True)
        for door, rounds in results.items():
            for figure in ("p50_ratio", "login_page_ratio", "closed_all_s"):
                values = [r[figure] for r in rounds]
                print(
                    f"{door} door, {args.sockets} held sockets: {figure} median {statistics.median(values):.2f} "
                    f"(range {min(values):.2f}-{max(values):.2f}), still open after "
                    f"{HOLD_UNTIL_CLOSED_S}s: {max(r['still_open'] for r in rounds)}"
                )
    finally:
        folders.cleanup()


if __name__ == "__main__":
    main()
