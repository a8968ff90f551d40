"""A member's answer is hostile: on the solve page, in headless Chromium, an answer made of
known script-injection vectors renders without running anything, and none of their
elements or attributes survive in the page.

The answer comes from a scripted stream (tests/browser_kit.py's canned fetch), not a model:
a real model would not write these on demand, and the page cannot tell the difference.
Every vector calls window.__pwned(name) if it runs; Content-Security-Policy violations are
collected too, so an injection the sanitizer let through and only the policy stopped
still fails the test.
"""

from __future__ import annotations

import urllib.request

from tests.browser_kit import BROWSER, CANNED_FETCH, can, open_page, sse
from tests.helpers import ARTIFACTS

pytestmark = BROWSER

PWN = "window.__pwned"
# Records what runs, and every CSP violation, from before the page's own scripts. DOMPurify
# parses the answer into an inert document, where Chromium reports each handler attribute
# as a violation though nothing there can run: those reports (from purify.min.js) are the
# sanitizer at work and are left out.
WATCH = """
window.__hits = [];
window.__pwned = (what) => window.__hits.push(what);
document.addEventListener("securitypolicyviolation", (e) => {
  if (!e.sourceFile.endsWith("/purify.min.js"))
    window.__hits.push(`csp:${e.violatedDirective}:${e.blockedURI}:${e.sample}:${e.sourceFile}:${e.lineNumber}`);
});
"""

# Markup left open near the end, such as <svg> or <noscript>, swallows what follows: the
# code block and the formulas come first so that they are checked too.
HOSTILE = f"""<think>Reasoning <img src=x onerror="{PWN}('think-img')"> <svg onload="{PWN}('think-svg')"></svg>
<a href="javascript:{PWN}('think-link')">more</a></think>

Intro $x$ and <abbr title="\ue0000\ue001<img src=x onerror={PWN}('placeholder')>">the trick</abbr>.

<div id="overlay" style="position:fixed;inset:0;z-index:9999;background:red">Log in again here</div>
<span class="katex"><b style="position:fixed;top:0">a forged formula</b></span>

A [good link](https://example.invalid/page) and <a href="https://example.invalid/x" target="_self">another</a>.

```html
<img src=x onerror="{PWN}('fenced')">
```

Math that links: $\\href{{javascript:{PWN}('href')}}{{click}}$, $\\url{{javascript:{PWN}('url')}}$,
$\\htmlId{{x}}{{y}}$ and $$\\href{{javascript:{PWN}('display-href')}}{{x^2}}$$

<img src=x onerror="{PWN}('img')">
<svg><animate onbegin="{PWN}('onbegin')" attributeName="x" dur="1s"></animate></svg>
<svg><set onbegin="{PWN}('set')" attributeName="x" to="1"></set></svg>
<details open ontoggle="{PWN}('ontoggle')"><summary>open me</summary>inside</details>
<body onload="{PWN}('body')">
<a id="jslink" href="javascript:{PWN}('link')">a link</a> and [a Markdown link](javascript:{PWN}('mdlink'))
<a href="  JaVaScRiPt:{PWN}('spaced')">spaced</a>
<form action="javascript:{PWN}('action')"><button formaction="javascript:{PWN}('formaction')">go</button>
<input type="image" src=x onerror="{PWN}('input')"></form>
<iframe src="javascript:{PWN}('iframe')"></iframe>
<iframe srcdoc="<script>parent.__pwned('srcdoc')</script>"></iframe>
<math><mtext><table><mglyph><style><img src=x onerror="{PWN}('mxss')"></style></mglyph></table></mtext></math>
<math><mtext><table><mglyph><style><!--</style><img title="--><img src=x onerror={PWN}('mxss2')>"></mglyph></table></mtext></math>
<svg></p><style><a id="</style><img src=x onerror={PWN}('svg-style')>">
<noscript><p title="</noscript><img src=x onerror={PWN}('noscript')>"></noscript>
<script>{PWN}('script')</script>
<object data="javascript:{PWN}('object')"></object>
<embed src="javascript:{PWN}('embed')">
<input autofocus onfocus="{PWN}('autofocus')">
<video><source onerror="{PWN}('video')"></video>
<meta http-equiv="refresh" content="0;url=javascript:{PWN}('meta')">
<base href="javascript:{PWN}('base')//">
<style>@import url(/static/x.css); #final {{ display: none }}</style>

"""

