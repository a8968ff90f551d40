"""A stand-in for a llama-cpp-python server: exact, fast tests and gateway-only benchmarks.

It behaves like the real server where the gateway can tell: `/openapi.json` answers at
once, `/v1/models` and the completions wait for the one generation lock (interrupts off),
answers are OpenAI's JSON or SSE chunks. Content is deterministic ("tok0 tok1 ...") and
the timing is set: time to first token (`ttft`) and time per later token (`tpt`).

Failure modes, set at start or at run time with `POST /_fake/config` (JSON), apply to
every request outside `/_fake/`, probes included: `fail_status` (answer with it; only
the next `fail_times` requests when that is above 0; the body is plain text, as a crashed
process or a proxy in front of it answers, unless `fail_about_request`, when it is the
error JSON llama-server gives a request it cannot use), `drop_after_tokens` (cut the
connection after N tokens), `hang` (never answer), `delay_s` (wait before answering).
`GET /_fake/stats` counts requests; `POST /_fake/reset` restores start config and counts.

    python -m testing.fake_member --port 8001 --ttft 0.02 --tpt 0.001 --max-tokens 64

Tests and benchmarks run it as its own process with `FakeMemberProcess`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from testing.processes import end_process

GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions")
DEFAULT_MAX_TOKENS = 16  # what llama-cpp-python's server uses when the request names none


@dataclass
class FakeConfig:
    ttft: float = 0.02  # seconds from taking the lock to the first token
    tpt: float = 0.001  # seconds for each later token
    max_tokens: int = 64  # the "model" stops by itself after this many (finish_reason "stop")
    model: str = "fake-model"
    name: str = "fake"
    fail_status: int = 0
    fail_times: int = 0
    fail_about_request: bool = False
    fail_type: str = "invalid_request_error"  # the error JSON's type, with fail_about_request
    drop_after_tokens: int = -1
    hang: bool = False
    delay_s: float = 0.0
    # No generation lock: any number at once, for benchmarks where the gateway must be the
    # bottleneck (a llama.cpp server never behaves so).
    concurrent: bool = False
    # The answer opens with the last user message's words: a test sees which problem an
    # answer was generated for (the answer cache's wrong-answer checks).
    echo: bool = False
    # Answers in turn, "|" between them (voting tests): generation n says the n-th (cycling),
    # a word a token, then stops by itself.
    answers: str = ""

    def update(self, changes: dict) -> None:
        known = {f.name: type(f.default) for f in dataclasses.fields(self)}
        for key, value in changes.items():
            kind = known.get(key)
            if kind is None:
                raise ValueError(f"unknown option {key!r}; known: {', '.join(known)}")
            if kind is float and type(value) is int:
                value = float(value)
            if type(value) is not kind:
                raise ValueError(f"{key} must be {kind.__name__}, not {type(value).__name__}")
            setattr(self, key, value)


@dataclass
class FakeStats:
    requests: int = 0  # generation requests received (probes are counted apart)
    served: int = 0  # answered in full
    failed: int = 0  # answered with fail_status
    dropped: int = 0  # cut short on purpose (drop_after_tokens)
    cancelled: int = 0  # the client went away first
    in_flight: int = 0  # generation requests inside, waiting for the lock or generating
    max_concurrent: int = 0
    waiting: int = 0  # requests of any kind waiting for the lock
    generating: int = 0
    max_generating: int = 0  # stays 1: one generation at a time, as the real server
    probes: int = 0  # /openapi.json and /v1/models
    last_request: dict | None = None


class Dropped(Exception):
    """The connection was cut on purpose (drop_after_tokens)."""


class FakeMember:
    def __init__(self, config: FakeConfig | None = None) -> None:
        self.start_config = config or FakeConfig()
        self.config = dataclasses.replace(self.start_config)
        self.stats = FakeStats()
        self.lock = asyncio.Lock()
        self.sequence = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.failure_modes])
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/v1/models", self.models)
        for path in GENERATION_PATHS:
            app.router.add_post(path, self.generate)
        app.router.add_post("/_fake/config", self.set_config)
        app.router.add_get("/_fake/stats", self.get_stats)
        app.router.add_post("/_fake/reset", self.reset)
        return app

    @web.middleware
    async def failure_modes(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        generation = request.path in GENERATION_PATHS
        if generation:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_concurrent = max(self.stats.max_concurrent, self.stats.in_flight)
        else:
            self.stats.probes += 1
        try:
            return await self.misbehave(request, handler)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        except Dropped:
            self.stats.dropped += 1
            return web.Response(status=499)  # never sent: the connection is gone
        finally:
            self.stats.in_flight -= generation

    async def misbehave(self, request: web.Request, handler) -> web.StreamResponse:
        config = self.config
        if config.delay_s:
            await asyncio.sleep(config.delay_s)
        if config.hang:
            await asyncio.Event().wait()  # until the client gives up and cancels us
        if status := config.fail_status:
            if config.fail_times > 0:
                config.fail_times -= 1
                if config.fail_times == 0:
                    config.fail_status = 0  # the last failure asked for: healthy from now on
            self.stats.failed += 1
            if config.fail_about_request:  # llama-server's error JSON, of fail_type
                error = {"code": status, "message": "fake: cannot use this request", "type": config.fail_type}
                return web.json_response({"error": error}, status=status)
            return web.Response(status=status, text="fake member failure")
        return await handler(request)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"openapi": "3.1.0", "info": {"title": "fake llama.cpp server"}, "paths": {}}
        )

    async def models(self, request: web.Request) -> web.Response:
        async with self.locked():
            model = {"id": self.config.model, "object": "model", "owned_by": "me", "permissions": []}
            return web.json_response({"object": "list", "data": [model]})

    @contextlib.asynccontextmanager
    async def locked(self):
        if self.config.concurrent:
            yield
            return
        self.stats.waiting += 1
        try:
            await self.lock.acquire()
        finally:
            self.stats.waiting -= 1
        try:
            yield
        finally:
            self.lock.release()

    async def generate(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            ask = Ask.parse(body, chat=request.path == "/v1/chat/completions", config=self.config)
        except (ValueError, TypeError) as e:
            error = {"message": str(e), "type": "invalid_request_error", "code": None}
            return web.json_response({"error": error}, status=400)
        self.stats.last_request = body
        async with self.locked():
            self.stats.generating += 1
            self.stats.max_generating = max(self.stats.max_generating, self.stats.generating)
            self.sequence += 1
            if self.config.answers:
                ask.follow(self.config.answers.split("|"), self.sequence)
            try:
                if ask.stream:
                    response = await self.stream(request, ask)
                else:
                    response = await self.answer(request, ask)
            finally:
                self.stats.generating -= 1
        self.stats.served += 1
        return response

    async def tokens(self, request: web.Request, ask: Ask):
        """Yield each token's text when it is due; cut the connection where asked to."""
        words, count = ask.script, ask.count
        for i in range(count + 1):
            if i == self.config.drop_after_tokens:
                if request.transport is not None:  # None once the client has gone already
                    request.transport.abort()  # no FIN, no last chunk: as a crashed process
                raise Dropped
            if i == count:
                return
            await asyncio.sleep(self.config.ttft if i == 0 else self.config.tpt)
            word = ask.words[i] if self.config.echo and i < len(ask.words) else f"tok{i}"
            word = words[i] if words else word
            yield word if i == 0 else f" {word}"

    async def answer(self, request: web.Request, ask: Ask) -> web.Response:
        text = "".join([t async for t in self.tokens(request, ask)])
        body = ask.envelope(self.sequence, stream=False)
        choice = {"message": {"role": "assistant", "content": text}} if ask.chat else {"text": text}
        body["choices"] = [{"index": 0, **choice, "logprobs": None, "finish_reason": ask.finish_reason}]
        body["usage"] = ask.usage()
        return web.json_response(body, headers=ask.headers(self.config))

    async def stream(self, request: web.Request, ask: Ask) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **ask.headers(self.config),
            }
        )
        await response.prepare(request)
        first = True
        async for text in self.tokens(request, ask):
            delta = {"role": "assistant", "content": text} if first else {"content": text}
            await response.write(ask.chunk(self.sequence, delta if ask.chat else text, None))
            first = False
        await response.write(ask.chunk(self.sequence, {} if ask.chat else "", ask.finish_reason))
        if ask.include_usage:
            usage = {**ask.envelope(self.sequence, stream=True), "choices": [], "usage": ask.usage()}
            await response.write(sse(usage))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def set_config(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("send a JSON object of options")
            self.config.update(changes)
        except ValueError as e:
            return web.json_response({"error": {"message": str(e)}}, status=400)
        return web.json_response(dataclasses.asdict(self.config))

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(dataclasses.asdict(self.stats))

    async def reset(self, request: web.Request) -> web.Response:
        self.config = dataclasses.replace(self.start_config)
        live = self.stats  # keep the gauges of requests still inside
        self.stats = FakeStats(in_flight=live.in_flight, waiting=live.waiting, generating=live.generating)
        return web.json_response(dataclasses.asdict(self.config))


def sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@dataclass
class Ask:
    """What one completion request asks for, as far as the fake cares."""

    chat: bool
    model: str
    count: int
    finish_reason: str
    stream: bool
    include_usage: bool
    prompt_tokens: int
    system: str | None
    words: list[str] = dataclasses.field(default_factory=list)  # the last user message's
    script: list[str] = dataclasses.field(default_factory=list)  # a scripted answer's words

    def follow(self, answers: list[str], sequence: int) -> None:
        """Generation `sequence` says the answer whose turn it is, and stops by itself."""
        self.script = answers[(sequence - 1) % len(answers)].split()
        if len(self.script) <= self.count:
            self.count, self.finish_reason = len(self.script), "stop"

    @classmethod
    def parse(cls, body: dict, *, chat: bool, config: FakeConfig) -> Ask:
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        if chat:
            messages = body.get("messages")
            if (
                not isinstance(messages, list)
                or not messages
                or not all(isinstance(m, dict) for m in messages)
            ):
                raise ValueError("messages must be a non-empty list of objects")
            texts = [text_of(m.get("content")) for m in messages]
            system = [text_of(m.get("content")) for m in messages if m.get("role") == "system"]
            users = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        else:
            prompt = body.get("prompt")
            texts = [text_of(t) for t in (prompt if isinstance(prompt, list) else [prompt])]
            system = []
            users = texts
        wanted = body.get("max_tokens", body.get("max_completion_tokens"))
        wanted = DEFAULT_MAX_TOKENS if wanted is None else wanted
        if type(wanted) is not int or wanted < 0:
            raise ValueError("max_tokens must be a whole number, 0 or more")
        count = min(wanted, config.max_tokens)
        options = body.get("stream_options") or {}
        return cls(
            chat=chat,
            model=str(body.get("model") or config.model),
            count=count,
            finish_reason="length" if count == wanted else "stop",
            stream=bool(body.get("stream")),
            include_usage=bool(options.get("include_usage")),
            prompt_tokens=sum(len(t.split()) for t in texts),
            system="\n".join(system) if system else None,
            words=users[-1].split() if users else [],
        )

    def envelope(self, sequence: int, *, stream: bool) -> dict:
        if self.chat:
            kind = "chat.completion.chunk" if stream else "chat.completion"
            return {
                "id": f"chatcmpl-fake-{sequence}",
                "object": kind,
                "created": int(time.time()),
                "model": self.model,
            }
        return {
            "id": f"cmpl-fake-{sequence}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model,
        }

    def chunk(self, sequence: int, delta: dict | str, finish_reason: str | None) -> bytes:
        piece = {"delta": delta} if self.chat else {"text": delta}
        choice = {"index": 0, **piece, "logprobs": None, "finish_reason": finish_reason}
        return sse({**self.envelope(sequence, stream=True), "choices": [choice]})

    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.count,
            "total_tokens": self.prompt_tokens + self.count,
        }

    def headers(self, config: FakeConfig) -> dict[str, str]:
        headers = {"X-Fake-Name": config.name}
        if self.system is not None:
            headers["X-Fake-System"] = urllib.parse.quote(self.system, safe="")
        return headers


