"""Debian's nginx as the reference load balancer: least_conn over the same members,
started by the benchmark on loopback with a generated config in a temporary folder."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import psutil

from testing.helpers import free_port
from testing.processes import end_process

CONFIG = """
worker_processes 1;
pid {dir}/nginx.pid;
daemon off;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  upstream members {{
    least_conn;
{servers}
    keepalive 512;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    client_body_buffer_size 1m;
    location / {{
      proxy_pass http://members;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


@dataclass
class Nginx:
    url: str
    master_pid: int

    def workers(self) -> list[psutil.Process]:
        """The worker processes, which serve every request (the master only starts them)."""
        return psutil.Process(self.master_pid).children()


def available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


@contextlib.contextmanager
def nginx(member_urls: list[str]):
    """Yield an nginx that balances over `member_urls` by least_conn (its URL and pids).

    One worker process, as the gateway is one process.
    """
    folder = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    port = free_port()
    servers = "\n".join(f"    server {urlparse(u).netloc};" for u in member_urls)
    (folder / "nginx.conf").write_text(CONFIG.format(dir=folder, port=port, servers=servers))
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen(
        [binary, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(folder / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode()[-1000:]}")
            time.sleep(0.05)
        yield Nginx(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        end_process(proc, grace=5)
        proc.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
