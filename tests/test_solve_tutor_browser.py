"""The solve page as a tutor, in headless Chromium against `manage.py serve` in a child
process: a five-turn conversation on a real llama.cpp member (the default model), and,
with the scripted fetch (tests/browser_kit.py) in place of a model, hints mode's buttons, the
trimmed conversation, the history kept in the browser, copy and print, the honest wait,
and the keyboard and the accessibility tree. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json

import pytest

from tests.browser_kit import (
    BROWSER,
    CANNED_FETCH,
    HISTORY,
    can_each,
    canned,
    open_page,
    reply,
    serving_gemma,
    settle,
    sse,
)
from tests.helpers import ARTIFACTS

pytestmark = BROWSER


@pytest.fixture
def real_member_small_answers(data_dir, gemma_model, tmp_path):
    """One real llama.cpp member (the small gemma GGUF); answers of at most 96 tokens."""
    settle(data_dir, solve_max_tokens=96, solve_rpm=30)
    with serving_gemma(data_dir, gemma_model, tmp_path / "serve.out") as url:
        yield url


def watch_lengths(page) -> None:
    """Record each length the live answer passes through (reset per turn by the test)."""
    page.evaluate("""() => { window.__lengths = [];
      new MutationObserver(() => window.__lengths.push(document.querySelector('#final').textContent.length))
        .observe(document.querySelector('#final'), {childList: true, subtree: true, characterData: true}); }""")


def stored(page) -> list[dict]:
    return page.evaluate(f"() => JSON.parse(localStorage.getItem('{HISTORY}') || '[]')")


# --- with a real member ------------------------------------------------------------------


@pytest.mark.real_model
def test_a_five_turn_conversation_streams_each_turn_with_math_and_the_caps_hold(
    real_member_small_answers,
    browser,
):
    url = real_member_small_answers
    page = open_page(browser, url)
    watch_lengths(page)
    questions = [
        "What is $3^4$? Answer briefly.",
        "And what is $3^5$?",
        "Is $243$ odd or even?",
        "Write $243$ as a power of $3$.",
        "Thank you! Summarise in one sentence.",
    ]
    page.fill("#problem", questions[0])
    page.press("#problem", "Enter")  # Enter sends
    for turn, text in enumerate(questions):
        if turn:
            page.fill("#followup", text)
            page.press("#followup", "Enter")
        page.wait_for_function(
            "() => document.querySelector('#final').textContent.length > 0", timeout=120_000
        )
        if turn == 2:  # while it streams: the caps of the page hold for the same address
            during = page.evaluate(
                """async (url) => { const r = await fetch(url, {method: 'POST', headers: {'Content-Type':
                'application/json'}, body: JSON.stringify({messages: [{role: 'user', content: 'hi'}], task: 'math',
                max_tokens: 8})}); return [r.status, (await r.json()).error.code]; }""",
                "/solve/api/stream",
            )
            assert during == [429, "solve_inflight_per_address"]
        page.wait_for_selector("#status.done, #status.stopped", timeout=180_000)
        lengths = page.evaluate("window.__lengths.splice(0)")
        assert len({n for n in lengths if n > 0}) >= 2, f"turn {turn + 1} did not stream in steps: {lengths}"
        assert page.is_visible("#followup")
        focused = page.evaluate("document.activeElement.id")
        assert focused == ("followup" if turn else "problem"), "focus stays where the student typed"

    assert page.locator("#turns > li").count() == 8  # four whole exchanges, the fifth live
    assert page.locator("#turns .katex").count() >= 4, "the questions' math is rendered"
    assert page.locator("#question .katex").count() == 0  # the last question has none
    over = page.evaluate(
        """async (url) => { const r = await fetch(url, {method: 'POST', headers: {'Content-Type':
        'application/json'}, body: JSON.stringify({problem: 'hi', task: 'math', max_tokens: 97})});
        return [r.status, (await r.json()).error.code]; }""",
        "/solve/api/stream",
    )
    assert over == [400, "max_tokens_over_solve_limit"]
    (saved,) = stored(page)
    assert len(saved["turns"]) == 10 and saved["turns"][0]["content"] == questions[0]
    assert page.locator("#history-list li").count() == 1
    page.screenshot(path=ARTIFACTS / "solve-five-turns.png", full_page=True)
    assert page.errors == []


# --- with a scripted stream ------------------------------------------------------------------


def test_hints_mode_offers_the_three_steps_and_sends_each_as_a_turn(hints_page, browser):
    page = open_page(browser, hints_page, canned=True)
    can_each(
        page,
        reply("Hint: look at $2^3$ modulo 7."),
        reply("Another: $100 = 3 \\cdot 33 + 1$."),
        reply("Step: $2^{99} \\equiv 1$."),
        reply("So the answer is \\boxed{2}."),
    )
    page.fill("#problem", "Find the remainder when 2^100 is divided by 7.")
    page.click("#submit")
    page.wait_for_selector("#status.done")
    assert page.is_visible("#hint-steps")
    assert page.locator("#hint-steps button").all_inner_texts() == [
        "Another hint",
        "Next step",
        "Full solution",
    ]
    for step in ("another_hint", "next_step", "solution"):
        page.click(f"#hint-steps button[data-step={step}]")
        page.wait_for_selector("#status.done")
    sent = page.evaluate("window.__sentAll")
    assert sent[1]["messages"][2] == {"role": "user", "step": "another_hint"}
    # Three questions at most (the Routing page's bound): the problem kept, the oldest exchange after it left out.
    assert [m.get("step", m.get("content")) for m in sent[3]["messages"]] == [
        "Find the remainder when 2^100 is divided by 7.",
        "Another: $100 = 3 \\cdot 33 + 1$.",
        "next_step",
        "Step: $2^{99} \\equiv 1$.",
        "solution",
    ]
    assert page.is_visible("#trim-note") and "2 earlier turns were left out" in page.text_content(
        "#trim-note"
    )
    assert page.locator("#turns .katex").count() >= 3
    assert "Show me the full solution." in page.text_content("#question")
    page.screenshot(path=ARTIFACTS / "solve-hints.png", full_page=True)
    assert page.errors == []


def test_history_keeps_reopens_deletes_and_clears_conversations(page_only, browser):
    page = open_page(browser, page_only, canned=True)
    page.on("dialog", lambda dialog: dialog.accept())
    can_each(
        page, reply("First answer: $x = 1$."), reply("A follow-up answer."), reply("Second problem's answer.")
    )
    page.fill("#problem", "First problem")
    page.click("#submit")
    page.wait_for_selector("#status.done")
    page.fill("#followup", "Why?")
    page.click("#followup-send")
    page.wait_for_selector("#status.done")
    page.click("#new-problem")
    assert page.evaluate("document.activeElement.id") == "problem"
    page.fill("#problem", "Second problem")
    page.click("#submit")
    page.wait_for_selector("#status.done")
    assert page.locator("#history-list .history-title").all_inner_texts() == [
        "Second problem",
        "First problem",
    ]

    page.reload()  # nothing on the server: the browser kept them
    assert page.locator("#history-list li").count() == 2
    page.click("#history-list li:nth-child(2) .history-open")
    assert (
        page.is_visible("#conversation")
        and page.evaluate("document.activeElement.id") == "conversation-title"
    )
    assert page.locator("#turns > li").count() == 4
    assert page.locator("#turns .katex").count() == 1
    assert page.get_attribute("#history-list li:nth-child(2) .history-open", "aria-current") == "true"
    page.screenshot(path=ARTIFACTS / "solve-history.png", full_page=True)

    page.click("#history-list li:nth-child(1) .history-delete")
    assert page.locator("#history-list .history-title").all_inner_texts() == ["First problem"]
    assert [c["turns"][0]["content"] for c in stored(page)] == ["First problem"]
    page.click("#history-clear")
    assert page.locator("#history-list li").count() == 0 and page.is_visible("#history-empty")
    assert stored(page) == []
    assert page.errors == []


def test_a_conversation_is_copied_as_markdown_and_printed_with_its_math(page_only, browser):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.add_init_script(CANNED_FETCH)
        page.goto(page_only + "solve/")
        can_each(page, reply("Since $2^3 \\equiv 1$:\n\n$$2^{100} \\equiv 2 \\pmod 7$$"))
        page.fill("#problem", "Find 2^100 mod 7.")
        page.click("#submit")
        page.wait_for_selector("#status.done")
        page.click("#copy-markdown")
        page.wait_for_selector("#copy-markdown:has-text('Copied')")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == (
            "### You\n\nFind 2^100 mod 7.\n\n### Answer\n\nSince $2^3 \\equiv 1$:\n\n$$2^{100} \\equiv 2 \\pmod 7$$\n"
        )
        page.emulate_media(media="print")
        assert (
            page.is_hidden("#solve-form") and page.is_hidden("#history") and page.is_hidden("#followup-form")
        )
        assert page.locator("#final .katex-display").is_visible()
        page.screenshot(path=ARTIFACTS / "solve-print.png", full_page=True)
        page.pdf(path=ARTIFACTS / "solve-print.pdf")
        assert page.errors == []
    finally:
        context.close()


def test_a_waiting_problem_shows_its_place_in_line_and_the_predicted_wait(page_only, browser):
    page = open_page(browser, page_only, canned=True)
    line = "event: vibeadmin\ndata: {}\n\n"
    parts = [
        {"text": line.replace("{}", json.dumps({"queue": {"place": 3, "predicted_s": 40}})), "pauseMs": 0},
        {
            "text": line.replace("{}", json.dumps({"queue": {"place": 1, "predicted_s": 5.2}})),
            "pauseMs": 1200,
        },
        {"text": line.replace("{}", json.dumps({"started": {"queue_ms": 2400}})), "pauseMs": 1200},
        {"text": sse("The answer is $42$."), "pauseMs": 300},
    ]
    can_each(page, canned(parts=parts, chunk=400))
    page.fill("#problem", "Busy pool")
    page.click("#submit")
    page.wait_for_selector("#status:has-text('3rd in line, about 40 s to go')")
    page.screenshot(path=ARTIFACTS / "solve-in-line.png")
    page.wait_for_selector("#status:has-text('Next in line for a free member, about 5 s to go')")
    page.wait_for_selector("#status.done")
    assert "waited 2.4 s for a free member" in page.text_content("#stats")
    assert page.locator("#final .katex").count() == 1
    assert page.errors == []


def test_the_keyboard_and_a_screen_reader_can_use_the_page_on_a_phone(page_only, browser):
    page = open_page(browser, page_only, width=390, canned=True)
    can_each(page, canned(body=sse("A long answer " * 40), chunk=3), reply("Short."))
    page.focus("#problem")
    page.keyboard.type("Line one")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("line two")
    assert page.input_value("#problem") == "Line one\nline two" and page.is_hidden("#conversation")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#final').textContent.length > 0")
    assert page.get_attribute("#final", "aria-live") == "polite"
    assert page.get_attribute("#final", "aria-busy") == "true"  # announced once whole
    page.focus("#stop")
    page.keyboard.press("Enter")  # Stop, from the keyboard
    page.wait_for_selector("#status.stopped")
    assert page.get_attribute("#final", "aria-busy") == "false"
    assert page.evaluate("document.activeElement.id") == "followup", (
        "focus goes where the next question is typed"
    )
    page.keyboard.type("Why?")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status.done")

    tree = page.locator("body").aria_snapshot()
    for expected in (
        'heading "Conversation"',
        "status",
        'textbox "Ask a follow-up"',
        'button "Send"',
        'button "Copy as Markdown"',
        'heading "Your conversations"',
        'textbox "Problem"',
    ):
        assert expected in tree, f"{expected!r} not in the accessibility tree:\n{tree}"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "it scrolls sideways"
    page.screenshot(path=ARTIFACTS / "solve-phone-conversation.png", full_page=True)
    assert page.errors == []
