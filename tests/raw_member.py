"""A fake member written by hand, byte by byte (`FakeServer`): a tiny asyncio server on
loopback whose reply to each request a test shapes exactly, for the gateway's own HTTP
client (pool.gateway.upstream). testing.fake_member is the OpenAI-shaped one."""

from __future__ import annotations

import asyncio

BODY = b'{"model": "vibethinker"}'


def head(*lines: str) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


class FakeServer:
    """A fake member: `answer(n, reader, writer)` writes the reply to the n-th request of a
    connection by hand; returning False closes the connection."""

    def __init__(self, answer):
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.disconnected = asyncio.Event()  # a client's connection ended (EOF or reset)
        self.tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> FakeServer:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self.connections += 1
        try:
            n = 0
            while (request := await read_request(reader)) is not None:
                self.requests.append(request)
                n += 1
                if await self.answer(n, reader, writer) is False:
                    break
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.disconnected.set()
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        request = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = int(request.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    return request + await reader.readexactly(length)


async def answer_json(n, reader, writer) -> None:
    writer.write(head("Content-Type: application/json", "Content-Length: 12") + b'{"ok": true}')
