"""Idle and slow sockets held against each door: do real requests slow down, does the
dashboard stay live, and are the held sockets closed within a minute?

    python -m bench.slow_clients [--sockets 3000] [--rounds 3] [--requests 200]

On loopback only. One `manage.py serve --no-supervisor` with one fake member
(testing.fake_member, concurrent, one token at once), its default bounds. Each round, for
each door in turn (the API's own port, then the main port): real requests' p50 without
held sockets, then with `--sockets` held against that door by a holder process (half of
them idle, half sending their request's head a byte a second, each reopened when the
server closes it, as an attacker keeps them up), with the dashboard's login page timed on
the main door meanwhile; then the holder stops reopening and the time until the server
has closed every one of them is taken. A figure is the median of its rounds, with the range.

The sockets count is held under VIBEADMIN_MAX_CONNECTIONS (4,000 by default): past it,
every newcomer, the real ones too, gets the 503, which is the cap's point and not what
this measures.
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


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the holder, in a process of its own ------------------------------------------------


async def _hold_one(
    port: int,
    slow: bool,
    holding: asyncio.Event,
    closed_after: list[float],
    stop_at: list,
    not_accepted: list,
):
    """One socket, reopened while `holding` is set; once it is cleared, how long the server
    took to close the last one (from the moment reopening stopped)."""
    while True:
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, TimeoutError):  # not accepted (yet): the listen backlog is full
            not_accepted[0] += 1
            await asyncio.sleep(0.5)
            if not holding.is_set():
                return
            continue
        head = b"POST /solve/api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
        try:
            at = 0
            while True:
                if slow and at < len(head):
                    writer.write(head[at : at + 1])
                    at += 1
                try:
                    if not await asyncio.wait_for(reader.read(4096), 1.0 if slow else 5.0):
                        break  # closed by the server
                except TimeoutError:
                    continue
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
        if not holding.is_set():
            closed_after.append(time.monotonic() - stop_at[0])
            return


async def _hold(port: int, count: int, control) -> None:
    holding = asyncio.Event()
    holding.set()
    closed_after: list[float] = []
    stop_at = [0.0]
    not_accepted = [0]  # connection attempts that timed out or failed
    tasks = []
    for i in range(count):
        tasks.append(
            asyncio.ensure_future(_hold_one(port, i % 2 == 1, holding, closed_after, stop_at, not_accepted))
        )
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # not all in one burst: the listen backlog is 2,048
    control.send("held")
    await asyncio.get_running_loop().run_in_executor(None, control.recv)  # "stop"
    stop_at[0] = time.monotonic()
    holding.clear()
    done, pending = await asyncio.wait(tasks, timeout=HOLD_UNTIL_CLOSED_S)
    for task in pending:
        task.cancel()
    control.send(
        {
            "closed_all_s": max(closed_after, default=0.0),
            "still_open": len(pending),
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
        assert ours.poll(120) and ours.recv() == "held"
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
        **closing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=3000)
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
