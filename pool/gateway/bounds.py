"""Bounds on clients' connections, on both doors: a request's headers within
VIBEADMIN_HEADER_TIMEOUT_S of the connection (or of the answer before it), an idle
kept-alive connection closed after VIBEADMIN_KEEPALIVE_S, at most
VIBEADMIN_MAX_CONNECTIONS open on each door and VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK
from one client network (an IPv4 address, an IPv6 /64; our own proxies are exempt) that
hold no whole request (connecting, sending one, idle between requests: Seat): the next
gets a 503 and is closed. The body
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
    """The connections one door holds: in all, and per client network those that hold no
    whole request (see Seat). `admit` answers a Seat (come in) or the refusal to write."""

    def __init__(self) -> None:
        self.open = 0
        self.per_network: dict[str, int] = {}

    def admit(self, peer: str | None) -> tuple[Seat | None, bytes | None]:
        if self.open >= settings.VIBEADMIN_MAX_CONNECTIONS:
            return None, TOO_MANY_CONNECTIONS
        network = None
        # A trusted proxy carries many clients (they are counted per request, by X-Forwarded-For);
        # a Unix socket has no peer address.
        if peer and settings.VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK and not is_trusted_proxy(peer):
            network = client_network(peer)
            if not self.take(network):
                return None, TOO_MANY_FROM_NETWORK
        self.open += 1
        return Seat(self, network), None

    def take(self, network: str) -> bool:
        held = self.per_network.get(network, 0)
        if held >= settings.VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK:
            return False
        self.per_network[network] = held + 1
        return True

    def give_back(self, network: str) -> None:
        left = self.per_network.pop(network) - 1
        if left:
            self.per_network[network] = left


class Seat:
    """One admitted connection's place at its door. It counts in the door's total while it
    is open, and against its network while it holds no whole request: while it connects,
    sends a request, or waits idle between requests. That is all an idle or slow socket
    can be, and what the cap per network bounds. A connection whose request is whole and
    being answered (waiting in line, or streaming a long answer) counts in the total only:
    a platform's burst of a class's problems from one address is not refused for being
    many; its key's limits bound it, and a student's own caps bound the solve page."""

    def __init__(self, door: Door, network: str | None) -> None:
        self.door = door
        self.network = network
        self.waiting = network is not None  # counted against its network now
        self.closed = False

    def request_whole(self) -> None:
        if self.waiting:
            self.waiting = False
            self.door.give_back(self.network)  # type: ignore[arg-type]

    def idle_again(self) -> bool:
        """Its answer is sent and it stays open for another request: counted against its
        network again, or False where the network is at its cap (the caller closes it)."""
        if self.network is None or self.waiting:
            return True
        self.waiting = self.door.take(self.network)
        return self.waiting

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.request_whole()
            self.door.open -= 1


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with caps on connections (Door, Seat) and a deadline for
    headers (uvicorn has its keep-alive timeout, but none for a request being sent)."""

    deadline: asyncio.TimerHandle | None = None
    seat: Seat | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # One Door per server: its state object is shared by all of its connections.
        door = self.server_state.__dict__.setdefault("vibeadmin_door", Door())
        peer = transport.get_extra_info("peername")
        self.seat, refusal = door.admit(peer[0] if isinstance(peer, tuple) else None)
        if refusal is not None:
            transport.write(refusal)
            transport.close()
            return
        self.arm()

    def on_headers_complete(self) -> None:
        self.disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.seat is not None:
            self.seat.request_whole()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.seat is not None and not self.seat.idle_again():
            self.transport.close()  # kept alive, it would be one idle socket too many for its network
            return
        self.arm()  # the next request's headers, on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.seat is not None:
            self.seat.close()
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
        seat, refusal = door.admit(getattr(addr, "host", None))
        if seat is None:
            return Refused(refusal or TOO_MANY_CONNECTIONS)
        protocol = build(addr)
        if protocol is None:
            seat.close()
        else:
            _bound_channel(protocol, seat)
        return protocol

    factory.buildProtocol = build_bounded


def _bound_channel(protocol, seat: Seat) -> None:
    """Twisted's channel, bounded through its own hooks: the deadline is armed when the
    connection is made and after each answer, and disarmed once a request has arrived in
    full (allContentReceived); a websocket's upgrade request is one too."""
    from twisted.internet import reactor

    channel = getattr(protocol, "_channel", protocol)  # HTTP/1.1 behind the ALPN wrapper
    deadline: list[Any] = [None]  # the pending call, if armed
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

    def connection_made() -> None:
        made()
        arm()

    def all_content_received() -> None:
        disarm()
        received()
        if channel.transport is None or getattr(channel.transport, "protocol", protocol) is not protocol:
            seat.close()  # handed to a websocket: no longer an HTTP channel
        else:
            seat.request_whole()

    def request_done(request) -> None:
        done(request)
        if not channel.persistent:
            return
        if not seat.idle_again():  # kept alive, it would be one idle socket too many for its network
            if channel.transport is not None:
                channel.transport.loseConnection()
            return
        arm()

    def connection_lost(reason) -> None:
        seat.close()
        disarm()
        lost(reason)

    channel.connectionMade = connection_made
    channel.allContentReceived = all_content_received
    channel.requestDone = request_done
    channel.connectionLost = connection_lost
