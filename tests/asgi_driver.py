"""Calls an ASGI app in-process the way a server would, with control over when the client
disconnects: exact tests of the gateway without a real HTTP server in front."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> dict:
        return json.loads(self.body)

    def events(self) -> list[str]:
        """The data lines of a server-sent event stream."""
        return [line[6:] for line in self.body.decode().split("\n") if line.startswith("data: ")]


class Call:
    """One request in flight; `disconnect()` makes the client go away."""

    def __init__(
        self,
        app,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict | list[tuple[str, str]] | None = None,
        client: str = "127.0.0.1",
    ):
        self.reply = Reply()
        self.gone = asyncio.Event()
        self.started = asyncio.Event()
        self.first_chunk = asyncio.Event()
        self._body_sent = False
        path, _, query = path.partition("?")  # a query string goes apart, as servers pass it
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode("latin-1"),
            # A dict, or (name, value) pairs where a header comes more than once.
            "headers": [
                (k.lower().encode(), v.encode("utf-8"))
                for k, v in (headers.items() if isinstance(headers, dict) else headers or [])
            ],
            "client": (client, 50000),
            "server": ("127.0.0.1", 8000),
            "scheme": "http",
            "http_version": "1.1",
            "asgi": {"version": "3.0"},
        }
        self.body = body
        self.task = asyncio.ensure_future(app(scope, self._receive, self._send))

    async def _receive(self):
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message):
        if message["type"] == "http.response.start":
            self.reply.status = message["status"]
            self.reply.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            self.started.set()
        elif message["type"] == "http.response.body":
            if message.get("body"):
                self.reply.chunks.append(message["body"])
                self.first_chunk.set()
            if not message.get("more_body"):
                self.gone.set()  # the response is complete; the server then ends the exchange

    def disconnect(self) -> None:
        self.gone.set()

    async def done(self, timeout: float = 10.0) -> Reply:
        await asyncio.wait_for(self.task, timeout)
        return self.reply


async def request(
    app,
    method: str,
    path: str,
    payload=None,
    *,
    key: str | None = None,
    raw: bytes | None = None,
    headers: dict | None = None,
    client: str = "127.0.0.1",
    timeout: float = 10.0,
) -> Reply:
    all_headers = {"content-type": "application/json", **(headers or {})}
    if key:
        all_headers["authorization"] = f"Bearer {key}"
    body = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
    return await Call(app, method, path, body, all_headers, client).done(timeout)
