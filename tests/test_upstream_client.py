"""The gateway's own HTTP/1.1 client to members (pool.gateway.upstream): bodies of every
framing, streaming as bytes arrive, keep-alive reuse, the stale-connection retry, errors,
timeouts and cancellation.

The servers here are fake ones: tiny asyncio servers on loopback, started by each test,
that write their replies byte by byte so a test can shape every one.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from pool.gateway import sse, upstream
from tests.raw_member import BODY, FakeServer, answer_json, head


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CHUNKED = "Transfer-Encoding: chunked"


@pytest.fixture(autouse=True)
async def upstream_pool():
    yield
    await upstream.close()


async def post_and_read(url: str) -> tuple[int, bytes]:
    async with upstream.post(url, BODY) as response:
        return response.status, await response.read()


async def test_it_sends_one_json_post_and_reads_a_content_length_body():
    async with FakeServer(answer_json) as server:
        assert await post_and_read(server.url) == (200, b'{"ok": true}')
    host = server.url.split("/")[2]
    assert server.requests == [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 24\r\n\r\n" + BODY
    ]


async def test_it_reads_a_chunked_body_dechunked():
    async def answer(n, reader, writer):
        writer.write(head(CHUNKED) + chunk(b"data: 1\n\n") + chunk(b"data: 2\n\n") + LAST_CHUNK)

    async with FakeServer(answer) as server:
        assert await post_and_read(server.url) == (200, b"data: 1\n\ndata: 2\n\n")


async def test_it_reads_a_body_that_ends_at_the_close():
    async def answer(n, reader, writer):
        writer.write(head("Content-Type: text/event-stream") + b"data: 1\n\n")
        await writer.drain()
        writer.write(b"data: 2\n\n")
        return False

    async with FakeServer(answer) as server:
        assert await post_and_read(server.url) == (200, b"data: 1\n\ndata: 2\n\n")


async def test_streamed_chunks_arrive_before_the_reply_ends():
    go_on = asyncio.Event()

    async def answer(n, reader, writer):
        writer.write(head(CHUNKED) + chunk(b"data: first\n\n"))
        await writer.drain()
        await go_on.wait()  # the rest only once the client has the first chunk
        writer.write(chunk(b"data: second\n\n") + LAST_CHUNK)

    async with FakeServer(answer) as server, upstream.post(server.url, BODY) as response:
        chunks = response.iter_chunks()
        assert await asyncio.wait_for(anext(chunks), 5) == b"data: first\n\n"
        go_on.set()
        assert [c async for c in chunks] == [b"data: second\n\n"]


async def test_a_large_streamed_body_arrives_whole_while_the_reader_is_slow():
    payload = bytes(range(256)) * 4096  # 1 MiB: past the point where reading pauses

    async def answer(n, reader, writer):
        writer.write(head(CHUNKED))
        for i in range(0, len(payload), 65536):
            writer.write(chunk(payload[i : i + 65536]))
        writer.write(LAST_CHUNK)

    async with FakeServer(answer) as server, upstream.post(server.url, BODY) as response:
        received = b""
        async for piece in response.iter_chunks():
            received += piece
            await asyncio.sleep(0.001)
    assert received == payload


async def test_two_requests_in_a_row_share_one_connection():
    async with FakeServer(answer_json) as server:
        for _ in range(3):
            assert (await post_and_read(server.url))[0] == 200
    assert (server.connections, len(server.requests)) == (1, 3)


async def test_a_reply_with_connection_close_is_not_pooled():
    async def answer(n, reader, writer):
        writer.write(head("Connection: close", "Content-Length: 2") + b"{}")

    async with FakeServer(answer) as server:
        for _ in range(2):
            assert await post_and_read(server.url) == (200, b"{}")
    assert server.connections == 2


async def test_a_connection_closed_by_the_member_while_idle_is_not_reused():
    async def answer(n, reader, writer):
        await answer_json(n, reader, writer)
        return False  # the member closes it at once, as after its keep-alive timeout

    async with FakeServer(answer) as server:
        assert (await post_and_read(server.url))[0] == 200
        await asyncio.wait_for(server.disconnected.wait(), 5)
        await asyncio.sleep(0.01)
        assert (await post_and_read(server.url))[0] == 200
    assert (server.connections, len(server.requests)) == (2, 2)


async def test_a_request_on_a_reused_connection_that_dies_unanswered_is_sent_again_on_a_fresh_one():
    async def answer(n, reader, writer):
        if n == 2:  # the member restarted under this connection: the request is lost
            writer.transport.abort()
            return False
        await answer_json(n, reader, writer)

    async with FakeServer(answer) as server:
        assert (await post_and_read(server.url))[0] == 200
        assert (await post_and_read(server.url))[0] == 200
    assert (server.connections, len(server.requests)) == (2, 3)


async def test_a_fresh_connection_that_dies_unanswered_is_a_failure():
    async def answer(n, reader, writer):
        writer.transport.abort()
        return False

    async with FakeServer(answer) as server:
        with pytest.raises(upstream.UpstreamClosed, match="before replying"):
            await post_and_read(server.url)
    assert len(server.requests) == 1


async def test_a_refused_connection_is_connect_failed():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(upstream.ConnectFailed, match=f"127.0.0.1:{port}"):
        await post_and_read(f"http://127.0.0.1:{port}/v1/chat/completions")


async def test_a_reset_mid_body_is_an_upstream_error():
    async def answer(n, reader, writer):
        writer.write(head("Content-Length: 100") + b'{"choices": [')
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.transport.abort()
        return False

    async with FakeServer(answer) as server:
        with pytest.raises(upstream.UpstreamError, match="mid-reply"):
            await post_and_read(server.url)
    assert len(server.requests) == 1  # a reply had begun: never sent again


async def test_a_member_that_sends_no_http_is_a_bad_response():
    async def answer(n, reader, writer):
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async with FakeServer(answer) as server:
        with pytest.raises(upstream.BadResponse):
            await post_and_read(server.url)


async def test_a_reply_slower_than_the_total_timeout_is_too_long_and_the_connection_closes(settings):
    settings.VIBEADMIN_UPSTREAM_TIMEOUT_S = 0.2

    async def answer(n, reader, writer):
        writer.write(head(CHUNKED) + chunk(b"data: 1\n\n"))
        await writer.drain()
        while True:  # a byte now and then, until the client leaves: never idle, only long
            try:
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    return
            except TimeoutError:
                writer.write(chunk(b": still here\n\n"))

    async with FakeServer(answer) as server, upstream.post(server.url, BODY) as response:
        with pytest.raises(upstream.AnswerTooLong):
            async for _ in response.iter_chunks():
                pass
        await asyncio.wait_for(server.disconnected.wait(), 5)


async def test_a_stream_silent_past_the_idle_limit_is_the_members_fault(settings):
    settings.VIBEADMIN_UPSTREAM_IDLE_S = 0.2

    async def answer(n, reader, writer):
        writer.write(head(CHUNKED) + chunk(b"data: 1\n\n"))
        await writer.drain()
        await reader.read()  # never more: wait until the client leaves

    async with FakeServer(answer) as server, upstream.post(server.url, BODY, stream=True) as response:
        with pytest.raises(upstream.MemberIdle):
            async for _ in response.iter_chunks():
                pass
        await asyncio.wait_for(server.disconnected.wait(), 5)


async def test_cancelling_a_streamed_read_closes_the_connection():
    async def answer(n, reader, writer):
        writer.write(head(CHUNKED) + chunk(b"data: 1\n\n"))
        await writer.drain()
        await reader.read()  # the member generates until the client leaves

    first = asyncio.Event()

    async def relay(url: str) -> None:
        async with upstream.post(url, BODY) as response:
            async for _ in response.iter_chunks():
                first.set()

    async with FakeServer(answer) as server:
        task = asyncio.create_task(relay(server.url))
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        await asyncio.wait_for(server.disconnected.wait(), 5)
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_stream_left_at_its_done_event_keeps_the_connection_for_the_next_request():
    async def answer(n, reader, writer):
        writer.write(head(CHUNKED) + chunk(b"data: [DONE]\n\n"))
        await writer.drain()
        await asyncio.sleep(0.02)  # the last chunk comes a moment later, as llama.cpp's EOF
        writer.write(LAST_CHUNK)

    async with FakeServer(answer) as server:
        for _ in range(2):
            async with upstream.post(server.url, BODY) as response:
                async for piece in response.iter_chunks():
                    if sse.DONE in piece:
                        break
            await asyncio.sleep(0.05)
    assert (server.connections, len(server.requests)) == (1, 2)
