"""The students' solve page: a problem box, example problems, and the answer streamed in.

The page itself is plain Django; the answer comes from the gateway's /solve/api/stream
(pool/gateway/app.py), which static/js/solve.js reads as server-sent events.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from django.conf import settings
from django.shortcuts import render

from pool.gateway.app import CHECK_PATH, SOLVE_PATH
from pool.models import PoolSettings

EXAMPLES_FILE = Path(__file__).resolve().parent.parent / "data" / "examples.json"
TASKS = [("math", "Math"), ("code", "Programming")]
SHORT_BUDGET = 512


@cache
def examples() -> list[dict]:
    """A few problems from the shared workloads (math and programming, easy to hard, one
    in Chinese), copied into the project so the page does not depend on files beside it."""
    return json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))


def budgets(top: int, default: int = 0) -> list[int]:
    """Answer lengths a student may pick: short, the default, the most allowed."""
    default = default or settings.VIBEADMIN_DEFAULT_MAX_TOKENS
    return sorted({min(n, top) for n in (SHORT_BUDGET, default, top)})


def tutor_config(row: PoolSettings) -> dict:
    """What the page needs to send a conversation the server accepts (pool/gateway/tutor.py):
    its mode, and the bounds it trims the oldest turns to, a step counted as its instruction."""
    return {
        "mode": row.solve_mode,
        "maxTurns": row.solve_max_turns,
        "maxConversationChars": min(row.solve_max_chars, settings.VIBEADMIN_MAX_PROMPT_CHARS),
        "stepChars": {
            "another_hint": len(row.hint_another),
            "next_step": len(row.hint_next_step),
            "solution": len(row.hint_solution),
        },
    }


def solve_page(request):
    row = PoolSettings.load()
    config = {
        "streamUrl": SOLVE_PATH,
        "checkUrl": CHECK_PATH,
        "maxChars": settings.VIBEADMIN_MAX_PROMPT_CHARS,
        **tutor_config(row),
    }
    top = min(settings.VIBEADMIN_MAX_TOKENS, row.solve_max_tokens)  # the Routing page's ceiling
    # The operator's max_tokens default for math (Routing page), else the settings' one.
    default = row.math_max_tokens or settings.VIBEADMIN_DEFAULT_MAX_TOKENS
    return render(
        request,
        "pool/solve.html",
        {
            "examples": examples(),
            "tasks": TASKS,
            "budgets": budgets(top, default),
            "default_budget": min(default, top),
            "max_chars": settings.VIBEADMIN_MAX_PROMPT_CHARS,
            "solve_config": config,
            "hints": row.solve_mode == "hints",
        },
    )
