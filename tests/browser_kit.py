"""The browser tests' kit: Debian's headless Chromium (`browser`, driven by Playwright),
`manage.py serve` in a child process (`App` for the dashboard, `serve_app` and `page_only`
for the solve page), and the solve page's fetch() replaced by a scripted stream
(`CANNED_FETCH`, `can`, `can_each`, `sse`). Loaded through conftest's pytest_plugins;
each browser test module sets `pytestmark = BROWSER`."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    answers,
    free_port,
    manage,
    start_serve,
    stop_serve,
    wait_ready,
    wait_until,
)

BROWSER = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"needs Debian's chromium at {CHROMIUM}: apt-get install -y chromium",
    ),
]


@pytest.fixture
def browser():
    """Debian's Chromium, headless; screenshots go to tests/artifacts/."""
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class App:
    """`manage.py serve` on a free port with its own data folder; stopped with SIGINT."""

    def __init__(self, data_dir: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "serve.log"
        self.data_dir = data_dir
        self.key = ""  # a platform API key, once the fixture has created one
        self.password = ""  # the admin's password, once serve has written it
        self.proc = start_serve(
            data_dir, "--port", str(self.port), log=self.log, VIBEADMIN_MEMBERS="0", **env
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(
            lambda: "vibeadmin is ready" in self.output() or self.proc.poll() is not None,
            timeout,
            interval=0.2,
            what="vibeadmin to serve",
        )
        assert self.proc.poll() is None, self.output()

    def stop(self) -> None:
        stop_serve(self.proc, self.data_dir)

    def operator_page(self, browser, path: str):
        """A page at `path`, logged in as the admin. Uncaught script errors collect in
        page.errors, Content-Security-Policy violations in window.__violations."""
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.add_init_script("""window.__violations = [];
          document.addEventListener("securitypolicyviolation",
            (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));""")
        page.goto(self.url + path)
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", self.password)
        page.click("button[type=submit]")
        page.wait_for_url("**" + path)
        return page


def read_or_empty(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


# --- the solve page ---------------------------------------------------------------------


# Stands in for fetch() on /solve/api/stream when window.__canned is set (one reply for
# every request, or a list of them, one per request, in turn): the answer starts after
# `waitMs` and its body comes in `chunk`-byte pieces (cutting events, lines and UTF-8
# characters) every `delayMs`; a reply with `parts` sends each part's text after its
# `pauseMs`. Every body sent is kept in window.__sentAll.
CANNED_FETCH = """
const realFetch = window.fetch.bind(window);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
window.__sentAll = [];
window.fetch = async (url, options) => {
  const canned = Array.isArray(window.__canned) ? window.__canned.shift() : window.__canned;
  if (!canned || !String(url).includes("/solve/api/")) return realFetch(url, options);
  window.__sent = JSON.parse(options.body);
  window.__sentAll.push(window.__sent);
  await sleep(canned.waitMs || 0);  // queued in the gateway
  const parts = canned.parts || [{ text: canned.body, pauseMs: 0 }];
  const signal = options.signal;
  const body = new ReadableStream({ async start(controller) {
    for (const part of parts) {
      await sleep(part.pauseMs || 0);
      const bytes = new TextEncoder().encode(part.text);
      for (let i = 0; i < bytes.length; i += canned.chunk) {
        if (signal && signal.aborted) { controller.error(new DOMException("aborted", "AbortError")); return; }
        controller.enqueue(bytes.slice(i, i + canned.chunk));
        await sleep(canned.delayMs);
      }
    }
    controller.close();
  } });
  return new Response(body, { status: canned.status, headers: canned.headers });
};
"""


def sse(text: str, piece: int = 9) -> str:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": text[i : i + piece]}, "finish_reason": None}]}
        for i in range(0, len(text), piece)
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def serve_app(data_dir: Path, log: Path, *args: str, **env: str) -> tuple[subprocess.Popen, str]:
    """Start serve and wait for its solve page to answer; the child and the app's URL."""
    port = free_port()
    child = start_serve(data_dir, *args, log=log, VIBEADMIN_PORT=str(port), **env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(
            lambda: answers(url + "solve/") or child.poll() is not None,
            60,
            interval=0.2,
            what="serve to answer",
        )
        assert child.poll() is None, log.read_text()
    except BaseException:  # serve never answered: don't leave it (or its members) running
        stop_serve(child, data_dir)
        raise
    return child, url


@contextlib.contextmanager
def serving_gemma(data_dir: Path, gemma_model, log: Path) -> Iterator[str]:
    """The app with one real llama.cpp member of the small gemma GGUF, once it is ready."""
    child, url = serve_app(
        data_dir,
        log,
        VIBEADMIN_MEMBERS="1",
        VIBEADMIN_MODEL=str(gemma_model.path),
        VIBEADMIN_CHAT_FORMAT="gemma",
    )
    try:
        wait_ready(child, log, 1)
        yield url
    finally:
        stop_serve(child, data_dir)


@pytest.fixture
def page_only(data_dir, tmp_path):
    """The app with no members and no supervisor: enough to load the page."""
    child, url = serve_app(data_dir, tmp_path / "serve.out", "--no-supervisor", VIBEADMIN_MEMBERS="0")
    yield url
    stop_serve(child, data_dir)


def open_page(browser, url: str, *, width: int = 1100, canned: bool = False, init: str = ""):
    """The solve page; with `canned`, its fetch() can be given a scripted stream
    (window.__canned); `init` runs before the page's own scripts. Uncaught script errors
    collect in page.errors."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    if init:
        page.add_init_script(init)
    if canned:
        page.add_init_script(CANNED_FETCH)
    page.goto(url + "solve/")
    return page


def canned(
    *,
    status: int = 200,
    body: str = "",
    headers: dict | None = None,
    chunk: int = 5,
    wait_ms: int = 0,
    parts: list[dict] | None = None,
) -> dict:
    reply = {
        "status": status,
        "body": body,
        "headers": headers or {"content-type": "text/event-stream"},
        "chunk": chunk,
        "delayMs": 1,
        "waitMs": wait_ms,
    }
    if parts is not None:
        reply["parts"] = parts
    return reply


def can(page, *, status: int = 200, body: str, headers: dict, chunk: int = 5, wait_ms: int = 0) -> None:
    page.evaluate(
        "c => { window.__canned = c; }",
        canned(status=status, body=body, headers=headers, chunk=chunk, wait_ms=wait_ms),
    )


def can_each(page, *replies: dict) -> None:
    """One canned reply per request, in turn; later requests go to the server."""
    page.evaluate("c => { window.__canned = c; }", list(replies))


def reply(text: str) -> dict:
    return canned(body=sse(text), chunk=7)


# --- the solve page as a tutor -------------------------------------------------------------

HISTORY = "vibeadmin.solve.history"


def settle(data_dir, **fields) -> None:
    """Set the Routing page's fields in the child's database before it serves."""
    code = (
        "from pool.models import PoolSettings; PoolSettings.objects.get_or_create(pk=1); "
        f"PoolSettings.objects.filter(pk=1).update(**{fields!r})"
    )
    result = manage("shell", "-c", code, data_dir=data_dir)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def hints_page(data_dir, tmp_path):
    """The app in hints mode with small conversation bounds, no members: the page only."""
    settle(data_dir, solve_mode="hints", solve_max_turns=3, solve_max_chars=4000)
    child, url = serve_app(data_dir, tmp_path / "serve.out", "--no-supervisor", VIBEADMIN_MEMBERS="0")
    yield url
    stop_serve(child, data_dir)
