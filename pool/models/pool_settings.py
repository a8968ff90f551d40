from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from pool.models.apikey import MAX_SHARE_WEIGHT, PRIORITIES

DEFAULT_PROMPTS = {
    "general": "You are a helpful assistant.",
    "math": "You are a math assistant. Reason step by step and put the final answer in \\boxed{}.",
    "code": "You are a programming assistant.",
}
DEFAULT_LANGUAGE_HINT = "Please reason step by step and give your answer in English."

# The solve page as a tutor (pool/gateway/tutor.py): the whole solution, or hints first.
SOLUTION, HINTS = "solution", "hints"
SOLVE_MODES = [
    (SOLUTION, "Solution: the whole answer at once"),
    (HINTS, "Hints first: the student asks for more"),
]
# Small models give the answer away unless told plainly, and told again beside the problem.
# Measured with bench/leak_rate.py on the 1.5B stand-in (20 problems, first replies): this
# wording leaked the answer in 2, one that asked for "one hint, at most two sentences, no
# calculation" in 3, and solution mode in 20 with room to finish (bench/results/leak_rate*.json).
DEFAULT_TUTOR_PROMPT = (
    "You are a patient tutor. You help a student find the answer by themselves, one step at a time. "
    "Never state the final answer or the final result unless the student asks for the full solution."
)
DEFAULT_HINTS = {
    "first": (
        "Do not solve this problem. Give me only one short hint (at most three sentences) for the first "
        "step. Do not compute anything, do not write the final answer, and do not use \\boxed."
    ),
    "another": (
        "Give me one more short hint that goes a little further than the last one. Still do not write "
        "the final answer."
    ),
    "next_step": (
        "Work out only the next step of the solution, briefly. Stop before the final result and do not "
        "write the final answer."
    ),
    "solution": "Now give the full solution, step by step, and end with the final answer.",
}


class PoolSettings(models.Model):
    """The operator's pool-wide choices. One row (pk=1), created on first use."""

    strategy = models.CharField(max_length=32, default="least_connections")
    queue_size = models.PositiveIntegerField(default=256)
    queue_timeout_s = models.FloatField(default=30.0)
    api_open = models.BooleanField(default=False, help_text="Serve /v1/ without an API key")
    prompt_general = models.TextField(default=DEFAULT_PROMPTS["general"])
    prompt_math = models.TextField(default=DEFAULT_PROMPTS["math"])
    prompt_code = models.TextField(default=DEFAULT_PROMPTS["code"])
    language_hint = models.TextField(default=DEFAULT_LANGUAGE_HINT)
    language_hint_enabled = models.BooleanField(default=True)
    solve_rpm = models.PositiveIntegerField(
        default=10, help_text="Solve-page requests per minute per address"
    )
    # The solve page's caps, so anonymous students cannot take the pool from paying platforms.
    solve_inflight_per_address = models.PositiveIntegerField(
        default=1, help_text="Solve-page answers in flight per address"
    )
    solve_max_tokens = models.PositiveIntegerField(
        default=2048, help_text="The longest answer a student may ask for, in tokens"
    )
    solve_pool_share = models.FloatField(
        default=0.5, help_text="The share of the routable members' slots that students may use at once"
    )
    # The solve page (and keyless /v1/ callers) as one tenant of the fair line.
    solve_weight = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SHARE_WEIGHT)],
        help_text="The solve page's share of a full pool, against the API keys' weights",
    )
    solve_priority = models.CharField(max_length=16, choices=PRIORITIES, default="interactive")
    # The solve page as a tutor: follow-ups within these bounds, and hints before answers.
    solve_mode = models.CharField(max_length=16, choices=SOLVE_MODES, default=SOLUTION)
    solve_max_turns = models.PositiveIntegerField(
        default=6, help_text="Questions of one conversation sent to the model; older ones are left out"
    )
    solve_max_chars = models.PositiveIntegerField(
        default=8000, help_text="Characters of one conversation sent to the model; older turns are left out"
    )
    prompt_tutor = models.TextField(default=DEFAULT_TUTOR_PROMPT)
    hint_first = models.TextField(default=DEFAULT_HINTS["first"])
    hint_another = models.TextField(default=DEFAULT_HINTS["another"])
    hint_next_step = models.TextField(default=DEFAULT_HINTS["next_step"])
    hint_solution = models.TextField(default=DEFAULT_HINTS["solution"])
    # Autoscaling: off by default; the autoscaler only changes desired state.
    autoscale_enabled = models.BooleanField(default=False)
    autoscale_min = models.PositiveIntegerField(default=1)
    autoscale_max = models.PositiveIntegerField(default=4)
    autoscale_metric = models.CharField(max_length=32, default="inflight_per_member")
    autoscale_target = models.FloatField(default=0.8)
    autoscale_cooldown_s = models.PositiveIntegerField(default=120)
    alert_webhook_url = models.URLField(blank=True)
    # Set once by the first `serve`, which creates the first members then (and only then).
    first_run_done = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "pool settings"
        verbose_name_plural = "pool settings"

    def __str__(self) -> str:
        return "pool settings"

    @classmethod
    def load(cls) -> PoolSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    def system_prompt(self, task: str) -> str:
        return {"math": self.prompt_math, "code": self.prompt_code}.get(task, self.prompt_general)
