"""The solve page's side of voting and "check my answer", in headless Chromium against
`manage.py serve` in a child process, with the scripted fetch (tests/browser_kit.py) in place
of a model: the agreement under the streamed answer, the warning and the majority's
solution beside it when the samples disagree, and a typed answer checked and kept in the
conversation. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json

from tests.browser_kit import BROWSER, HISTORY, can_each, canned, open_page, reply, sse
from tests.helpers import ARTIFACTS

pytestmark = BROWSER


def voted(first: str, agreement: dict, majority: str | None = None) -> dict:
    """The first sample streamed, then the gateway's word on the others (voting.py)."""
    told = {"agreement": agreement, **({"majority": {"content": majority}} if majority else {})}
    stream = sse(first).replace("data: [DONE]\n\n", "")
    body = stream + f"event: vibeadmin\ndata: {json.dumps(told)}\n\n" + "data: [DONE]\n\n"
    return canned(body=body, chunk=11)


def test_the_page_says_how_many_independent_solutions_agree(page_only, browser):
    page = open_page(browser, page_only, canned=True)
    can_each(page, voted("19 * 21 = \\boxed{399}", {"answer": "399", "votes": 4, "of": 5}))
    page.fill("#problem", "What is 19 * 21?")
    page.click("#submit")
    page.wait_for_selector("#status.done")
    assert page.text_content("#agreement") == "4 of 5 independent solutions reach 399."
    assert "disagree" not in page.get_attribute("#agreement", "class")
    assert page.is_hidden("#majority")
    stored = page.evaluate(f"JSON.parse(localStorage.getItem('{HISTORY}'))")
    assert stored[0]["turns"][1]["agreement"] == {"answer": "399", "votes": 4, "of": 5}
    assert page.errors == []


def test_a_disagreement_is_a_warning_with_the_majoritys_solution_beside(page_only, browser):
    page = open_page(browser, page_only, canned=True)
    can_each(
        page,
        voted("19 * 21 = \\boxed{400}", {"answer": "399", "votes": 3, "of": 5}, "So it is $\\boxed{399}$."),
    )
    page.fill("#problem", "What is 19 * 21?")
    page.click("#submit")
    page.wait_for_selector("#status.done")
    warning = page.text_content("#agreement")
    assert warning.startswith("Warning: the independent solutions disagree")
    assert "3 of 5 independent solutions reach 399" in warning
    assert "disagree" in page.get_attribute("#agreement", "class")
    assert page.is_visible("#majority") and page.locator("#majority-body .katex").count() == 1
    page.screenshot(path=ARTIFACTS / "solve-voting-disagree.png", full_page=True)

    page.reload()  # reopened from the history: the warning stays with the turn
    page.click("#history-list .history-open")
    assert "Warning: the independent solutions disagree" in page.text_content("#turns")
    assert page.errors == []


def test_check_my_answer_says_not_yet_then_right_and_keeps_the_attempts(hints_page, browser):
    page = open_page(browser, hints_page, canned=True)
    verdict = lambda v: canned(body=json.dumps({"verdict": v}), headers={"content-type": "application/json"})  # noqa: E731
    can_each(
        page, reply("Call the width w: what does the perimeter say?"), verdict("not_yet"), verdict("right")
    )
    page.fill(
        "#problem", "A rectangle has perimeter 30 cm and its length is twice its width. What is its area?"
    )
    page.click("#submit")
    page.wait_for_selector("#status.done")
    assert page.is_visible("#check")
    page.fill("#check-answer", "45")
    page.click("#check-send")
    page.wait_for_selector("#turns >> text=Not yet: that is not the final answer")
    page.fill("#check-answer", "fifty")
    page.press("#check-answer", "Enter")
    page.wait_for_selector("#turns >> text=Right: fifty is the answer.")
    sent = page.evaluate("window.__sentAll")
    assert sent[1] == {
        "problem": "A rectangle has perimeter 30 cm and its length is twice its width. What is its area?",
        "task": "math",
        "answer": "45",
    }
    turns = page.evaluate(f"JSON.parse(localStorage.getItem('{HISTORY}'))")[0]["turns"]
    assert [t["content"] for t in turns[2:]] == [
        "My answer: 45",
        "Not yet: that is not the final answer. Try again, or ask for another hint.",
        "My answer: fifty",
        "Right: fifty is the answer.",
    ]
    page.screenshot(path=ARTIFACTS / "solve-check-answer.png", full_page=True)
    assert page.errors == []