FORBIDDEN_ELEMENTS = (
    "script, iframe, frame, object, embed, form, input, button, textarea, select, style, meta, base, link"
)
# Every element and attribute under the answer's boxes, for the checks below.
DOM = """() => [...document.querySelectorAll('#final, #final *, #reasoning-body, #reasoning-body *')]
  .map((el) => ({tag: el.tagName.toLowerCase(), attrs: [...el.attributes].map((a) => [a.name, a.value])}))"""
# Elements of the answer taken out of the page's flow (an overlay), and every link's rel and target.
PLACED = """() => [...document.querySelectorAll('#final *, #reasoning-body *')]
  .filter((el) => ['fixed', 'sticky'].includes(getComputedStyle(el).position)).map((el) => el.outerHTML)"""
LINKS = """() => [...document.querySelectorAll('#final a[href]')].map((a) => [a.rel, a.target])"""
# The text a student sees, code blocks left out (they may show markup as text, on purpose).
VISIBLE_TEXT = """() => { const copy = document.querySelector('#final').cloneNode(true);
  copy.querySelectorAll('pre, code').forEach((el) => el.remove()); return copy.textContent; }"""


def test_a_hostile_answer_runs_nothing_and_leaves_no_live_markup(page_only, browser):
    page = open_page(browser, page_only, canned=True, init=WATCH)
    can(page, body=sse(HOSTILE, piece=23), headers={"content-type": "text/event-stream"}, chunk=64)
    page.fill("#problem", "Say something nasty.")
    page.click("#submit")
    page.wait_for_selector("#status.done", timeout=30_000)
    page.click("#reasoning summary")  # the reasoning renders when unfolded
    for link in page.locator("#final a, #reasoning-body a").all():
        link.click(no_wait_after=True)
    page.hover("#final abbr")
    page.wait_for_timeout(1500)  # images fail to load, animations begin, details toggle

    assert page.evaluate("window.__hits") == []
    assert (
        page.locator(f"#final :is({FORBIDDEN_ELEMENTS}), #reasoning-body :is({FORBIDDEN_ELEMENTS})").count()
        == 0
    )
    for element in page.evaluate(DOM):
        for name, value in element["attrs"]:
            assert not name.startswith("on"), element
            assert name not in ("formaction", "action", "srcdoc", "xlink:href"), element
            assert "javascript:" not in value.replace(" ", "").lower(), element
            assert name.replace("-", "").isalnum(), f"a broken attribute: {element}"  # markup that escaped
    assert page.evaluate(PLACED) == [], "the answer's markup placed something over the page"
    assert page.locator("#final .katex [style]").count() >= 1, "KaTeX keeps its own styles"
    links = page.evaluate(LINKS)
    assert len(links) >= 2 and all(link == ["noopener noreferrer", "_blank"] for link in links), links
    shown = page.evaluate(VISIBLE_TEXT)
    assert "onerror" not in shown, f"raw markup shown as the answer: {shown!r}"
    assert page.locator("#final abbr").inner_text() == "the trick"
    assert page.locator("#final .katex").count() >= 1, "the real formula $x$ still renders"
    assert page.locator("#final pre code").inner_text().strip().startswith("<img src=x"), (
        "fenced HTML is code"
    )
    page.screenshot(path=ARTIFACTS / "solve-hostile.png", full_page=True)
    assert page.errors == []


def test_every_page_sends_a_policy_that_forbids_inline_script(page_only):
    for path in ("solve/", "login/", "static/js/solve.js"):
        with urllib.request.urlopen(page_only + path, timeout=10) as response:
            policy = response.headers["Content-Security-Policy"] or ""
            assert "script-src 'self'" in policy and "unsafe-eval" not in policy, (path, policy)
            assert "frame-ancestors 'none'" in policy
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            if not path.startswith("static/"):  # files are served before the frame-options middleware
                assert response.headers["X-Frame-Options"] == "DENY"
            assert response.headers["Referrer-Policy"]


