"""Bounds on clients' connections, on both doors: a request's headers within
VIBEADMIN_HEADER_TIMEOUT_S of the connection (or of the answer before it), an idle
kept-alive connection closed after VIBEADMIN_KEEPALIVE_S, at most
VIBEADMIN_MAX_CONNECTIONS open on each door and VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK
from one client network (an IPv4 address, an IPv6 /64; our own proxies are exempt): the
next gets a 503 and is closed. The body
has its own deadline where it is read (asgi_io.read_body, VIBEADMIN_BODY_TIMEOUT_S); on
daphne, which reads the whole body before the app sees it, the header deadline runs to the
body's end, and the two deadlines add up.

Why: the doors run in the process that also probes members and serves the dashboard, and
sockets cost a file descriptor and memory each. Without these, idle or slow sockets (a
byte now and then) pile up there for as long as their senders like. The cap per network
is what keeps the door's own cap from becoming the attack: one host holding every
connection the door takes would lock out every honest client.

The API's door is uvicorn's httptools protocol, subclassed; daphne's is Twisted's HTTP
channel, which its factory (one per server) is set to build, bounded the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pool.gateway import errors
from pool.proxies import client_network, is_trusted_proxy


def _refusal(message: str) -> bytes:
    """What a connection past a cap is told before it is closed: written at once, before any
    of its request is read, so it costs nothing to say."""
    body = errors.unavailable(message, code="too_many_connections", retry_after=1).body()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


TOO_MANY_CONNECTIONS = _refusal("this server has as many connections open as it accepts; try again shortly")
TOO_MANY_FROM_NETWORK = _refusal(
    "your network has as many connections open to this server as it may; close some, or try again shortly"
)


class Door:
    """The connections one door holds: in all, and per client network. `admit` answers
    None (come in) or the refusal to write; what it admitted is given back by `release`."""

    def __init__(self) -> None:
        self.open = 0
        self.per_network: dict[str, int] = {}

    def admit(self, peer: str | None) -> tuple[str | None, bytes | None]:
        """(the network to release later, or None; the refusal, or None)."""
        if self.open >= settings.VIBEADMIN_MAX_CONNECTIONS:
            return None, TOO_MANY_CONNECTIONS
        network = None
        # A trusted proxy carries many clients (they are counted per request, by X-Forwarded-For);
        # a Unix socket has no peer address.
        if peer and settings.VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK and not is_trusted_proxy(peer):
            network = client_network(peer)
            held = self.per_network.get(network, 0)
            if held >= settings.VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK:
                return None, TOO_MANY_FROM_NETWORK
            self.per_network[network] = held + 1
        self.open += 1
        return network, None

    def release(self, network: str | None) -> None:
        self.open -= 1
        if network is not None:
            left = self.per_network.pop(network) - 1
            if left:
                self.per_network[network] = left


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on connections and a deadline for headers
    (uvicorn has its keep-alive timeout, but none for a request being sent)."""

    deadline: asyncio.TimerHandle | None = None
    admitted = False
    network: str | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # One Door per server: its state object is shared by all of its connections.
        door = self.server_state.__dict__.setdefault("vibeadmin_door", Door())
        peer = transport.get_extra_info("peername")
        self.network, refusal = door.admit(peer[0] if isinstance(peer, tuple) else None)
        if refusal is not None:
            transport.write(refusal)
            transport.close()
            return
        self.admitted = True
        self.arm()

    def on_headers_complete(self) -> None:
        self.disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.arm()  # the next request's headers, on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.admitted:
            self.admitted = False
            self.server_state.__dict__["vibeadmin_door"].release(self.network)
        super().connection_lost(exc)

    def arm(self) -> None:
        self.disarm()
        self.deadline = self.loop.call_later(settings.VIBEADMIN_HEADER_TIMEOUT_S, self.too_slow)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def too_slow(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.abort()  # nothing to answer: its request never arrived


def bound_daphne(factory) -> None:
    """Bound the connections daphne's HTTP factory makes from now on: Twisted's idle
    timeout (its `timeOut`, 60 s by default) becomes the keep-alive, and each channel gets
    the header deadline and the cap on connections."""
    from twisted.internet.protocol import Protocol

    factory.timeOut = settings.VIBEADMIN_KEEPALIVE_S
    build = factory.buildProtocol
    door = Door()

    class Refused(Protocol):
        def __init__(self, refusal: bytes) -> None:
            self.refusal = refusal

        def connectionMade(self) -> None:
            transport: Any = self.transport  # Twisted's interfaces type poorly
            transport.write(self.refusal)
            transport.loseConnection()

    def build_bounded(addr):
        network, refusal = door.admit(getattr(addr, "host", None))
        if refusal is not None:
            return Refused(refusal)
        protocol = build(addr)
        if protocol is None:
            door.release(network)
        else:
            _bound_channel(protocol, lambda: door.release(network))
        return protocol

    factory.buildProtocol = build_bounded


def _bound_channel(protocol, release) -> None:
    """Twisted's channel, bounded through its own hooks: the deadline is armed when the
    connection is made and after each answer, and disarmed once a request has arrived in
    full (allContentReceived); a websocket's upgrade request is one too."""
    from twisted.internet import reactor

    channel = getattr(protocol, "_channel", protocol)  # HTTP/1.1 behind the ALPN wrapper
    deadline: list[Any] = [None]  # the pending call, if armed
    counted = [True]  # until the connection is lost, or handed to a websocket
    # The ALPN wrapper hands every call on to the channel: the channel's own are wrapped.
    made, received, done, lost = (
        channel.connectionMade,
        channel.allContentReceived,
        channel.requestDone,
        channel.connectionLost,
    )

    def disarm() -> None:
        if deadline[0] is not None and deadline[0].active():
            deadline[0].cancel()
        deadline[0] = None

    def arm() -> None:
        disarm()
        limit = settings.VIBEADMIN_HEADER_TIMEOUT_S + settings.VIBEADMIN_BODY_TIMEOUT_S
        deadline[0] = reactor.callLater(limit, too_slow)

    def too_slow() -> None:
        deadline[0] = None
        if channel.transport is not None:
            channel.transport.abortConnection()

    def uncount() -> None:
        if counted[0]:
            counted[0] = False
            release()

    def connection_made() -> None:
        made()
        arm()

    def all_content_received() -> None:
        disarm()
        received()
        if channel.transport is None or getattr(channel.transport, "protocol", protocol) is not protocol:
            uncount()  # handed to a websocket: no longer an HTTP channel

    def request_done(request) -> None:
        done(request)
        if channel.persistent:
            arm()

    def connection_lost(reason) -> None:
        uncount()
        disarm()
        lost(reason)

    channel.connectionMade = connection_made
    channel.allContentReceived = all_content_received
    channel.requestDone = request_done
    channel.connectionLost = connection_lost
