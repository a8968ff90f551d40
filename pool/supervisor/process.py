"""Starting, watching and stopping one member's operating-system process.

Output goes to a log file per member rather than a pipe: nothing can block on a full
pipe, and a supervisor that restarts can still read the log of a process it adopts.

Each member runs under a watchdog (watchdog.py) holding a lease on this process: a pipe
whose write end only the supervisor keeps (`_leases`). However the supervisor ends, the
kernel closes it, and a member no restarted supervisor adopts (`adopt_lease`) within
VIBEADMIN_ORPHAN_GRACE_S stops by itself. A member's pid is its watchdog's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from django.conf import settings

from pool.llama_build import llama_server_path
from pool.member_logs import log_path
from pool.model_file import ModelChoice
from pool.models import Member, states
from pool.supervisor.watchdog import socket_name


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MemberCommandError(Exception):
    """A local member cannot be started as configured; the message says what to do."""


def member_command(member: Member, model: ModelChoice, port: int) -> list[str]:
    """The command line of a local member's server, for its engine. Its API key travels in
    the environment (member_env), not here: command lines show in `ps` and in its log."""
    if member.engine == states.LLAMA_SERVER:
        return llama_server_command(member, model, port)
    return llama_cpp_python_command(member, model, port)


def llama_server_command(member: Member, model: ModelChoice, port: int) -> list[str]:
    slots = member.wanted_slots() or 1
    command = [
        str(llama_server_binary()),
        "--model",
        str(model.path),
        "--alias",
        model.model_id,
        "--host",
        settings.VIBEADMIN_MEMBER_BIND,
        "--port",
        str(port),
        "--n-gpu-layers",
        "all" if member.n_gpu_layers < 0 else str(member.n_gpu_layers),
        # The context is shared by the slots: each gets n_ctx.
        "--ctx-size",
        str(member.n_ctx * slots),
        "--parallel",
        str(slots),
        "--threads",
        str(member.n_threads),
        "--metrics",
        "--no-webui",
        # Prompt caching (on by default) reuses a slot's cache for a shared prefix; on a
        # sliding-window model (gemma-3) only with the full-size SWA cache: without it a
        # repeated 470-token system prompt was processed in full each time. It costs the
        # windowed layers' full-context KV (gemma-3-270m at 8 slots x 4096: 898 MiB resident
        # instead of 540). On a model without a sliding window (qwen2: the default 1.5B,
        # VibeThinker) llama-server turns it off itself ("swa_full is not supported by this
        # model, it will be disabled"), so it is passed always rather than guessed per GGUF.
        "--swa-full",
    ]
    if model.chat_format:
        # llama-cpp-python's format names, as llama-server's built-in templates spell them.
        # --no-jinja: with Jinja on (its default) llama-server reads the name as a template's
        # text, and every chat became that word: 3 tokens, the messages dropped.
        template = LLAMA_SERVER_TEMPLATES.get(model.chat_format, model.chat_format)
        command += ["--no-jinja", "--chat-template", template]
    return command


LLAMA_SERVER_TEMPLATES = {"llama-2": "llama2"}


def llama_server_binary() -> Path:
    """The configured llama-server, or the build `make install` caches; one clear error if absent."""
    path = llama_server_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        how = (
            "set VIBEADMIN_LLAMA_SERVER to"
            if settings.VIBEADMIN_LLAMA_SERVER
            else "run `make install` to build"
        )
        raise MemberCommandError(f"llama-server not found at {path}: {how} a llama-server binary")
    return path


def check_llama_server() -> str:
    """At start-up: '' when llama-server members can start, else the line that says why not.
    A VIBEADMIN_LLAMA_SERVER that points nowhere is a bad setting: it raises instead."""
    try:
        llama_server_binary()
    except MemberCommandError as exc:
        if settings.VIBEADMIN_LLAMA_SERVER:
            raise
        return f"warning: {exc}; llama-server members will fail to start"
    return ""


def llama_cpp_python_command(member: Member, model: ModelChoice, port: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model.path),
        "--model_alias",
        model.model_id,
        "--host",
        settings.VIBEADMIN_MEMBER_BIND,
        "--port",
        str(port),
        "--n_gpu_layers",
        str(member.n_gpu_layers),
        "--n_ctx",
        str(member.n_ctx),
        "--n_threads",
        str(member.n_threads),
        # The default (true) silently cuts short a streamed reply when another request arrives.
        "--interrupt_requests",
        "false",
    ]
    if model.chat_format:
        command += ["--chat_format", model.chat_format]
    return command


# The only variables a member inherits: what a process needs to run (its programs, home,
# locale, temporary folder, shared libraries) and nothing of vibeadmin's (the secret key,
# the database and Redis URLs, the metrics token), which a member has no use for and whose
# log or crash report could show them.
MEMBER_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")


def member_env(member: Member) -> dict[str, str]:
    env = {name: os.environ[name] for name in MEMBER_ENV if name in os.environ}
    if member.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(member.gpu)
    if member.api_key:
        # Each engine reads its key from the environment: llama-server's --api-key, and
        # llama-cpp-python's --api_key (its settings are pydantic BaseSettings).
        env["LLAMA_API_KEY" if member.engine == states.LLAMA_SERVER else "API_KEY"] = member.api_key
    return env


WATCHDOG = Path(__file__).with_name("watchdog.py")


def spawn(member: Member, command: list[str], env: dict[str, str] | None = None) -> int:
    """Start the process under its watchdog, in its own session (Ctrl-C in the terminal
    reaches only the supervisor, which then stops members in order); return the pid."""
    path = log_path(member)
    watched = [
        sys.executable,
        "-I",  # the standard library only: no site-packages, no PYTHON* variables
        "-S",
        str(WATCHDOG),
        *("--grace", f"{settings.VIBEADMIN_ORPHAN_GRACE_S:g}"),
        *("--stop-grace", f"{settings.VIBEADMIN_STOP_GRACE_S:g}"),
        "--",
        *command,
    ]
    lease, held = os.pipe()  # both ends close-on-exec: only the watchdog's stdin gets one
    try:
        with path.open("ab") as log:
            log.write(f"\n--- starting: {' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                watched,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=lease,
                env=env or member_env(member),
                start_new_session=True,
            )
    except BaseException:
        os.close(held)
        raise
    finally:
        os.close(lease)
    _children[proc.pid] = proc
    _leases[proc.pid] = held
    return proc.pid


def adopt_lease(pid: int) -> bool:
    """Take the lease of a member a previous supervisor started: connect to its watchdog
    and hold the connection. False where there is none to take (it has no watchdog)."""
    if pid in _leases:
        return True
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_name(pid))
    except OSError:
        sock.close()
        return False
    _leases[pid] = sock.detach()
    return True


# Popen objects of the children this process started: polling them reaps the zombies.
_children: dict[int, subprocess.Popen] = {}
# The lease each running member holds on this process (a file descriptor), by pid.
_leases: dict[int, int] = {}


def exit_code(pid: int) -> int | None:
    """The exit code if our child `pid` has exited, else None (also for adopted processes)."""
    proc = _children.get(pid)
    return proc.poll() if proc else None


def describe_exit(code: int | None) -> str:
    """How a process ended, for the operator: a negative code is the signal that ended it."""
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def is_alive(pid: int | None) -> bool:
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_member_process(pid: int, port: int | None) -> bool:
    """Whether `pid` is still a llama.cpp server on `port`: a pid can be reused after a reboot."""
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    is_server = any("llama_cpp.server" in part or part.endswith("llama-server") for part in cmdline)
    return is_server and str(port) in cmdline


def terminate(pid: int) -> None:
    _signal(pid, signal.SIGTERM)


def kill(pid: int) -> None:
    _signal(pid, signal.SIGKILL)


def forget(pid: int) -> None:
    """The process has ended: let go of it and of its lease."""
    _children.pop(pid, None)
    held = _leases.pop(pid, None)
    if held is not None:
        with contextlib.suppress(OSError):
            os.close(held)


def stop(pid: int, grace_s: float) -> str:
    """SIGTERM, wait up to `grace_s`, then SIGKILL. Returns how it ended."""
    if not is_alive(pid):
        forget(pid)
        return "already exited"
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not is_alive(pid):
            forget(pid)
            return "stopped"
        time.sleep(0.05)
    _signal(pid, signal.SIGKILL)
    for _ in range(100):
        if not is_alive(pid):
            break
        time.sleep(0.05)
    forget(pid)
    return f"killed after {grace_s:g}s grace"


def _signal(pid: int, sig: int) -> None:
    try:
        # The whole session: the server may have children of its own.
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def last_error_line(tail: str) -> str:
    """The most telling line of a crashed member's output, for the operator."""
    lines = [line for line in tail.splitlines() if line.strip() and not line.startswith("--- starting")]
    for line in reversed(lines):
        if any(word in line.lower() for word in ("error", "exception", "failed", "no such", "invalid")):
            return line.strip()
    return lines[-1].strip() if lines else ""
