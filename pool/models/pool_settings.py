from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from pool.models import roles
from pool.models.apikey import MAX_SAMPLES, MAX_SHARE_WEIGHT, PRIORITIES, quota_order_errors
from pool.models.apikey import at_least_one as at_least_one_token

DEFAULT_PROMPTS = {
    "general": "You are a helpful assistant.",
    "math": "You are a math assistant. Reason step by step and put the final answer in \\boxed{}.",
    "code": "You are a programming assistant.",
}
DEFAULT_LANGUAGE_HINT = "Please reason step by step and give your answer in English."
# The routing strategies by name: the gateway implements each (pool/gateway/strategies.py);
# the dashboard, the CLI and the service layer offer and check these names.
STRATEGIES = (
    "round_robin",
    "least_connections",
    "weighted_round_robin",
    "ip_hash",
    "power_of_two",
    "peak_ewma",
    "least_work",
)


# What the autoscaler can scale on (pool/loops/autoscale.py measures each).
AUTOSCALE_TARGETS = [
    ("inflight_per_member", "requests in flight or waiting, per member"),
    ("queue_depth", "requests waiting in the queue"),
]


def at_least_one(message: str) -> MinValueValidator:
    """A count the pool needs at least one of (a queue place, a request, a token)."""
    return MinValueValidator(1, message=message)


def positive(value: float) -> None:
    if not value > 0:
        raise ValidationError("the target must be above 0")


def share(value: float) -> None:
    if not 0 < value <= 1:
        raise ValidationError("a share above 0 and at most 1 (the whole pool)")


def deadline(value: float) -> None:
    if not 0 < value <= 3600:
        raise ValidationError("a deadline between 0 and 3600 seconds")


def at_most_max_members(value: int) -> None:
    if value > settings.VIBEADMIN_MAX_MEMBERS:
        raise ValidationError(f"at most {settings.VIBEADMIN_MAX_MEMBERS} (VIBEADMIN_MAX_MEMBERS)")


# VibeThinker-1.5B's model card recommends temperature 0.6 (or 1.0), top_p 0.95, top_k -1 and
# up to 40,960 new tokens, one recommendation for its math and code. Every task starts from it,
# but max_tokens starts empty (VIBEADMIN_DEFAULT_MAX_TOKENS): 40,960 is more than a member's
# context and than a CPU pool can answer in a student's patience.
CARD_TEMPERATURE = 0.6
CARD_TOP_P = 0.95
TASKS = ("general", "math", "code")


def _temperature(task: str) -> models.FloatField:
    return models.FloatField(
        default=CARD_TEMPERATURE, help_text=f"{task}: temperature when the client sends none"
    )


def _top_p(task: str) -> models.FloatField:
    return models.FloatField(default=CARD_TOP_P, help_text=f"{task}: top_p when the client sends none")