def text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI's content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


async def start(member: FakeMember, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve `member`; port 0 lets the OS pick a free one. Returns the runner and the URL."""
    # handler_cancellation: a client that hangs up cancels its request, so the lock is
    # freed at once, as the real server stops generating for a client that went away.
    runner = web.AppRunner(member.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{bound_host}:{bound_port}"


async def serve(config: FakeConfig, host: str, port: int, watch_stdin: bool) -> None:
    runner, url = await start(FakeMember(config), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if watch_stdin:
        # The parent holds our stdin open; when it dies the pipe closes and we go too.
        threading.Thread(
            target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
        ).start()
    print(f"fake member {config.name} listening on {url}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testing.fake_member", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (the printed line names it)")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    for f in dataclasses.fields(FakeConfig):
        flag = "--" + f.name.replace("_", "-")
        if type(f.default) is bool:
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default)
    args = vars(parser.parse_args(argv))
    host, port, watch_stdin = args.pop("host"), args.pop("port"), args.pop("watch_stdin")
    asyncio.run(serve(FakeConfig(**args), host, port, watch_stdin))


class FakeMemberProcess:
    """A fake member in its own process, on a free port, for tests and benchmarks.

        with FakeMemberProcess(ttft=0.01, name="a") as member:
            member.url; member.configure(fail_status=500); member.stats()["served"]

    The control calls are plain blocking HTTP: quick, since the member answers them
    without its lock, so they are fine inside an async test too.
    """

    def __init__(self, *, quiet: bool = False, **options) -> None:
        self.config = FakeConfig()
        self.config.update(options)
        self.quiet = quiet  # drop its stderr (clients hanging up mid-stream make aiohttp log tracebacks)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> FakeMemberProcess:
        cmd = [sys.executable, "-m", "testing.fake_member", "--port", "0", "--watch-stdin"]
        for key, value in dataclasses.asdict(self.config).items():
            flag = "--" + key.replace("_", "-")
            if type(value) is bool:
                cmd += [flag] if value else []
            else:
                cmd += [flag, str(value)]
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(
            cmd,
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            stderr=subprocess.DEVNULL if self.quiet else None,
        )
        try:
            self.url = self._read_url(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_url(self, deadline: float) -> str:
        proc = self.proc
        assert proc is not None and proc.stdout is not None  # start() runs it with stdout=PIPE
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else ""
        if " listening on http://" not in line:
            raise RuntimeError(f"fake member did not start (exit code {proc.poll()}): {line!r}")
        return line.split()[-1]

    def call(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise ValueError(e.read().decode()) from None

    def configure(self, **options) -> dict:
        return self.call("POST", "/_fake/config", options)

    def stats(self) -> dict:
        return self.call("GET", "/_fake/stats")

    def reset(self) -> dict:
        return self.call("POST", "/_fake/reset", {})

    def stop(self) -> None:
        if self.proc is None:
            return
        end_process(self.proc, grace=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self.proc = None

    def __enter__(self) -> FakeMemberProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    main()
