"""The API's own door: /v1/ on a port of its own, served by uvicorn's httptools protocol on
the web server's event loop.

Why a second door: under daphne, Twisted's HTTP machinery costs about half the gateway's
CPU per request here (/v1/ on daphne's port spends about twice the CPU per request of the
API port, BENCHMARKS.md's overhead figures); uvicorn's C parser answers the same app for a
fraction of that.
Daphne keeps the dashboard, the pages, the websockets and /v1/ on the main port. Both doors
run on one loop in one process, so they share one gateway: the same in-flight counts, queue,
key limits and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from django.conf import settings

from pool.gateway.app import gateway
from pool.gateway.bounds import BoundedHttpTools


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        # Daphne's reactor owns SIGINT and SIGTERM; this server stops through stop().
        yield


class ApiListener:
    """Started on daphne's loop once it runs; stopped before the reactor shuts down."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        config = uvicorn.Config(
            gateway,
            http=BoundedHttpTools,  # httptools, with a header deadline and a cap on connections
            timeout_keep_alive=settings.VIBEADMIN_KEEPALIVE_S,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            # The gateway reads X-Forwarded-For itself, from VIBEADMIN_TRUSTED_PROXIES only.
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config)
        self.task: asyncio.Task | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.task = loop.create_task(self.server.serve(sockets=[self.sock]), name="api-listener")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


def bind(host: str, port: int) -> socket.socket:
    """Bound before serving starts, so a port in use is one clear line, not a failed task."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    return sock
