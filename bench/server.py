"""Starting and stopping what a benchmark measures: a vibeadmin server (`manage.py serve`)
with a data folder of its own, fake members, and running manage.py commands against it.

Everything here is a context manager that kills what it started, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from testing.fake_member import FakeMemberProcess
from testing.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
# The checkout whose manage.py is served: this one, or BENCH_CODE's, to measure another
# commit with this harness (a before/after comparison: `git worktree add /tmp/before REV`).
CODE = Path(os.environ.get("BENCH_CODE") or ROOT).resolve()
# The default GGUF that `make install` assembles into the developer's data folder.
DEFAULT_MODEL_DIR = ROOT / "var" / "models"
# The model every server a benchmark starts serves: empty for the default one, else
# VIBEADMIN_MODEL and VIBEADMIN_CHAT_FORMAT as `bench.run --model` sets them.
MODEL_ENV: dict[str, str] = {}


def use_model(path: Path, chat_format: str) -> None:
    """Serve `path` (with llama-server's built-in template `chat_format`) in every server started after this."""
    MODEL_ENV.update({"VIBEADMIN_MODEL": str(path.resolve()), "VIBEADMIN_CHAT_FORMAT": chat_format})


def served_code(code: Path = CODE) -> dict:
    """Which commit's gateway was measured: `code`'s, and whether it had changes not committed."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(code), *args], capture_output=True, text=True)
        return out.stdout.strip()

    return {
        "path": str(code),
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "changed": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def clean_env(data_dir: Path, code: Path = CODE, **overrides: str) -> dict[str, str]:
    """The environment for a child manage.py of checkout `code`: none of the caller's vibeadmin settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIBEADMIN_") and k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env["VIBEADMIN_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH", "")) if p)
    env.update(overrides)
    return env


class DataFolders:
    """Migrated data folders, copied from one template migrated once per bench run."""

    def __init__(self, code: Path = CODE) -> None:
        self.code = code  # whose migrations make the template
        self.root = Path(tempfile.mkdtemp(prefix="vibeadmin-bench-"))
        self.template: Path | None = None
        self.count = 0

    def new(self) -> Path:
        if self.template is None:
            self.template = self.root / "template"
            self.template.mkdir()
            run_manage(self.template, "migrate", "--noinput", "-v", "0", timeout=180, code=self.code)
        self.count += 1
        folder = self.root / f"data{self.count}"
        shutil.copytree(self.template, folder)
        if (DEFAULT_MODEL_DIR / "gemma-3-270m-q4_k_m.verified").exists():
            # Reuse the assembled default model instead of assembling 250 MB again.
            (folder / "models").symlink_to(DEFAULT_MODEL_DIR)
        return folder

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def run_manage(
    data_dir: Path, *args: str, timeout: float = 60, env: dict | None = None, code: Path = CODE
) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=code,
        capture_output=True,
        text=True,
        env=clean_env(data_dir, code, **(env or {})),
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


class Vibeadmin:
    """`manage.py serve` on a free loopback port, with its own data folder."""

    def __init__(
        self, data_dir: Path, *, supervisor: bool, env: dict[str, str] | None = None, code: Path = CODE
    ) -> None:
        self.data_dir = data_dir
        self.code = code  # the checkout whose manage.py is served
        self.supervisor = supervisor
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"  # the API's own door (listener.py)
        self.env = {
            "VIBEADMIN_PORT": str(self.port),
            "VIBEADMIN_API_PORT": str(self.api_port),
            "VIBEADMIN_LOG_LEVEL": "WARNING",
            **MODEL_ENV,
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.key = ""
        self.log = data_dir / "serve.out"

    # --- set-up through the operator's commands -------------------------------------------

    def manage(self, *args: str, timeout: float = 60) -> str:
        return run_manage(self.data_dir, *args, timeout=timeout, env=self.env, code=self.code)

    def create_key(self) -> str:
        self.key = self.manage("apikey", "create", "bench").strip().splitlines()[-1]
        return self.key

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def status(self) -> list[dict]:
        return json.loads(self.manage("pool", "status", "--json"))

    def members(self) -> dict[str, dict]:
        """Name -> state, pid, port, read straight from the database (cheap enough to poll)."""
        with contextlib.closing(sqlite3.connect(self.data_dir / "db.sqlite3", timeout=5)) as db:
            rows = db.execute(
                "SELECT name, state, pid, host, port, url FROM pool_member ORDER BY id"
            ).fetchall()
        return {
            name: {"state": state, "pid": pid, "url": url or (f"http://{host}:{port}" if port else "")}
            for name, state, pid, host, port, url in rows
        }

    # --- the process ----------------------------------------------------------------------

    def start(self, timeout: float = 60) -> Vibeadmin:
        args = [sys.executable, "manage.py", "serve"] + ([] if self.supervisor else ["--no-supervisor"])
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=self.code,
                env=clean_env(self.data_dir, self.code, **self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"manage.py serve did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        return self

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/v1/openapi.json", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, names: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            members = self.members()
            if all(members.get(n, {}).get("state") == "ready" for n in names):
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"members {names} not ready after {timeout:g}s: {self.members()}\n{self.log.read_text()[-2000:]}"
        )

    def stop(self) -> None:
        """Ctrl-C (the supervisor then stops its members), then kill whatever is left:
        serve's session and any member process started for this data folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for proc in member_processes(self.data_dir):
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def __enter__(self) -> Vibeadmin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def member_processes(data_dir: Path) -> list[psutil.Process]:
    """llama.cpp servers started for this data folder (they write their log there)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            # The servers themselves, not their watchdogs (whose command lines hold theirs).
            is_member = cmdline[1:3] == ["-m", "llama_cpp.server"] or any(
                part.endswith("llama-server") for part in cmdline[:1]
            )
            if is_member and any(Path(f.path).is_relative_to(data_dir) for f in proc.open_files()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@contextlib.contextmanager
def fake_members(count: int, *, concurrent: bool = False, **config):
    """`count` fake members in their own processes; stopped on the way out."""
    members: list[FakeMemberProcess] = []
    try:
        for i in range(count):
            members.append(
                FakeMemberProcess(name=f"f{i + 1}", concurrent=concurrent, quiet=concurrent, **config).start()
            )
        yield members
    finally:
        for member in members:
            member.stop()


def register_remote(
    server: Vibeadmin, urls: list[str], *, max_inflight: int = 1, ready: bool = True
) -> list[str]:
    """Add remote members with `pool add --url`; with no supervisor to probe them, mark
    them ready (and set max_inflight) in the database, as a supervisor elsewhere would."""
    names = []
    for i, url in enumerate(urls):
        name = f"r{i + 1}"
        server.manage("pool", "add", "--url", url, "--name", name)
        names.append(name)
    state = "ready" if ready else "stopped"
    server.shell(
        f"from pool.models import Member; Member.objects.update(max_inflight={max_inflight}, state={state!r})"
    )
    return names


def set_ready(server: Vibeadmin, names: list[str]) -> None:
    """Only `names` are ready; the other members are stopped (no supervisor runs)."""
    server.shell(
        "from pool.models import Member; "
        f"Member.objects.filter(name__in={names!r}).update(state='ready'); "
        f"Member.objects.exclude(name__in={names!r}).update(state='stopped')"
    )
