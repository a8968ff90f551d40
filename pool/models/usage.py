from __future__ import annotations

from django.db import models


class UsageDay(models.Model):
    """A tenant's usage on one day of the operator's calendar (TIME_ZONE): the keys page's
    chart and CSV, the quotas' counts without Redis, and the cache panel's savings."""

    tenant = models.CharField(
        max_length=40, help_text="key:ID, or solve (the solve page and keyless callers)"
    )
    day = models.DateField()
    requests = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cache_hits = models.PositiveBigIntegerField(default=0)
    cache_misses = models.PositiveBigIntegerField(default=0)
    saved_tokens = models.PositiveBigIntegerField(
        default=0, help_text="Tokens that cache hits did not generate"
    )
    saved_s = models.FloatField(default=0.0, help_text="Member-seconds that cache hits did not take")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="usage_day_per_tenant")]
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.tenant} {self.day}"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class StudentDay(models.Model):
    """One student's usage of one key on one day of the operator's calendar: the student's
    quotas without Redis, /v1/usage?user=, the keys page's top students and their CSV."""

    key = models.ForeignKey("pool.ApiKey", on_delete=models.CASCADE, related_name="student_days")
    user = models.CharField(max_length=128, help_text="The platform's own name for the student")
    day = models.DateField()
    requests = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "user", "day"], name="student_day_per_key_user")
        ]
        indexes = [models.Index(fields=["key", "day"], name="student_day_key_day")]
        ordering = ["day"]

    def __str__(self) -> str:
        return f"key:{self.key_id} {self.user} {self.day}"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class QuotaWarning(models.Model):
    """The soft threshold's alert, sent once per tenant and period by whichever gateway
    inserts the row first."""

    tenant = models.CharField(max_length=40)
    period = models.CharField(max_length=16, help_text="day:YYYY-MM-DD or month:YYYY-MM")
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "period"], name="quota_warning_once")]
