"""The solve page in headless Chromium against `manage.py serve` in a child process.

One test drives a real llama.cpp member (the default model): an answer streams in, and a
second, long one stops when Stop is pressed. The other replaces the page's fetch() with a
scripted stream cut into small chunks, to check parsing and rendering exactly without a
model. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    answers,
    free_port,
    start_serve,
    stop_serve,
    wait_ready,
    wait_until,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


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

ANSWER = r"""<think>
We need $2^{100} \bmod 7$. Since $2^3 = 8 \equiv 1 \pmod 7$ and $100 = 3 \cdot 33 + 1$, it is $2$.
</think>

## Answer

Since $2^3 \equiv 1 \pmod 7$:

$$2^{100} = (2^3)^{33} \cdot 2 \equiv 2 \pmod{7}$$

A check that costs $5 and $10 nothing, 中文也可以:

```python
def check(n: int) -> int:
    return pow(2, n, 7)  # fast modular power
```

So \(r = 2\), that is \boxed{2}.
"""


def sse(text: str, piece: int = 9) -> str:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": text[i : i + piece]}, "finish_reason": None}]}
        for i in range(0, len(text), piece)
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


# --- the app and the browser -----------------------------------------------------------


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


@pytest.fixture
def page_only(data_dir, tmp_path):
    """The app with no members and no supervisor: enough to load the page."""
    child, url = serve_app(data_dir, tmp_path / "serve.out", "--no-supervisor", VIBEADMIN_MEMBERS="0")
    yield url
    stop_serve(child, data_dir)


@pytest.fixture
def one_real_member(data_dir, gemma_model, tmp_path):
    """The app with one real llama.cpp member serving the default model, once it is ready."""
    log = tmp_path / "serve.out"
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
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


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


def final_text(page) -> str:
    return page.text_content("#final")


# --- with a real member ------------------------------------------------------------------


@pytest.mark.real_model
def test_an_answer_streams_in_and_stop_ends_another(one_real_member, browser):
    page = open_page(browser, one_real_member)
    # Record every length the answer passes through, to see it arrive in steps.
    page.evaluate("""() => { window.__lengths = [];
      new MutationObserver(() => window.__lengths.push(document.querySelector('#final').textContent.length))
        .observe(document.querySelector('#final'), {childList: true, subtree: true, characterData: true}); }""")
    page.click("button.example >> text=Palindrome check")
    assert page.is_checked("input[name=task][value=code]")
    page.select_option("#max-tokens", "512")
    page.click("#submit")
    page.wait_for_selector("#status.done", timeout=120_000)
    lengths = page.evaluate("window.__lengths")
    assert len({n for n in lengths if n > 0}) >= 3, f"the answer did not arrive in steps: {lengths}"
    assert final_text(page).strip()
    assert " tokens" in page.text_content("#stats")
    page.screenshot(path=ARTIFACTS / "solve-streamed.png", full_page=True)

    page.fill("#problem", "Write a long, detailed tutorial on sorting algorithms, with code for each one.")
    largest = page.eval_on_selector("#max-tokens", "s => s.options[s.options.length - 1].value")
    page.select_option("#max-tokens", largest)
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('#final').textContent.length > 40", timeout=120_000)
    page.click("#stop")
    page.wait_for_selector("#status.stopped", timeout=5_000)
    assert page.is_hidden("#stop") and page.is_enabled("#submit")
    stopped_at = final_text(page)
    time.sleep(2)
    assert final_text(page) == stopped_at, "text kept arriving after Stop"
    assert "Took" in page.text_content("#stats")
    page.screenshot(path=ARTIFACTS / "solve-stopped.png", full_page=True)

    # Stop cancelled the generation upstream: the only member takes the next problem at once
    # (had it gone on, this would wait behind up to 8192 tokens at ~24 tokens/s).
    page.check("input[name=task][value=math]")
    page.fill("#problem", "What is 17 * 23?")
    page.click("#submit")
    page.wait_for_function("() => document.querySelector('#final').textContent.length > 0", timeout=30_000)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=ARTIFACTS / "solve-phone.png", full_page=True)
    page.click("#stop")
    page.wait_for_selector("#status.stopped", timeout=5_000)
    assert page.errors == []


# --- with a scripted stream ----------------------------------------------------------------


def test_markdown_math_code_and_reasoning_render_from_a_chunked_stream(page_only, browser):
    page = open_page(browser, page_only, canned=True)
    can(page, body=sse(ANSWER), headers={"content-type": "text/event-stream"}, chunk=5, wait_ms=1500)
    page.fill("#problem", "Find the remainder when 2^100 is divided by 7.")
    page.click("#submit")
    page.wait_for_selector("#status:has-text('Waiting for a free member… 1 s')")
    page.screenshot(path=ARTIFACTS / "solve-waiting.png")
    page.wait_for_selector("#status.done", timeout=30_000)

    assert page.evaluate("window.__sent") == {
        "messages": [{"role": "user", "content": "Find the remainder when 2^100 is divided by 7."}],
        "task": "math",
        "max_tokens": 2048,
        "progress": True,
    }
    assert page.is_visible("#reasoning") and not page.eval_on_selector("#reasoning", "d => d.open")
    assert "think>" not in final_text(page)
    assert page.locator("#final .katex-display").count() == 1
    assert page.locator("#final .katex").count() == 4  # 2^3 ≡ 1, the display, r = 2, \boxed{2}
    assert "$5 and $10" in final_text(page) and "中文也可以" in final_text(page)
    assert page.locator("#final pre code.hljs .hljs-keyword").count() >= 1
    assert page.locator("#final h2").inner_text() == "Answer"
    assert page.text_content("#status") == "Done"
    page.click("#reasoning summary")
    assert page.locator("#reasoning-body .katex").count() >= 3
    page.screenshot(path=ARTIFACTS / "solve-rendered.png", full_page=True)
    assert page.errors == []


def test_refusals_are_shown_on_the_page_and_the_problem_is_kept(page_only, browser):
    page = open_page(browser, page_only, width=390, canned=True)
    limit = json.loads(page.text_content("#solve-config"))["maxChars"]

    page.click("#submit")
    assert page.text_content("#form-error") == "Type a problem first: the box is empty."
    page.fill("#problem", "x" * (limit + 1))
    page.click("#submit")
    assert "the limit is" in page.text_content("#form-error")
    assert page.is_hidden("#answer")

    page.click("button.example[lang=zh]")
    assert page.is_visible("#cjk-note")
    assert "in English" in page.text_content("#cjk-note")
    error = {
        "error": {
            "message": "you have sent 10 problems in the last minute; please wait a little",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_address",
        }
    }
    headers = {"content-type": "application/json", "retry-after": "42"}
    can(page, status=429, body=json.dumps(error), headers=headers)
    problem = page.input_value("#problem")
    page.click("#submit")
    page.wait_for_selector("#form-error:has-text('Try again in')")
    assert "You have sent 10 problems in the last minute" in page.text_content("#form-error")
    assert page.input_value("#problem") == problem
    page.screenshot(path=ARTIFACTS / "solve-refused-phone.png", full_page=True)

    # No server at all (the fetch fails): the problem stays, the message says so.
    page.evaluate("() => { window.__canned = null; }")
    page.route("**/solve/api/stream", lambda route: route.abort())
    page.click("#submit")
    page.wait_for_selector("#form-error:has-text('Lost the connection')")
    assert page.input_value("#problem") == problem
    assert page.errors == []
