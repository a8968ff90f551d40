"""Real PostgreSQL and Redis servers for the scale-out tests, started on free loopback
ports in a temporary folder and stopped afterwards. Where the server programs are
missing (and `make test` could not install them), the tests say so and are skipped."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from testing.helpers import free_port, wait_until
from testing.processes import end_process


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    folder: Path

    def stop(self) -> None:
        end_process(self.proc, grace=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def redis_missing() -> str | None:
    return (
        None
        if shutil.which("redis-server")
        else "redis-server is not installed (apt-get install redis-server)"
    )


def start_redis() -> Server:
    folder = Path(tempfile.mkdtemp(prefix="vibeadmin-redis-"))
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(f"redis://127.0.0.1:{port}/0", proc, folder)
    import redis

    def answers() -> bool:
        try:
            return bool(redis.Redis(port=port).ping())
        except redis.ConnectionError:
            return False

    wait_until(answers, 10, what="redis-server to answer")
    return server


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return (
        Path(found[-1]).parent
        if found
        else (Path(shutil.which("initdb")).parent if shutil.which("initdb") else None)
    )


def postgres_missing() -> str | None:
    return (
        None if _pg_bin() else "PostgreSQL's server programs are not installed (apt-get install postgresql)"
    )


def start_postgres() -> Server:
    """initdb refuses to run as root, so as root the server runs as the postgres user."""
    bin_dir = _pg_bin()
    folder = Path(tempfile.mkdtemp(prefix="vibeadmin-pg-"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "vibeadmin", "--no-sync"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *as_user,
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(folder),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(f"postgres://vibeadmin@127.0.0.1:{port}/postgres", proc, folder)

    def ready() -> bool:
        return (
            subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            == 0
        )

    wait_until(ready, 30, what="PostgreSQL to accept connections")
    time.sleep(0.2)
    return server