def _max_tokens(task: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=f"{task}: max_tokens when the client sends none; empty: VIBEADMIN_DEFAULT_MAX_TOKENS",
    )


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
    """The operator's pool-wide choices. One row (pk=1), saved at the first change. Its rules are
    here (field validators and `clean()`), so the dashboard, the command line and the
    autoscaler check a change alike (pool/services/members.py saves it, pool/services/audit.py records it)."""

    strategy = models.CharField(
        max_length=32,
        default="least_connections",
        choices=[(name, name.replace("_", " ")) for name in STRATEGIES],
    )
    queue_size = models.PositiveIntegerField(
        default=256, validators=[at_least_one("the queue must hold at least one request")]
    )
    queue_timeout_s = models.FloatField(default=30.0, validators=[deadline])
    api_open = models.BooleanField(default=False, help_text="Serve /v1/ without an API key")
    prompt_general = models.TextField(default=DEFAULT_PROMPTS["general"])
    prompt_math = models.TextField(default=DEFAULT_PROMPTS["math"])
    prompt_code = models.TextField(default=DEFAULT_PROMPTS["code"])
    language_hint = models.TextField(default=DEFAULT_LANGUAGE_HINT)
    language_hint_enabled = models.BooleanField(default=True)
    # The operator's sampling defaults per task; a client's own values win (within the caps).
    general_temperature = _temperature("general")
    general_top_p = _top_p("general")
    general_max_tokens = _max_tokens("general")
    math_temperature = _temperature("math")
    math_top_p = _top_p("math")
    math_max_tokens = _max_tokens("math")
    code_temperature = _temperature("code")
    code_top_p = _top_p("code")
    code_max_tokens = _max_tokens("code")
    solve_rpm = models.PositiveIntegerField(
        default=10,
        validators=[at_least_one("let each address send at least one problem a minute")],
        help_text="Solve-page requests per minute per address",
    )
    # The solve page's caps, so anonymous students cannot take the pool from paying platforms.
    solve_inflight_per_address = models.PositiveIntegerField(
        default=1,
        validators=[at_least_one("let each address have at least one answer in flight")],
        help_text="Solve-page answers in flight per address",
    )
    solve_max_tokens = models.PositiveIntegerField(
        default=2048,
        validators=[at_least_one("let students ask for at least one token")],
        help_text="The longest answer a student may ask for, in tokens",
    )
    solve_pool_share = models.FloatField(
        default=0.5,
        validators=[share],
        help_text="The share of the routable members' slots that students may use at once",
    )
    # The solve page (and keyless /v1/ callers) as one tenant of the fair line.
    solve_weight = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SHARE_WEIGHT)],
        help_text="The solve page's share of a full pool, against the API keys' weights",
    )
    solve_priority = models.CharField(max_length=16, choices=PRIORITIES, default="interactive")
    # The solve page's answer cache and quotas (the students as one tenant).
    solve_cache = models.BooleanField(default=True, help_text="Serve repeated problems from the answer cache")
    solve_cache_sampled = models.BooleanField(
        default=True, help_text="Also with temperature above 0 (a stored answer is one sample)"
    )
    solve_tokens_per_day = models.PositiveBigIntegerField(
        null=True, blank=True, validators=[at_least_one_token()]
    )
    solve_tokens_per_month = models.PositiveBigIntegerField(
        null=True, blank=True, validators=[at_least_one_token()]
    )
    # Voting (pool/gateway/voting.py): independent answers whose majority final answer is shown.
    max_samples = models.PositiveSmallIntegerField(
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SAMPLES)],
        help_text="The most independent answers one request may ask for (vibeadmin.samples)",
    )
    solve_samples = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SAMPLES)],
        help_text="Independent answers per math problem on the solve page (1: no vote)",
    )
    # Raised by "Empty cache": every gateway drops its in-memory entries when it sees it change.
    cache_epoch = models.PositiveIntegerField(default=0)
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
    autoscale_max = models.PositiveIntegerField(default=4, validators=[at_most_max_members])
    autoscale_metric = models.CharField(
        max_length=32, default="inflight_per_member", choices=AUTOSCALE_TARGETS
    )
    autoscale_target = models.FloatField(default=0.8, validators=[positive])
    autoscale_cooldown_s = models.PositiveIntegerField(default=120)
    alert_webhook_url = models.URLField(blank=True)
    # The model the alias `vibethinker` reaches; a rollout moves it (pool/rollouts/).
    primary_model = models.ForeignKey(
        "pool.Model", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A canary's gate asks at most this many problems of each side before it must decide.
    rollout_gate_max_problems = models.PositiveIntegerField(
        default=40, validators=[MinValueValidator(6), MaxValueValidator(200)]
    )
    # Set once by the first `serve`, which creates the first members then (and only then).
    first_run_done = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "pool settings"
        verbose_name_plural = "pool settings"
        # The dashboard's roles (pool/models/roles.py) are groups holding these.
        permissions = roles.PERMISSIONS

    def __str__(self) -> str:
        return "pool settings"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.autoscale_min > self.autoscale_max:
            errors["autoscale_max"] = "must be at least the fewest members"
        for task in TASKS:
            errors.update(self._sampling_errors(task))
        if self.solve_max_turns is not None and self.solve_max_turns < 1:
            errors["solve_max_turns"] = "let a conversation send at least its question"
        if self.solve_max_chars is not None and self.solve_max_chars < 1:
            errors["solve_max_chars"] = "let a conversation send at least one character"
        errors.update(
            quota_order_errors("solve_tokens_per_day", self.solve_tokens_per_day, self.solve_tokens_per_month)
        )
        if errors:
            raise ValidationError(errors)

    def _sampling_errors(self, task: str) -> dict[str, str]:
        """The same bounds the API holds a client's values to, so a default never fails there.
        VIBEADMIN_MAX_TOKENS is a setting, so this is a rule of `clean()`, not a field's."""
        temperature, top_p, max_tokens = self.sampling(task)
        errors = {}
        if temperature is not None and not 0 <= temperature <= 2:
            errors[f"{task}_temperature"] = "a temperature from 0 to 2"
        if top_p is not None and not 0 < top_p <= 1:
            errors[f"{task}_top_p"] = "a top_p above 0 and at most 1"
        if max_tokens is not None and not 1 <= max_tokens <= settings.VIBEADMIN_MAX_TOKENS:
            errors[f"{task}_max_tokens"] = (
                f"from 1 to {settings.VIBEADMIN_MAX_TOKENS} tokens (VIBEADMIN_MAX_TOKENS), or empty"
            )
        return errors

    @classmethod
    def load(cls) -> PoolSettings:
        """The stored row, or the defaults (unsaved) before anyone has changed a setting:
        reading never writes; the service layer saves the row (pool/services/pool_settings.py)."""
        return cls.objects.select_related("primary_model").filter(pk=1).first() or cls(pk=1)

    def sampling(self, task: str) -> tuple[float, float, int | None]:
        """The operator's (temperature, top_p, max_tokens) for a task."""
        return tuple(getattr(self, f"{task}_{name}") for name in ("temperature", "top_p", "max_tokens"))  # type: ignore[return-value]
