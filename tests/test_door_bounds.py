"""Both doors bound their clients' connections: a socket that sends nothing, or its request
a byte at a time, is closed at the deadline; past the cap on open connections the next
gets a clear 503, and so does one past the cap on connections from one client network,
while other networks still get in; on the API's door the key is checked before the body is waited for,
and a body that never comes is a 408. Against a real `manage.py serve --no-supervisor`
(daphne on the main port, uvicorn on the API's), with deadlines of a second or two.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time

import pytest

from tests.helpers import answers, free_port, start_serve, stop_serve, wait_until

MAX_CONNECTIONS = 12
PER_NETWORK = 5


@pytest.fixture(scope="module")
def doors(migrated_template, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bounds")
    data_dir = folder / "data"
    shutil.copytree(migrated_template, data_dir)
    main, api = free_port(), free_port()
    child = start_serve(
        data_dir,
        "--no-supervisor",
        log=folder / "serve.out",
        VIBEADMIN_PORT=str(main),
        VIBEADMIN_API_PORT=str(api),
        VIBEADMIN_HEADER_TIMEOUT_S="1",
        VIBEADMIN_BODY_TIMEOUT_S="1",
        VIBEADMIN_KEEPALIVE_S="1",
        VIBEADMIN_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK=str(PER_NETWORK),
    )
    try:
        wait_until(
            lambda: (
                (
                    answers(f"http://127.0.0.1:{main}/solve/")
                    and answers(f"http://127.0.0.1:{api}/v1/openapi.json")
                )
                or child.poll() is not None
            ),
            60,
            what="serve to answer on both doors",
        )
        assert child.poll() is None, (folder / "serve.out").read_text()
        yield {"main": main, "api": api}
    finally:
        stop_serve(child, data_dir)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection from `source`: any 127.x.y.z is this host's, each its own client network."""
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server wrote before closing the socket; fails if it stays open longer."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s; got {got[:200]!r}") from None
    return got


@pytest.mark.parametrize("door", ["main", "api"])
def test_a_socket_that_sends_nothing_is_closed(doors, door):
    with connect(doors[door]) as sock:
        closed_within(sock, 10)


@pytest.mark.parametrize("door", ["main", "api"])
def test_a_request_sent_a_byte_at_a_time_is_cut_off(doors, door):
    head = b"POST /solve/api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    with connect(doors[door]) as sock, contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for byte in head:
            sock.sendall(bytes([byte]))
            time.sleep(0.05)  # far under the keep-alive and idle timeouts: only the deadline cuts it
            if time.monotonic() - started > 9:
                raise AssertionError("the slow request was never cut off")


@pytest.mark.parametrize("door", ["main", "api"])
def test_past_the_cap_a_connection_gets_a_clear_503(doors, door):
    # From several networks, each under its own cap, so that only the door's cap is met.
    sources = [f"127.0.1.{n % 4 + 1}" for n in range(MAX_CONNECTIONS + 2)]
    held = [connect(doors[door], source) for source in sources]
    try:
        replies = [closed_within(sock, 10) for sock in held[-2:]]
    finally:
        for sock in held:
            sock.close()
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert b'"code": "too_many_connections"' in reply
        assert b"as many connections open as it accepts" in reply


@pytest.mark.parametrize("door", ["main", "api"])
def test_one_network_cannot_take_the_doors_whole_cap(doors, door):
    held = [connect(doors[door], "127.0.2.1") for _ in range(PER_NETWORK + 1)]
    try:
        refused = closed_within(held[-1], 10)
        assert refused.startswith(b"HTTP/1.1 503"), refused[:200]
        assert b"your network has as many connections open" in refused
        # Another host still gets in and is served while that one holds its share.
        assert answers(f"http://127.0.0.1:{doors[door]}/v1/openapi.json")
    finally:
        for sock in held:
            sock.close()
    # Given back as they close: the same network gets in again.
    wait_until(lambda: answers_from(doors[door], "127.0.2.1"), 10, what="the network's connections released")


def answers_from(port: int, source: str) -> bool:
    with connect(port, source) as sock:
        sock.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return closed_within(sock, 10).startswith(b"HTTP/1.1 200")


def test_the_api_door_checks_the_key_before_waiting_for_the_body(doors):
    with connect(doors["api"]) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        sock.settimeout(10)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]


def test_a_body_that_never_comes_is_a_408(doors):
    with connect(doors["api"]) as sock:
        sock.sendall(
            b"POST /solve/api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        reply = closed_within(sock, 10)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"request_timeout" in reply


def test_a_door_counts_an_ipv6_64_as_one_network_and_exempts_our_proxies(settings):
    from pool.gateway.bounds import TOO_MANY_FROM_NETWORK, Door

    settings.VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK = 2
    settings.VIBEADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]
    door = Door()
    seats = [door.admit(f"2001:db8:1:2::{n}")[0] for n in (1, 2)]
    assert all(seat is not None for seat in seats)
    assert door.admit("2001:db8:1:2:ffff::9") == (None, TOO_MANY_FROM_NETWORK)  # same /64
    assert door.admit("2001:db8:1:3::1")[0] is not None  # the next /64 is another network
    assert all(door.admit("10.1.2.3")[0] is not None for _ in range(5))  # a proxy carries many clients
    seats[0].close()
    assert door.admit("2001:db8:1:2::7")[0] is not None  # a place given back is taken again
    assert door.open == 8 and door.per_network == {"2001:db8:1:2::/64": 2, "2001:db8:1:3::/64": 1}


def test_a_network_is_capped_on_idle_and_unfinished_requests_not_on_answers_in_flight(settings):
    """A platform's burst of long answers from one address is many connections whose
    requests are whole: those count in the door's total only. Idle or half-sent ones are
    what the cap per network bounds, and a kept-alive connection that would be one idle
    too many is closed after its answer."""
    from pool.gateway.bounds import TOO_MANY_FROM_NETWORK, Door

    settings.VIBEADMIN_MAX_CONNECTIONS_PER_NETWORK = 2
    door = Door()
    answering = []
    for _ in range(10):  # ten requests, each sent whole and now waiting for its answer
        seat, refusal = door.admit("192.0.2.7")
        assert refusal is None
        seat.request_whole()
        answering.append(seat)
    assert door.open == 10 and door.per_network == {}
    slow = [door.admit("192.0.2.7")[0] for _ in range(2)]  # two still sending their requests
    assert door.admit("192.0.2.7") == (None, TOO_MANY_FROM_NETWORK)
    assert answering[0].idle_again() is False  # answered; a third idle socket: closed instead
    answering[0].close()
    slow[0].close()
    assert answering[1].idle_again() is True  # room again: it stays open, counted
    assert door.per_network == {"192.0.2.7": 2} and door.open == 10


def test_serve_lowers_the_doors_cap_to_what_the_file_limit_allows(settings):
    from pool.management.commands.serve import fit_connections_to_file_limit

    settings.VIBEADMIN_MAX_CONNECTIONS = 8000
    assert fit_connections_to_file_limit(20000) == "" and settings.VIBEADMIN_MAX_CONNECTIONS == 8000
    line = fit_connections_to_file_limit(4096)
    assert settings.VIBEADMIN_MAX_CONNECTIONS == (4096 - 512) // 2
    assert line == (
        "Each door takes 1792 connections, not VIBEADMIN_MAX_CONNECTIONS=8000: this process may open "
        "4096 files (ulimit -n); raise that limit to take more."
    )
