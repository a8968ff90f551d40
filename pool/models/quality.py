"""The built-in accuracy check's results: one EvalRun per `pool eval`, one EvalAnswer per
problem, kept so that a new GGUF or quantisation that answers worse shows at once."""

from __future__ import annotations

import math

from django.db import models

from pool.models.job import FAILED, RUNNING, Job

DONE, STOPPED = "done", "stopped"
RUN_STATES = [(s, s) for s in (RUNNING, DONE, STOPPED, FAILED)]
Z_95 = 1.959964


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a pass rate: honest at small counts and near 0 or 1,
    where the normal approximation's interval leaves [0, 1]."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


class EvalRun(Job):
    state = models.CharField(max_length=16, choices=RUN_STATES, default=RUNNING)
    model_name = models.CharField(max_length=200, help_text="The GGUF's file name")
    model_sha256 = models.CharField(max_length=64, blank=True)
    member = models.CharField(max_length=64, blank=True, help_text="Empty: through the gateway, any member")
    problem_set = models.CharField(max_length=32, help_text="quick or full")
    planned = models.PositiveIntegerField(default=0)
    answered = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(
        default=0, help_text="Samples answered right, of answered x samples"
    )
    completion_tokens = models.PositiveBigIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="Sum of the answers' times")
    # Voting: k samples per problem give pass@1 (all samples) and maj@k (their majority) at once.
    samples = models.PositiveSmallIntegerField(default=1)
    majority_correct = models.PositiveIntegerField(default=0)
    unanimous = models.PositiveIntegerField(default=0, help_text="Problems whose samples all gave one answer")
    unanimous_correct = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"eval {self.pk} ({self.model_name}, {self.state})"

    @property
    def sample_answers(self) -> int:
        return self.answered * self.samples

    @property
    def pass_at_1(self) -> float | None:
        return self.correct / self.sample_answers if self.answered else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.sample_answers)

    @property
    def maj_at_k(self) -> float | None:
        return self.majority_correct / self.answered if self.answered and self.samples > 1 else None

    @property
    def unanimous_right(self) -> float | None:
        """The agreement's calibration: how often a unanimous vote was right."""
        return self.unanimous_correct / self.unanimous if self.unanimous and self.samples > 1 else None

    @property
    def tokens_per_answer(self) -> float | None:
        return self.completion_tokens / self.answered if self.answered else None

    @property
    def seconds_per_answer(self) -> float | None:
        return self.seconds / self.answered if self.answered else None

    @property
    def wall_s(self) -> float | None:
        """From start to end: answers asked at once overlap, so less than `seconds`."""
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else None

    @property
    def where(self) -> str:
        return self.member or "pool"


class EvalAnswer(models.Model):
    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="answers")
    problem_id = models.CharField(max_length=32)
    kind = models.CharField(max_length=32)
    language = models.CharField(max_length=8)
    expected = models.CharField(max_length=64)
    got = models.CharField(max_length=64, blank=True)
    correct = models.BooleanField(default=False)  # the first sample's answer
    samples_correct = models.PositiveSmallIntegerField(default=0)
    votes = models.PositiveSmallIntegerField(default=0, help_text="Samples that reached the majority answer")
    majority_correct = models.BooleanField(default=False)
    completion_tokens = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]


class LeakRate(models.Model):
    """How often a mode's first reply already gave the final answer away, as
    `python -m bench.leak_rate` measured it: hints mode must stay far below solution mode.
    Loaded with `manage.py pool leak-rates FILE` (the shipped measurements by a migration)."""

    mode = models.CharField(max_length=32, help_text="The solve page's mode: hints or solution")
    leaks = models.PositiveIntegerField(help_text="First replies that contained the final answer")
    problems = models.PositiveIntegerField()
    max_tokens = models.PositiveIntegerField(help_text="The replies' length cap while measuring")
    model = models.CharField(max_length=200, help_text="The GGUF's file name")
    measured_at = models.DateTimeField()

    class Meta:
        ordering = ["-measured_at", "mode"]
        constraints = [
            models.UniqueConstraint(
                fields=["mode", "max_tokens", "model", "measured_at"], name="one_leak_rate"
            )
        ]

    def __str__(self) -> str:
        return f"{self.mode}: {self.leaks} of {self.problems}"