# Where the tutor renders stored text again: the earlier turns of a conversation (after a
# follow-up), the history list and a conversation re-opened from it, the clipboard, and
# the printed page. A tampered localStorage is as hostile as the answer.
BOXES = ":is(#final, #reasoning-body, #turns, #question, .history-title, .history-meta)"
TAMPERED = [
    {  # a bad title and a step that is not one: dropped
        "id": "t1",
        "task": "math",
        "created": 0,
        "turns": [
            {"role": "user", "step": f"<img src=x onerror={PWN}('step')>"},
            {"role": "assistant", "content": "x"},
        ],
    },
    {  # the role is markup: dropped
        "id": "t2",
        "task": "math",
        "created": 0,
        "turns": [
            {"role": f"<img src=x onerror={PWN}('role')>", "content": "x"},
            {"role": "assistant", "content": "y"},
        ],
    },
    {  # well formed, hostile text: listed as plain text, rendered sanitized
        "id": "t3",
        "task": "math",
        "created": f"<img src=x onerror={PWN}('created')>",
        "turns": [
            {"role": "user", "content": f"<img src=x onerror=\"{PWN}('title')\"> a title"},
            {"role": "assistant", "content": HOSTILE},
        ],
    },
]


def assert_inert(page) -> None:
    assert page.evaluate("window.__hits") == []
    assert page.locator(f"{BOXES} :is({FORBIDDEN_ELEMENTS})").count() == 0
    elements = page.evaluate(f"""() => [...document.querySelectorAll('{BOXES}, {BOXES} *')]
      .map((el) => ({{tag: el.tagName.toLowerCase(), attrs: [...el.attributes].map((a) => [a.name, a.value])}}))""")
    for element in elements:
        for name, value in element["attrs"]:
            assert not name.startswith("on"), element
            assert "javascript:" not in value.replace(" ", "").lower(), element


def test_a_hostile_answer_stays_inert_in_follow_ups_history_copy_and_print(page_only, browser):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        page.add_init_script(WATCH)
        page.add_init_script(CANNED_FETCH)
        page.goto(page_only + "solve/")
        can(page, body=sse(HOSTILE, piece=23), headers={"content-type": "text/event-stream"}, chunk=64)
        page.fill("#problem", f"<img src=x onerror=\"{PWN}('question')\"> Say something nasty.")
        page.click("#submit")
        page.wait_for_selector("#status.done", timeout=30_000)
        page.fill("#followup", "And again?")  # the hostile answer becomes an earlier turn
        page.click("#followup-send")
        page.wait_for_selector("#status.done", timeout=30_000)
        for details in page.locator("#turns details").all():
            details.locator("summary").click()  # the stored reasoning renders when unfolded
        page.wait_for_timeout(1000)
        assert page.locator("#turns > li").count() == 2
        assert page.locator("#turns .katex").count() >= 1, "the real formula $x$ still renders"
        assert_inert(page)

        page.click("#copy-markdown")
        page.wait_for_selector("#copy-markdown:has-text('Copied')")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert (
            copied.startswith("### You\n\n<img src=x onerror=") and "<script>" in copied
        )  # text, as written
        page.emulate_media(media="print")
        page.screenshot(path=ARTIFACTS / "solve-hostile-print.png", full_page=True)
        page.emulate_media(media="screen")

        page.evaluate(
            """(tampered) => { const list = JSON.parse(localStorage.getItem('vibeadmin.solve.history'));
          localStorage.setItem('vibeadmin.solve.history', JSON.stringify([...tampered, ...list])); }""",
            TAMPERED,
        )
        page.reload()
        titles = page.locator("#history-list .history-title").all_inner_texts()
        assert titles == ["<img src=x onerror=\"window.__pwned('title')\"> a title", titles[1]], titles
        assert titles[1].startswith("<img src=x onerror=")  # the student's own question, as plain text
        for n in (1, 2):
            page.click(f"#history-list li:nth-child({n}) .history-open")
            for details in page.locator("#turns details").all():
                details.locator("summary").click()
            page.wait_for_timeout(1000)
            assert_inert(page)
        page.screenshot(path=ARTIFACTS / "solve-hostile-history.png", full_page=True)
    finally:
        context.close()
