"""The solve page in headless Chromium against `manage.py serve` in a child process.

One test drives a real llama.cpp member (the default model): an answer streams in, and a
second, long one stops when Stop is pressed. The other replaces the page's fetch() with a
scripted stream cut into small chunks, to check parsing and rendering exactly without a
model. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.browser_kit import BROWSER, can, open_page, serving_gemma, sse
from tests.helpers import ARTIFACTS

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


pytestmark = BROWSER


# --- the app and the browser -----------------------------------------------------------


@pytest.fixture
def one_real_member(data_dir, gemma_model, tmp_path):
    """The app with one real llama.cpp member serving the default model, once it is ready."""
    with serving_gemma(data_dir, gemma_model, tmp_path / "serve.out") as url:
        yield url


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
