from __future__ import annotations

from django.db import models


class ProfileRun(models.Model):
    """One `pool profile`: what it planned, each point it measured, and how it ended.
    A run that did not measure everything it planned is kept, marked partial, with why."""

    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    STATES = [(RUNNING, "running"), (DONE, "done"), (PARTIAL, "partial"), (FAILED, "failed")]

    state = models.CharField(max_length=16, choices=STATES, default=RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
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
    note = models.CharField(max_length=500, blank=True, help_text="Why it ended as it did")
    pid = models.IntegerField(null=True, blank=True)
    stop_requested = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"profile {self.pk} ({self.state})"

    @property
    def is_running(self) -> bool:
        return self.state == self.RUNNING
