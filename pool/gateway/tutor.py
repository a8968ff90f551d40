"""The solve page as a tutor: a student's conversation checked and bounded, and hints mode.

The page sends the whole conversation with each turn (the server keeps nothing): user and
assistant turns, alternating, starting and ending with the student's. A user turn is the
student's own text, or a step ("another_hint", "next_step", "solution": the buttons of
hints mode) that becomes the operator's instruction for it here. The page trims the oldest
turns to the operator's caps before sending; anything over them is refused, never cut here.

In hints mode (the page's, from the Routing page, or a platform's per request:
`vibeadmin.mode`), the tutor's system prompt replaces the task's, and the first question
carries the instruction to give a hint instead of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pool.gateway import errors

SOLUTION, HINTS = "solution", "hints"
MODES = (SOLUTION, HINTS)
STEPS = ("another_hint", "next_step", "solution")


@dataclass(frozen=True)
class TutorSettings:
    mode: str  # the solve page's: solution or hints
    max_turns: int  # the student's turns (questions) sent at most
    max_chars: int  # characters of the conversation sent at most (steps count as their instruction)
    system_prompt: str  # hints mode's, in place of the task's
    first_hint: str  # added to the first question in hints mode
    steps: dict[str, str]  # step -> its instruction


def conversation(raw: Any, tutor: TutorSettings, max_prompt_chars: int) -> list[dict]:
    """The conversation as chat messages, each step replaced by its instruction; a 400 in
    OpenAI's shape for anything malformed or over the caps."""
    if not isinstance(raw, list) or not raw:
        raise errors.invalid("'messages' must be a non-empty list of turns", param="messages")
    messages = []
    for i, turn in enumerate(raw):
        where = f"messages[{i}]"
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(turn, dict) or turn.get("role") != expected:
            raise errors.invalid(
                f"{where} must be a turn of the {expected}: the turns alternate, the student's first",
                param=where,
                code="invalid_conversation",
            )
        messages.append({"role": expected, "content": _content(turn, where, tutor)})
    if len(messages) % 2 == 0:
        raise errors.invalid(
            "the conversation must end with the student's turn", param="messages", code="invalid_conversation"
        )
    questions = (len(messages) + 1) // 2
    if questions > tutor.max_turns:
        raise errors.invalid(
            f"a conversation on this page sends at most {tutor.max_turns} questions; leave out older turns",
            param="messages",
            code="conversation_too_long",
        )
    limit = min(tutor.max_chars, max_prompt_chars)
    chars = sum(len(m["content"]) for m in messages)
    if chars > limit:
        raise errors.invalid(
            f"the conversation is {chars} characters long; this page sends at most {limit}",
            param="messages",
            code="conversation_too_long",
        )
    if not messages[-1]["content"].strip():
        raise errors.invalid("type a question first", param=f"messages[{len(messages) - 1}]")
    return messages


def _content(turn: dict, where: str, tutor: TutorSettings) -> str:
    extra = set(turn) - {"role", "content", "step"}
    if extra:
        raise errors.invalid(f"{where} has an unknown field {sorted(extra)[0]!r}", param=where)
    step = turn.get("step")
    if step is not None:
        if turn["role"] != "user" or step not in STEPS or "content" in turn:
            raise errors.invalid(
                f"{where}.step must be one of {', '.join(STEPS)}, on a student's turn with no content",
                param=f"{where}.step",
            )
        return tutor.steps[step]
    content = turn.get("content")
    if not isinstance(content, str):
        raise errors.invalid(f"{where}.content must be a string", param=f"{where}.content")
    if not is_whole_text(content):
        raise errors.invalid(
            f"{where}.content holds an unpaired surrogate, which is not text",
            param=f"{where}.content",
            code="invalid_text",
        )
    return content


def is_whole_text(text: str) -> bool:
    """No lone UTF-16 surrogate (JSON's "\\ud800" decodes to one): it cannot be encoded to
    UTF-8 for the member, nor counted as the page counts it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def hinted(messages: list[dict], tutor: TutorSettings) -> list[dict]:
    """Hints mode: the tutor's system prompt (unless the caller sent its own) and the
    instruction to hint beside the first question. Every turn sends the same first turns,
    so members' prompt caches keep serving them."""
    out = [dict(m) for m in messages]
    first = next((m for m in out if m["role"] == "user"), None)
    if first is not None and tutor.first_hint:
        first["content"] = f"{_text(first['content'])}\n\n{tutor.first_hint}"
    if tutor.system_prompt and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": tutor.system_prompt})
    return out


def first_question(messages: list[dict]) -> str:
    """The student's first question: the problem a conversation is about."""
    return next((_text(m["content"]) for m in messages if m["role"] == "user"), "")


def _text(content: str | list) -> str:
    return content if isinstance(content, str) else "".join(part["text"] for part in content)
