"""5 and 6. Failure drills on real llama.cpp members under `manage.py serve` (the
supervisor running), under steady open-loop load of short replies, half of them streamed:

- kill: SIGKILL one member's process (its pid from `pool status --json`): count what
  failed, what hung, how long until the member was out of rotation, and until it was back
  and serving again;
- drain: `pool drain NAME`: nothing may fail, and the member must stop once its last
  request has ended.

The members' states are read from the database every 50 ms, as a second process would.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import threading
import time
from pathlib import Path

from bench.context import Bench
from bench.figures import save
from bench.loadgen import Shot, closed_loop, open_loop, poisson
from bench.server import Vibeadmin

NAME = "drills"
TOKENS = 16
LONG_TOKENS = 64
HANG_TIMEOUT_S = 60.0


class StateLog:
    """Polls the members' states in a thread; `changes[name]` = [(t, state, pid)], t
    relative to `t0` (time.monotonic())."""

    def __init__(self, server: Vibeadmin, t0: float) -> None:
        self.server, self.t0 = server, t0
        self.changes: dict[str, list[tuple[float, str, int | None]]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        while not self.stop.is_set():
            try:
                members = self.server.members()
            except Exception:  # the database may be locked for a moment
                members = {}
            now = time.monotonic() - self.t0
            for name, m in members.items():
                seen = self.changes.setdefault(name, [])
                if not seen or seen[-1][1:] != (m["state"], m["pid"]):
                    seen.append((now, m["state"], m["pid"]))
            self.stop.wait(0.05)

    def first(self, name: str, after: float, want) -> float | None:
        return next((t for t, state, _ in self.changes.get(name, []) if t >= after and want(state)), None)

    def __enter__(self) -> StateLog:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def shots(server: Vibeadmin, key: str, rate: float, duration: float, seed: int) -> list[Shot]:
    rng = random.Random(seed)
    out = []
    for at in poisson(rate, int(rate * duration * 2) + 5, rng):
        if at > duration:
            break
        out.append(chat_shot(server, key, TOKENS, rng.random() < 0.5, at=at))
    return out


def chat_shot(server: Vibeadmin, key: str, tokens: int, stream: bool, *, at: float) -> Shot:
    """One chat completion sent `at` seconds in, tagged by whether it streams."""
    headers = {"Authorization": f"Bearer {key}"}
    tag = "stream" if stream else "plain"
    return Shot(server.api_url + "/v1/chat/completions", body(tokens, stream), headers, at=at, tag=tag)


def body(tokens: int, stream: bool) -> dict:
    return {
        "model": "vibethinker",
        "max_tokens": tokens,
        "stream": stream,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Name a prime number and say why it is prime."}],
    }


def service_time(server: Vibeadmin, key: str) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    results, _ = asyncio.run(
        closed_loop(
            lambda n, i: Shot(server.api_url + "/v1/chat/completions", body(TOKENS, False), headers),
            1,
            3.0,
            0.0,
        )
    )
    return statistics.median(r.latency_s for r in results if r.ok)


def long_replies(server: Vibeadmin, key: str, *, at: float) -> list[Shot]:
    """Two long replies sent at `at`, one streamed and one not."""
    return [chat_shot(server, key, LONG_TOKENS, stream, at=at) for stream in (True, False)]


def kill_drill(server: Vibeadmin, key: str, rate: float, duration: float, kill_at: float) -> dict:
    victim = "m1"
    pid = next(m["pid"] for m in server.status() if m["name"] == victim)
    # Two long replies just before the kill, so that the victim is surely busy.
    load = shots(server, key, rate, duration, seed=5) + long_replies(server, key, at=kill_at - 0.6)
    t0 = time.monotonic() + 0.2
    timer = threading.Timer(t0 + kill_at - time.monotonic(), os.kill, (pid, signal.SIGKILL))
    with StateLog(server, t0) as states:
        timer.start()
        try:
            results = asyncio.run(open_loop(load, timeout_s=HANG_TIMEOUT_S, t0=t0))
        finally:
            timer.cancel()
        server.wait_ready([victim], timeout=120)
        time.sleep(0.3)
    ejected = states.first(victim, kill_at, lambda s: s != "ready")
    back = states.first(victim, ejected or kill_at, lambda s: s == "ready")
    # When a reply from the restarted member ended: a request sent before it was back may have
    # waited in the gateway's queue for it, so its send time would say "serving" too early.
    served_again = min(
        (r.end for r in results if r.ok and r.member == victim and r.end > kill_at), default=None
    )
    in_flight = [r for r in results if r.at <= kill_at < r.end]
    return {
        "victim": victim,
        "pid": pid,
        "kill_at_s": kill_at,
        "requests": len(results),
        "in_flight_at_kill": {
            "stream": sum(r.tag == "stream" for r in in_flight),
            "plain": sum(r.tag == "plain" for r in in_flight),
        },
        "plain_failed": sum(1 for r in results if r.tag == "plain" and not r.ok),
        "stream_error_events": sum(1 for r in results if r.tag == "stream" and "error event" in r.error),
        "stream_error_events_on_victim": sum(
            1 for r in results if r.tag == "stream" and "error event" in r.error and r.member == victim
        ),
        "hung": sum(1 for r in results if "hung" in r.error),
        "other_errors": sorted({r.error for r in results if r.error and "error event" not in r.error}),
        "seconds_to_eject": None if ejected is None else ejected - kill_at,
        "seconds_until_ready": None if back is None else back - kill_at,
        "seconds_until_serving": None if served_again is None else served_again - kill_at,
        "states": states.changes.get(victim, []),
    }


def drain_drill(server: Vibeadmin, key: str, rate: float, duration: float, drain_at: float) -> dict:
    name = "m2"
    # Two long replies just before the drain, so that the member still has one in flight.
    load = shots(server, key, rate, duration, seed=6) + long_replies(server, key, at=drain_at - 0.6)
    t0 = time.monotonic() + 0.2
    asked: dict = {}

    def drain() -> None:
        asked["start"] = time.monotonic() - t0  # the command itself takes a second (Django's start)
        server.manage("pool", "drain", name)
        asked["done"] = time.monotonic() - t0

    timer = threading.Timer(t0 + drain_at - time.monotonic(), drain)
    with StateLog(server, t0) as states:
        timer.start()
        try:
            results = asyncio.run(open_loop(load, timeout_s=HANG_TIMEOUT_S, t0=t0))
            timer.join()  # the drain is asked even if the load ended first
        finally:
            timer.cancel()
        deadline = time.monotonic() + 60
        while server.members()[name]["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
    draining = states.first(name, drain_at, lambda s: s == "draining")
    stopped = states.first(name, drain_at, lambda s: s == "stopped")
    on_member = [r for r in results if r.member == name]
    last_end = max((r.end for r in on_member), default=None)
    idle_from = max(t for t in (draining, last_end) if t is not None) if draining is not None else None
    return {
        "member": name,
        "drain_command_started_s": asked.get("start"),
        "drain_asked_s": asked.get("done"),
        "requests": len(results),
        "requests_on_member": len(on_member),
        "failed": sum(1 for r in results if not r.ok),
        "errors": sorted({r.error for r in results if r.error}),
        "draining_at_s": draining,
        "stopped_at_s": stopped,
        "last_request_on_member_ended_s": last_end,
        "in_flight_on_member_when_draining": sum(
            1 for r in on_member if draining is not None and r.at <= draining < r.end
        ),
        "sent_to_member_after_draining": sum(
            1 for r in on_member if draining is not None and r.at > draining + 0.6
        ),
        "stopped_after_last_request_s": None if stopped is None or last_end is None else stopped - last_end,
        # from the later of "draining" and its last request's end: how long it stayed up idle
        "stopped_after_idle_s": None if stopped is None or idle_from is None else stopped - idle_from,
        "states": states.changes.get(name, []),
    }


def run(bench: Bench) -> dict:
    scale = bench.scale
    duration = scale.seconds(30.0, least=8.0)
    server = Vibeadmin(
        bench.folders.new(),
        supervisor=True,
        env={"VIBEADMIN_MEMBERS": "2", "VIBEADMIN_N_CTX": "512", "VIBEADMIN_N_THREADS": "1"},
    )
    with server:
        server.wait_ready(["m1", "m2"])
        key = server.create_key()
        service = service_time(server, key)
        rate = 0.5 * 2 / service  # half the pool's capacity: it must cope with one member gone
        print(f"  a {TOKENS}-token reply takes {service:.2f} s; load {rate:.2f} req/s", flush=True)
        kill = kill_drill(server, key, rate, duration, kill_at=duration / 3)
        print(
            f"  kill: plain failed {kill['plain_failed']}, streams cut with an error event "
            f"{kill['stream_error_events']}, hung {kill['hung']}, ejected after {kill['seconds_to_eject']} s, "
            f"ready after {kill['seconds_until_ready']} s, serving after {kill['seconds_until_serving']} s",
            flush=True,
        )
        drain = drain_drill(server, key, rate * 0.8, duration * 0.6, drain_at=duration * 0.2)
        print(
            f"  drain: failed {drain['failed']}, stopped {drain['stopped_after_last_request_s']} s after "
            f"its last request ended",
            flush=True,
        )
    return {
        "name": NAME,
        "members": 2,
        "member_kind": "real llama.cpp, default model, 1 thread",
        "tokens": TOKENS,
        "service_s": service,
        "rate": rate,
        "duration_s": duration,
        "kill": kill,
        "drain": drain,
    }


def goals(result: dict) -> list[dict]:
    kill, drain = result["kill"], result["drain"]
    return [
        {
            "benchmark": NAME,
            "goal": "kill: non-streamed requests failed = 0",
            "unit": "",
            "value": kill["plain_failed"],
            "met": kill["plain_failed"] == 0,
        },
        {
            "benchmark": NAME,
            "goal": "kill: requests hung = 0",
            "unit": "",
            "value": kill["hung"],
            "met": kill["hung"] == 0,
        },
        {
            "benchmark": NAME,
            "goal": "drain: requests failed = 0",
            "unit": "",
            "value": drain["failed"],
            "met": drain["failed"] == 0,
        },
        {
            "benchmark": NAME,
            "goal": "drain: stopped within 1 s of being draining and idle",
            "unit": "s",
            "value": drain["stopped_after_idle_s"],
            "met": drain["stopped_after_idle_s"] is not None and 0 <= drain["stopped_after_idle_s"] <= 1.0,
        },
    ]


def plot(result: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 5.5), sharex=False)
    for ax, (what, drill, event) in zip(
        axes,
        (("kill", result["kill"], "kill_at_s"), ("drain", result["drain"], "drain_asked_s")),
        strict=True,
    ):
        states = drill["states"]
        names = ["ready", "draining", "unhealthy", "starting", "stopped", "failed"]
        ts = [t for t, _, _ in states] + [result["duration_s"]]
        for (t, state, _), t_next in zip(states, ts[1:], strict=False):
            ax.barh(
                0, t_next - t, left=t, color=f"C{names.index(state) if state in names else 6}", label=state
            )
        if drill.get(event) is not None:
            ax.axvline(
                drill[event],
                color="black",
                ls="--",
                label=f"{what} done" if what == "kill" else "drain asked",
            )
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper right", ncol=4)
        ax.set_yticks([])
        ax.set_xlabel("seconds")
        ax.set_title(f"{what} drill: {drill.get('victim') or drill.get('member')}'s state")
    return [save(fig, out, "drills.png")]


def markdown(result: dict) -> str:
    k, d = result["kill"], result["drain"]

    def s(v):
        return "–" if v is None else f"{v:.2f} s"

    return "\n".join(
        [
            f"Load: {result['rate']:.2f} req/s Poisson (half the pool's capacity), {result['tokens']}-token replies, "
            f"half streamed, {result['duration_s']:.0f} s; 2 real members.",
            "",
            "| kill drill | |",
            "|---|---|",
            f"| requests sent | {k['requests']} |",
            f"| in flight at the kill (pool-wide) | {k['in_flight_at_kill']['stream']} streamed, {k['in_flight_at_kill']['plain']} not |",
            f"| non-streamed requests failed | {k['plain_failed']} |",
            f"| streams ended with an error event | {k['stream_error_events']} ({k['stream_error_events_on_victim']} on the victim) |",
            f"| requests hung (no end within {HANG_TIMEOUT_S:.0f} s) | {k['hung']} |",
            f"| other errors | {', '.join(k['other_errors']) or 'none'} |",
            f"| time to eject (database shows it not ready) | {s(k['seconds_to_eject'])} |",
            f"| time until ready again | {s(k['seconds_until_ready'])} |",
            f"| time until it had served a request again (that reply's end) | {s(k['seconds_until_serving'])} |",
            "",
            "| drain drill | |",
            "|---|---|",
            f"| requests sent | {d['requests']} |",
            f"| requests failed | {d['failed']} {', '.join(d['errors'])} |",
            f"| requests served by the drained member | {d['requests_on_member']} "
            f"({d['in_flight_on_member_when_draining']} in flight on it when it went draining) |",
            f"| `pool drain` ran from / to | {s(d['drain_command_started_s'])} / {s(d['drain_asked_s'])} |",
            f"| draining seen at | {s(d['draining_at_s'])} |",
            f"| its last request ended at | {s(d['last_request_on_member_ended_s'])} |",
            f"| stopped at | {s(d['stopped_at_s'])} |",
            f"| stopped after it was draining and idle | {s(d['stopped_after_idle_s'])} |",
            f"| requests sent to it more than 0.6 s after it was draining | {d['sent_to_member_after_draining']} |",
        ]
    )
