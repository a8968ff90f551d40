"""Small helpers shared by the tests: waiting for a condition, stand-in member commands,
running manage.py (and `manage.py serve`) in a child process, the Routing form's post data."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

from testing.helpers import free_port, wait_until

__all__ = ["free_port", "wait_until"]  # where most tests import them from; defined in testing/
ROOT = Path(__file__).resolve().parent.parent
STUB_MEMBER = Path(__file__).resolve().parent / "stub_member.py"

T = TypeVar("T")


def reconcile_until(supervisor, predicate: Callable[[], T], timeout: float = 10.0, *, what: str = "") -> T:
    """Drive the supervisor one reconcile step at a time, in this thread, until `predicate` holds."""

    def step_and_check():
        supervisor.reconcile()
        return predicate()

    return wait_until(step_and_check, timeout, what=what)


def stub_command(*flags: str):
    """A `command_for` for Supervisor that starts tests/stub_member.py instead of llama.cpp."""

    def command_for(member, model, port: int) -> list[str]:
        return [sys.executable, str(STUB_MEMBER), "--port", str(port), *flags]

    return command_for


def clean_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment for a child manage.py: the developer's own vibeadmin settings and
    databases left out, its data folder in `data_dir`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VIBEADMIN_")
        and key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env["VIBEADMIN_DATA_DIR"] = str(data_dir)
    # A port of its own for the API's door, so that servers started side by side never collide.
    env["VIBEADMIN_API_PORT"] = str(free_port())
    env.update(overrides)
    return env


def manage(*args: str, data_dir: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """Run `python manage.py ARGS` in a child process, as an operator would."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=clean_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_serve(data_dir: Path, *args: str, log: Path, **env: str) -> subprocess.Popen:
    """`python manage.py serve ARGS` in a child process, as an operator runs it, its output
    in `log`. Stop it with stop_serve."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", *args],
            cwd=ROOT,
            env=clean_env(data_dir, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_serve(child: subprocess.Popen, data_dir: Path) -> None:
    """Stop serve as Ctrl-C does, kill it if it has not ended 30 s later, and kill the
    llama.cpp members it may have left behind for `data_dir`."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    for member in member_processes(data_dir):
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def member_processes(data_dir: Path) -> list[psutil.Process]:
    """The llama.cpp servers started for this data folder (they write their log there)."""
    return [proc for proc in psutil.process_iter(["cmdline"]) if _serves_for(proc, data_dir)]


def _serves_for(proc: psutil.Process, data_dir: Path) -> bool:
    try:
        cmdline = proc.info["cmdline"] or []
        # The servers themselves, not their watchdogs (whose command lines hold theirs).
        is_member = cmdline[1:3] == ["-m", "llama_cpp.server"] or any(
            part.endswith("llama-server") for part in cmdline[:1]
        )
        return is_member and any(Path(f.path).is_relative_to(data_dir) for f in proc.open_files())
    except psutil.Error:
        return False


def answers(url: str) -> bool:
    """Whether a GET of `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def member_names(data_dir: Path) -> list[str]:
    """The members in a child's database, read directly, as a second process would."""
    with sqlite3.connect(data_dir / "db.sqlite3") as db:
        return [name for (name,) in db.execute("SELECT name FROM pool_member ORDER BY id")]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The child's error, asserting it failed with exactly one line and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# Real members load the model first: minutes on a loaded 2-core machine.
READY_TIMEOUT_S = 180


def wait_ready(child: subprocess.Popen, output: Path, members: int) -> None:
    """Until serve says its `members` members are ready; fail with its output if it exits."""
    said = f"vibeadmin is ready: {members} member{'s' if members != 1 else ''} ready"
    wait_until(
        lambda: said in output.read_text() or child.poll() is not None,
        READY_TIMEOUT_S,
        interval=0.5,
        what=f"serve to say '{said}'",
    )
    assert child.poll() is None, output.read_text()


# Debian's Chromium, headless, with nothing that reaches out to the network (which is closed here).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots, for a person to look at


def routing_data(**changes) -> dict:
    """A valid post of the Routing form (every required field filled), with `changes` on top."""
    data = {
        "strategy": "round_robin",
        "queue_size": 100,
        "queue_timeout_s": 10,
        "prompt_general": "Be brief.",
        "prompt_math": "Math.",
        "prompt_code": "Code.",
        "language_hint_enabled": "on",
        "language_hint": "Answer in English.",
        "api_open": "",
        "solve_rpm": 20,
        "solve_inflight_per_address": 1,
        "solve_max_tokens": 2048,
        "solve_pool_share": 0.5,
    }
    return {**data, **changes}
