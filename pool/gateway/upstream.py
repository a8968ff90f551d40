"""The pooled HTTP/1.1 client to members.

Why a client of our own: with 64 connections on 2 cores (BENCHMARKS.md, overhead), py-spy put
aiohttp's client at ~34% of the gateway's CPU, more than the gateway's own logic. The
gateway only ever POSTs JSON to its own members over keep-alive HTTP/1.1 and reads back a
JSON body or an SSE stream, so asyncio Protocols and httptools' C response parser (the one
uvicorn uses) do that job for a fraction. (httpx's async pool is slower still under
concurrency, httpx issue 3215.)

    async with upstream.post(url, body) as response:   # body: JSON bytes
        response.status
        content = await response.read()                # the whole body, or
        async for chunk in response.iter_chunks(): ...  # bytes as they arrive, de-chunked

Errors are UpstreamError: ConnectFailed (refused, unreachable, unknown host: the member is
not there), UpstreamClosed (it broke off its reply), BadResponse (not HTTP), MemberIdle (no
byte from it for VIBEADMIN_UPSTREAM_IDLE_S); the connect timeout raises TimeoutError. Those
are the member's doing. AnswerTooLong (the whole answer took VIBEADMIN_UPSTREAM_TIMEOUT_S)
is not: a long answer on a busy pool is nobody's fault, and the request ends there.

Two limits, because silence and length are different things. A stream's member sends a
byte at least every token, so silence from the request on is a stuck member; a whole
(non-streamed) reply comes in one piece at the end, so its idle limit counts only once its
head has come, and before that only the whole answer's limit holds. Time the gateway itself
stopped reading (its client is slow) is never the member's silence. A request that fails on a reused connection
before any byte of reply is sent once more on a fresh one: the member closed that idle
connection (a restart) and never saw the request. Leaving `async with` early closes the
connection unless only the tail after [DONE] is left, so a member sees a client leave.
What the bytes of a stream mean (events, [DONE], usage) is pool/gateway/sse.py's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

import httptools
from django.conf import settings

KEEPALIVE_S = 30.0  # an idle connection is closed after 30-40 s (the sweep runs every 10 s)
DNS_TTL_S = 300.0
HIGH_WATER = 256 * 1024  # unread streamed bytes above this pause reading from the member
DRAIN_S = 1.0  # how long the tail of a reply left early (after [DONE]) may take to come
DRAIN_BYTES = 64 * 1024  # ... and how long it may be, before the connection is closed instead


class UpstreamError(Exception):
    """A member could not be reached or broke off its reply."""


class ConnectFailed(UpstreamError):
    """No connection at all: refused, unreachable, unknown host, TLS refused."""


class UpstreamClosed(UpstreamError):
    """The connection closed or reset before the reply was whole."""


class BadResponse(UpstreamError):
    """The member's bytes are not an HTTP/1.x response."""


class MemberIdle(UpstreamError, TimeoutError):
    """No byte from the member for VIBEADMIN_UPSTREAM_IDLE_S while it owed one."""


class AnswerTooLong(Exception):
    """The whole answer ran past VIBEADMIN_UPSTREAM_TIMEOUT_S: the request's limit, not the member's fault."""


def post(url: str, body: bytes, api_key: str = "", *, stream: bool = False) -> Response:
    """POST `body` (JSON) to `url`, with the member's key as a bearer token if it has one;
    the request goes out on entering `async with`. `stream`: the reply is an SSE stream, so
    the idle limit counts from the request, not from the reply's head."""
    return Response(_target(url, api_key), body, stream)


async def close() -> None:
    """Close this event loop's connections (at shutdown, and after each test's loop)."""
    loop = asyncio.get_running_loop()
    pool = _pools.pop(id(loop), None)
    if pool is not None and pool.loop is loop:
        pool.close()
        await asyncio.sleep(0)  # let the transports' connection_lost run


@dataclass(frozen=True, slots=True)
class _Target:
    key: tuple[str, int, bool]  # connections are pooled per host, port and TLS
    address: str  # host:port, for messages
    numeric: bool  # an IP address: nothing to resolve
    head: bytes  # the request up to the Content-Length value


@functools.lru_cache(maxsize=256)
def _target(url: str, api_key: str = "") -> _Target:
    parts = urllib.parse.urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    try:
        numeric = bool(ipaddress.ip_address(host))
    except ValueError:
        numeric = False
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # A key with a CR or LF would split the header: the supervisor makes keys URL-safe, and
    # an operator's remote key is checked on entry, so this never drops a real one.
    auth = f"Authorization: Bearer {api_key}\r\n" if api_key and api_key.isprintable() else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n{auth}"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    return _Target((host, port, tls), f"{host}:{port}", numeric, head)


