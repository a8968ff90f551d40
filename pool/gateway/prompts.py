"""Prompt preparation. VibeThinker answers best with a role line for the task and in
English: the operator's system prompt goes first unless the caller sent its own, and a
prompt written mainly in Chinese (or another CJK script) gets the operator's language hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


@dataclass(frozen=True)
class PromptSettings:
    system_prompts: dict[str, str]  # task -> system prompt
    language_hint: str
    language_hint_enabled: bool


def is_mainly_cjk(text: str) -> bool:
    """More CJK characters than Latin letters: formulas and code words don't tip it."""
    cjk = len(_CJK.findall(text))
    # LaTeX command names (\alpha, \frac) are markup, not English: without this a Chinese
    # problem with a formula or two counted as English and got no hint.
    latin = len(_LATIN.findall(_LATEX_COMMAND.sub("", text)))
    return cjk > 0 and cjk >= latin


def prepare_messages(messages: list[dict], task: str, prompts: PromptSettings) -> tuple[list[dict], bool]:
    """The messages to send, and whether the language hint was added."""
    # llama-cpp-python's chat formats (gemma, chatml, llama-2...) read string content only:
    # text parts reached the model as an empty turn. Members get the parts' text joined.
    prepared = [
        {**m, "content": _text(m["content"])} if isinstance(m["content"], list) else m for m in messages
    ]
    if not any(m["role"] == "system" for m in prepared):
        system = prompts.system_prompts.get(task) or prompts.system_prompts.get("general", "")
        if system:
            prepared.insert(0, {"role": "system", "content": system})
    hinted = False
    last_user = max((i for i, m in enumerate(prepared) if m["role"] == "user"), default=None)
    if prompts.language_hint_enabled and prompts.language_hint and last_user is not None:
        text = prepared[last_user]["content"]
        if is_mainly_cjk(text):
            prepared[last_user] = {**prepared[last_user], "content": f"{text}\n\n{prompts.language_hint}"}
            hinted = True
    return prepared, hinted


def _text(parts: list[dict]) -> str:
    return "".join(part["text"] for part in parts)  # the gateway accepts text parts only
