"""Prompt preparation (pool/gateway/prompts.py): the operator's system prompt per task, and the
language hint for prompts written mainly in Chinese or another CJK script."""

from __future__ import annotations

import copy

import pytest

from pool.gateway.prompts import PromptSettings, is_mainly_cjk, prepare_messages

HINT = "Please reason step by step and give your answer in English."
PROMPTS = PromptSettings(
    {
        "general": "You are a helpful assistant.",
        "math": "You are a math assistant.",
        "code": "You are a programmer.",
    },
    HINT,
    True,
)


def user(content) -> dict:
    return {"role": "user", "content": content}


@pytest.mark.parametrize(
    "text",
    [
        "计算 125 × 8 的值。",
        "求方程 x^2 - 7x + 12 = 0 的所有实数解。",  # Chinese with a formula
        "次の方程式を解いてください: 2x + 3 = 11",  # Japanese: kana and kanji
        "다음 방정식을 푸세요: x + 1 = 2",  # Korean
        "用 Python 实现快速排序,并说明其平均时间复杂度。",  # a code word among Chinese
    ],
)
def test_a_prompt_written_mainly_in_a_cjk_script_is_detected(text):
    assert is_mainly_cjk(text)


def test_a_chinese_problem_with_latex_formulas_is_still_chinese():
    # LaTeX command names are markup, not English: \alpha and \beta alone are 18 letters.
    text = "设 $\\alpha, \\beta$ 是方程 $x^2 - px + q = 0$ 的两根,求 $\\alpha^2+\\beta^2$。"
    assert is_mainly_cjk(text)


@pytest.mark.parametrize(
    "text",
    [
        "What is 17 * 23?",
        "What does 你好 mean in English?",  # an English question about a Chinese word
        "x^2 - 7x + 12 = 0",
        "",
    ],
)
def test_english_text_and_bare_formulas_are_not_cjk(text):
    assert not is_mainly_cjk(text)


def test_the_operators_system_prompt_for_the_task_goes_first():
    prepared, hinted = prepare_messages([user("Sort a list in Python.")], "code", PROMPTS)
    assert prepared == [
        {"role": "system", "content": "You are a programmer."},
        user("Sort a list in Python."),
    ]
    assert not hinted


def test_a_task_without_a_prompt_of_its_own_gets_the_general_one():
    prompts = PromptSettings({"general": "You are a helpful assistant.", "math": ""}, HINT, True)
    prepared, _ = prepare_messages([user("What is 2 + 2?")], "math", prompts)
    assert prepared[0] == {"role": "system", "content": "You are a helpful assistant."}


def test_a_callers_own_system_prompt_is_kept_and_no_second_one_is_added():
    messages = [{"role": "system", "content": "You are terse."}, user("What is 2 + 2?")]
    prepared, _ = prepare_messages(messages, "math", PROMPTS)
    assert prepared == messages


def test_a_chinese_prompt_gets_the_hint_after_its_text():
    prepared, hinted = prepare_messages([user("求方程 x^2 - 7x + 12 = 0 的所有实数解。")], "math", PROMPTS)
    assert hinted
    assert prepared[-1] == user(f"求方程 x^2 - 7x + 12 = 0 的所有实数解。\n\n{HINT}")


def test_a_japanese_prompt_gets_the_hint_too():
    prepared, hinted = prepare_messages([user("次の方程式を解いてください: 2x + 3 = 11")], "math", PROMPTS)
    assert hinted
    assert prepared[-1]["content"].endswith(HINT)


def test_an_english_prompt_gets_no_hint():
    prepared, hinted = prepare_messages([user("What is 17 * 23?")], "math", PROMPTS)
    assert not hinted
    assert prepared[-1] == user("What is 17 * 23?")


def test_the_hint_switched_off_leaves_a_chinese_prompt_as_it_is():
    off = PromptSettings(PROMPTS.system_prompts, HINT, False)
    prepared, hinted = prepare_messages([user("计算 125 × 8 的值。")], "math", off)
    assert not hinted
    assert prepared[-1] == user("计算 125 × 8 的值。")


def test_an_empty_hint_adds_nothing():
    empty = PromptSettings(PROMPTS.system_prompts, "", True)
    prepared, hinted = prepare_messages([user("计算 125 × 8 的值。")], "math", empty)
    assert not hinted
    assert prepared[-1] == user("计算 125 × 8 的值。")


def test_the_hint_goes_on_the_last_user_message_only():
    messages = [
        user("计算 125 × 8 的值。"),
        {"role": "assistant", "content": "1000"},
        user("再算 125 × 16。"),
    ]
    prepared, _ = prepare_messages(messages, "math", PROMPTS)
    assert prepared[1] == user("计算 125 × 8 的值。")
    assert prepared[3] == user(f"再算 125 × 16。\n\n{HINT}")


def test_the_last_user_message_decides_whatever_came_before():
    messages = [user("计算 125 × 8 的值。"), {"role": "assistant", "content": "1000"}, user("Now in words?")]
    _, hinted = prepare_messages(messages, "math", PROMPTS)
    assert not hinted


def test_content_given_as_text_parts_is_read_and_hinted():
    parts = [{"type": "text", "text": "求方程 "}, {"type": "text", "text": "x^2 = 4 的解。"}]
    prepared, hinted = prepare_messages([user(parts)], "math", PROMPTS)
    assert hinted
    assert prepared[-1] == user(f"求方程 x^2 = 4 的解。\n\n{HINT}")


def test_text_parts_are_sent_on_as_one_string():
    # llama.cpp's chat formats read string content only; a list arrived as an empty turn.
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "2 + 2?"}]
    prepared, hinted = prepare_messages([user(parts)], "math", PROMPTS)
    assert not hinted
    assert prepared[-1] == user("What is 2 + 2?")


def test_the_callers_messages_are_not_changed_in_place():
    messages = [user("计算 125 × 8 的值。"), user([{"type": "text", "text": "再算 125 × 16。"}])]
    before = copy.deepcopy(messages)
    prepare_messages(messages, "math", PROMPTS)
    assert messages == before
