from __future__ import annotations

from django.db import models

from pool.models.job import FAILED, RUNNING, Job


class ProfileRun(Job):
    """One `pool profile`: what it planned, each point it measured, and how it ended.
    A run that did not measure everything it planned is kept, marked partial, with why."""

    NOUN = "profile"
    RUNNING = RUNNING
    DONE = "done"
    PARTIAL = "partial"
    FAILED = FAILED
    STATES = [(RUNNING, "running"), (DONE, "done"), (PARTIAL, "partial"), (FAILED, "failed")]

    state = models.CharField(max_length=16, choices=STATES, default=RUNNING)
    model_path = models.CharField(max_length=1024, blank=True)
    cores = models.PositiveIntegerField(default=1)
    gpu = models.BooleanField(default=False)
    budget_s = models.FloatField(default=300.0)
    answer_tokens = models.PositiveIntegerField(default=64, help_text="Tokens per answer while measuring")
    plan = models.JSONField(default=dict, blank=True)  # Plan.as_dict()
    # Layout.key -> done, pruned, failed: ..., not measured
    layouts = models.JSONField(default=dict, blank=True)
    points = models.JSONField(default=list, blank=True)  # one dict per Point
    progress = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"profile {self.pk} ({self.state})"