class Response:
    """A member's reply to one `post()`: `status`, then `read()` or `iter_chunks()`."""

    __slots__ = ("target", "body", "conn", "status", "stream")

    def __init__(self, target: _Target, body: bytes, stream: bool = False):
        self.target = target
        self.body = body
        self.stream = stream
        self.status = 0

    async def __aenter__(self) -> Response:
        pool = _pool()
        deadline = pool.loop.time() + settings.VIBEADMIN_UPSTREAM_TIMEOUT_S
        conn = pool.take(self.target.key)
        if conn is None:
            await self.send(await pool.connect(self.target), deadline)
            return self
        try:
            await self.send(conn, deadline)
        except UpstreamClosed:
            if conn.got_bytes:
                raise
            # The member closed this idle connection (it restarted) and never saw the
            # request: a fresh connection, not a retry on another member or an ejection.
            await self.send(await pool.connect(self.target), deadline)
        return self

    async def send(self, conn: _Connection, deadline: float) -> None:
        self.conn = conn
        conn.begin()
        conn.watch(deadline, idle_from_start=self.stream)
        try:
            conn.transport.write(self.target.head + b"%d\r\n\r\n" % len(self.body) + self.body)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except BaseException:  # cancelled included: the member must see us leave
            conn.unwatch()
            conn.abort()
            raise
        self.status = conn.status

    def when_full(self, callback) -> None:
        """Call `callback` once if the reader falls HIGH_WATER behind the member (its own
        client stopped reading): reading from the member is paused until it catches up."""
        self.conn.on_full = callback

    async def __aexit__(self, exc_type, exc, tb) -> None:
        conn = self.conn
        conn.unwatch()
        if conn.complete and conn.keep_alive and not conn.closed:
            conn.pool.give_back(conn)
        elif exc_type is None and conn.keep_alive and conn.error is None and not conn.closed:
            conn.drain()
        else:
            conn.abort()

    async def read(self) -> bytes:
        """The whole body (Content-Length, chunked or up to the close)."""
        conn = self.conn
        conn.high_water = float("inf")  # all of it is wanted: never pause
        if conn.paused:
            conn.resume()
        while not conn.complete:
            if conn.error is not None:
                raise conn.error
            await conn.wait()
        return conn.take()

    def iter_chunks(self) -> Response:
        """`async for chunk in response.iter_chunks()`: the body's bytes as they arrive."""
        return self

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        conn = self.conn
        while True:
            if conn.chunks:
                return conn.take()
            if conn.complete:
                raise StopAsyncIteration
            if conn.error is not None:
                raise conn.error
            await conn.wait()


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a member, reading one reply at a time. httptools calls
    the on_* methods from inside feed_data."""

    transport: asyncio.Transport

    def __init__(self, pool: _Pool, target: _Target):
        self.pool = pool
        self.key = target.key
        self.address = target.address
        self.parser = httptools.HttpResponseParser(self)
        self.closed = self.idle = False
        self.idle_since = 0.0
        self.draining: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Future | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.idle_check: asyncio.TimerHandle | None = None
        self.last_byte_at = 0.0
        self.begin()

    def begin(self) -> None:
        self.status = 0
        self.framed = False  # Content-Length or chunked: the bytes say where the body ends
        self.keep_alive = self.headers_done = self.complete = self.got_bytes = self.paused = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.high_water: float = HIGH_WATER
        self.on_full = None
        self.error: BaseException | None = None

    def watch(self, deadline: float, *, idle_from_start: bool) -> None:
        """The whole answer's deadline, and the idle limit: from now, or from the reply's head."""
        loop = self.pool.loop
        self.deadline = loop.call_at(deadline, self.time_out)
        self.last_byte_at = loop.time()
        if idle_from_start:
            self.arm_idle()

    def arm_idle(self) -> None:
        if self.idle_check is None:
            self.last_byte_at = self.pool.loop.time()
            self.idle_check = self.pool.loop.call_at(
                self.last_byte_at + settings.VIBEADMIN_UPSTREAM_IDLE_S, self.check_idle
            )

    def unwatch(self) -> None:
        for timer in (self.deadline, self.idle_check):
            if timer is not None:
                timer.cancel()
        self.deadline = self.idle_check = None

    def check_idle(self) -> None:
        """One timer per idle period, not one per chunk: each byte only notes when it came."""
        loop, limit = self.pool.loop, settings.VIBEADMIN_UPSTREAM_IDLE_S
        if self.complete or self.closed:
            self.idle_check = None
            return
        if self.paused:  # we stopped reading, not the member: its silence is ours
            self.last_byte_at = loop.time()
        if loop.time() - self.last_byte_at >= limit:
            self.idle_check = None
            self.fail(MemberIdle(f"{self.address} sent nothing for {limit:g} s"))
            return
        self.idle_check = loop.call_at(self.last_byte_at + limit, self.check_idle)

    # --- asyncio ----------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.pool.open.add(self)

    def data_received(self, data: bytes) -> None:
        if self.idle:  # a member never speaks first
            self.abort()
            return
        self.got_bytes = True
        self.last_byte_at = self.pool.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(BadResponse(f"{self.address} sent a reply that is not HTTP/1.x: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.open.discard(self)
        if self.idle:
            self.pool.forget(self)
        if self.draining is not None:
            self.draining.cancel()
        if not self.complete and self.error is None:
            if self.headers_done and not self.framed:
                self.complete = True  # the body ends at the close
            else:
                when = "mid-reply" if self.got_bytes else "before replying"
                detail = f": {exc}" if exc else ""
                self.error = UpstreamClosed(f"{self.address} closed the connection {when}{detail}")
        self.wake()

    # --- httptools --------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        if self.deadline is not None:
            self.arm_idle()  # a whole reply's body comes now: from here on, silence is the member's
        self.wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > self.high_water and not self.paused:
            if self.draining is not None:
                self.abort()  # not just a tail: stop it
                return
            self.paused = True
            self.transport.pause_reading()
            if self.on_full is not None:
                full, self.on_full = self.on_full, None
                full()
        self.wake()

    def on_message_complete(self) -> None:
        self.complete = True
        if self.draining is not None:
            self.draining.cancel()
            self.draining = None
            self.pool.give_back(self)
        self.wake()

    # --- the reader's side --------------------------------------------------------------------

    async def wait(self) -> None:
        self.waiter = self.pool.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def take(self) -> bytes:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused:
            self.resume()
        return data

    def resume(self) -> None:
        self.paused = False
        self.transport.resume_reading()

    def time_out(self) -> None:
        self.deadline = None
        limit = settings.VIBEADMIN_UPSTREAM_TIMEOUT_S
        self.fail(AnswerTooLong(f"the answer from {self.address} took longer than {limit:g} s"))

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.abort()
        self.wake()

    def drain(self) -> None:
        """The reader is done before the reply is (it stops at [DONE]): read the tail in the
        background and pool the connection after it, or close it if the tail is no tail."""
        self.take()
        self.high_water = DRAIN_BYTES
        self.draining = self.pool.loop.call_later(DRAIN_S, self.abort)

    def abort(self) -> None:
        """Drop the connection at once: the member sees us leave and stops generating."""
        self.closed = True
        if self.draining is not None:
            self.draining.cancel()
            self.draining = None
        self.transport.abort()


class _Pool:
    """One event loop's connections to members (tests run several loops in one process):
    the idle ones per target, newest last, and every open one."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self.open: set[_Connection] = set()
        self.addresses: dict[str, tuple[float, list[str]]] = {}  # host -> (until, addresses)
        self.sweep_handle: asyncio.TimerHandle | None = None
        self.closed = False

    def take(self, key: tuple[str, int, bool]) -> _Connection | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            conn.idle = False
            if not conn.closed:
                return conn
        return None

    def give_back(self, conn: _Connection) -> None:
        if self.closed or conn.closed or not conn.keep_alive:
            conn.abort()
            return
        conn.idle, conn.idle_since = True, self.loop.time()
        self.idle.setdefault(conn.key, []).append(conn)
        if self.sweep_handle is None:
            self.sweep_handle = self.loop.call_later(KEEPALIVE_S / 3, self.sweep)

    def forget(self, conn: _Connection) -> None:
        """An idle connection closed by the member (it restarted, or its own keep-alive ended)."""
        conn.idle = False
        with contextlib.suppress(ValueError):
            self.idle[conn.key].remove(conn)

    def sweep(self) -> None:
        self.sweep_handle = None
        too_old = self.loop.time() - KEEPALIVE_S
        for idle in self.idle.values():
            while idle and idle[0].idle_since <= too_old:
                conn = idle.pop(0)
                conn.idle = False
                conn.transport.close()
        if any(self.idle.values()):
            self.sweep_handle = self.loop.call_later(KEEPALIVE_S / 3, self.sweep)

    async def connect(self, target: _Target) -> _Connection:
        try:
            async with asyncio.timeout(settings.VIBEADMIN_CONNECT_TIMEOUT_S):
                hosts = [target.key[0]] if target.numeric else await self.resolve(target)
                return await self.connect_any(target, hosts)
        except TimeoutError:
            raise TimeoutError(f"connecting to {target.address} timed out") from None

    async def connect_any(self, target: _Target, hosts: list[str]) -> _Connection:
        host, port, tls = target.key
        error: OSError | None = None
        for address in hosts:
            try:
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self, target),
                    address,
                    port,
                    ssl=_tls_context() if tls else None,
                    server_hostname=host if tls else None,
                )
                return conn
            except OSError as exc:
                error = exc
        self.addresses.pop(host, None)
        raise ConnectFailed(f"cannot connect to {target.address}: {error}")

    async def resolve(self, target: _Target) -> list[str]:
        """The host's addresses, kept DNS_TTL_S (as aiohttp's ttl_dns_cache did)."""
        host, port, _ = target.key
        until, hosts = self.addresses.get(host, (0.0, []))
        if until > self.loop.time():
            return hosts
        try:
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectFailed(f"cannot resolve {host}: {exc}") from exc
        hosts = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self.addresses[host] = (self.loop.time() + DNS_TTL_S, hosts)
        return hosts

    def close(self) -> None:
        self.closed = True
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()
        self.idle.clear()
        for conn in list(self.open):
            conn.idle = False
            conn.abort()


_pools: dict[int, _Pool] = {}


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(id(loop))
    if pool is None or pool.loop is not loop:
        pool = _pools[id(loop)] = _Pool(loop)
    return pool


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()
