"""Both doors bound their clients' connections: a socket that sends nothing, or its request
a byte at a time, is closed at the deadline; past the cap on open connections the next
gets a clear 503; on the API's door the key is checked before the body is waited for,
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


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


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
    held = [connect(doors[door]) for _ in range(MAX_CONNECTIONS + 2)]
    try:
        replies = [closed_within(sock, 10) for sock in held[-2:]]
    finally:
        for sock in held:
            sock.close()
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert b'"code": "too_many_connections"' in reply


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
