"""The honest wait, checked: the predicted wait a waiting request is shown (`vibeadmin.progress`,
the fair line's own prediction) against the wait it really had, in a loaded pool.

`manage.py serve` without a supervisor in front of fake members (testing.fake_member: one
answer at a time each, its length set by max_tokens); first enough requests for the line
to know the pool's pace, then more clients than slots, each sending its next request when
its last one ends, so that requests wait. For every prediction shown, the real remaining
wait is the time from when it was shown until the answer started.

    python -m bench.honest_wait            # writes bench/results/honest_wait.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from bench.server import DataFolders, Vibeadmin, fake_members, register_remote, served_code

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "honest_wait.json"


async def one(session: aiohttp.ClientSession, url: str, key: str, tokens: int) -> list[tuple[float, float]]:
    """One streamed request that asks for progress: (seen at, predicted seconds) for each
    prediction, then (started at, -1)."""
    body = {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": tokens,
        "stream": True,
        "vibeadmin": {"progress": True},
    }
    seen: list[tuple[float, float]] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as response:
        event = ""
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "vibeadmin":
                note = json.loads(line[5:])
                now = time.monotonic()
                if "queue" in note and note["queue"]["predicted_s"] is not None:
                    seen.append((now, float(note["queue"]["predicted_s"])))
                elif "started" in note:
                    seen.append((now, -1.0))
                event = ""
            elif line.startswith("data:"):
                event = ""
    return seen


async def load(
    url: str, key: str, clients: int, duration: float, tokens: int
) -> list[list[tuple[float, float]]]:
    done: list[list[tuple[float, float]]] = []
    stop = time.monotonic() + duration

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            done.append(await one(session, url, key, tokens))

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return done


def checks(requests: list[list[tuple[float, float]]]) -> list[dict]:
    out = []
    for seen in requests:
        if not seen or seen[-1][1] != -1.0:
            continue
        started = seen[-1][0]
        for n, (at, predicted) in enumerate(seen[:-1]):
            real = started - at
            if real > 0.05:  # a wait too short to read
                out.append({"predicted_s": predicted, "real_s": round(real, 3), "first": n == 0})
    return out


def within(rows: list[dict], share: float = 0.3) -> float | None:
    # Shown predictions are rounded to 0.1 s: a wait under a second is judged to that precision.
    good = [abs(r["predicted_s"] - r["real_s"]) <= max(share * r["real_s"], 0.1) for r in rows]
    return round(sum(good) / len(good), 3) if good else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.honest_wait", description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--tokens", type=int, default=20, help="max_tokens: each answer's length")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    folders = DataFolders()
    try:
        with (
            fake_members(args.members, ttft=0.02, tpt=0.01, max_tokens=1000) as fakes,
            Vibeadmin(folders.new(), supervisor=False, env={"VIBEADMIN_LOG_LEVEL": "WARNING"}) as server,
        ):
            register_remote(server, [f.url for f in fakes])
            server.create_key()
            time.sleep(1.5)  # the gateway's next refresh sees the members
            asyncio.run(load(server.url, server.key, args.members, 4, args.tokens))  # the pace, learnt
            requests = asyncio.run(load(server.url, server.key, args.clients, args.seconds, args.tokens))
    finally:
        folders.cleanup()
    rows = checks(requests)
    first = [r for r in rows if r["first"]]
    result = {
        "name": "honest_wait",
        "what": "predicted waits shown to waiting requests against their real remaining waits",
        "members": args.members,
        "clients": args.clients,
        "tokens": args.tokens,
        "requests": len(requests),
        "predictions": len(rows),
        "within_30pct": within(rows),
        "first_within_30pct": within(first),
        "median_real_s": statistics.median(r["real_s"] for r in rows) if rows else None,
        "code": served_code(),
        "rows": rows[:400],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"{len(rows)} predictions from {len(requests)} requests: {result['within_30pct']} within 30% "
        f"(first shown: {result['first_within_30pct']}) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
