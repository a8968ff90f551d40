from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

# What a rule can watch: metric -> what the dashboard calls it.
METRICS = {
    "cpu_percent": "host CPU use (%)",
    "gpu_percent": "busiest GPU's use (%)",
    "error_rate_percent": "failed requests, last minute (%)",
    "latency_increase_percent": "mean latency, last 5 min, against the hour before (% up)",
    "p95_latency_s": "p95 latency, last minute (s)",
    "queue_depth": "requests waiting for a member",
    "ready_members": "members ready to serve",
}


class AlertRule(models.Model):
    """Fire when a metric stays past a threshold for a duration."""

    ABOVE = "above"
    BELOW = "below"
    COMPARISONS = [(ABOVE, "above"), (BELOW, "below")]
    SEVERITIES = [("info", "info"), ("warning", "warning"), ("critical", "critical")]

    name = models.CharField(max_length=100, unique=True)
    metric = models.CharField(max_length=64)
    comparison = models.CharField(max_length=8, choices=COMPARISONS, default=ABOVE)
    threshold = models.FloatField()
    duration_s = models.PositiveIntegerField(default=300)
    severity = models.CharField(max_length=16, choices=SEVERITIES, default="warning")
    enabled = models.BooleanField(default=True)
    # Observed: since when the condition has held, and whether it is firing now.
    breached_since = models.DateTimeField(null=True, blank=True)
    firing = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.metric not in METRICS:
            raise ValidationError({"metric": f"choose one of {', '.join(METRICS)}"})

    def is_breached(self, value: float | None) -> bool:
        if value is None:
            return False
        return value > self.threshold if self.comparison == self.ABOVE else value < self.threshold


class AlertEvent(models.Model):
    FIRING = "firing"
    RESOLVED = "resolved"
    STATUSES = [(FIRING, "firing"), (RESOLVED, "resolved")]

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=16, choices=STATUSES)
    value = models.FloatField(null=True)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    webhook_status = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.message
