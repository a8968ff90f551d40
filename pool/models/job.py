"""What every job's row holds: a run an operator starts (the accuracy check, a layout
profile) that runs in a process of its own. pool/services/jobs.py runs the lifecycle."""

from __future__ import annotations

from django.db import models

RUNNING, FAILED = "running", "failed"


class Job(models.Model):
    NOUN = "run"  # what its messages call it
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    stop_requested = models.BooleanField(default=False)
    # The process running it, so that a run whose process died is not "running" forever.
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    message = models.TextField(blank=True, help_text="Why it ended as it did")

    class Meta:
        abstract = True

    @property
    def is_running(self) -> bool:
        return self.state == RUNNING  # type: ignore[attr-defined]  # each job's own states
