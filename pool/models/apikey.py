from __future__ import annotations

import hashlib
import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

# Fair sharing (pool/gateway/fair.py): a tenant's share of a full pool is its weight's part.
PRIORITIES = [("interactive", "interactive"), ("batch", "batch: only slots no interactive request waits for")]
MAX_SHARE_WEIGHT = 100
MAX_SAMPLES = 16  # independent answers of one request, at most (voting)


def share_weight() -> list:
    message = f"must be from 1 to {MAX_SHARE_WEIGHT}"
    return [MinValueValidator(1, message), MaxValueValidator(MAX_SHARE_WEIGHT, message)]


def at_least_one() -> MinValueValidator:
    return MinValueValidator(1, "must be 1 or more")


def quota_order_errors(per_day_field: str, per_day: int | None, per_month: int | None) -> dict[str, str]:
    """A day's quota above the month's could never be used: the rule for every tenant's quotas."""
    if per_day is not None and per_month is not None and per_day > per_month:
        return {per_day_field: "cannot be more than the month's quota (a day's above it could never be used)"}
    return {}


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    """A platform's key. Only the hash is stored; the key itself is shown once, at creation."""

    name = models.CharField(
        max_length=100,
        unique=True,
        error_messages={
            "blank": "give the key a name (the platform it is for)",
            "unique": "a key of that name exists",
        },
    )
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell keys apart")
    key_hash = models.CharField(max_length=64, unique=True)
    rpm = models.PositiveIntegerField(
        null=True, blank=True, validators=[at_least_one()], help_text="Requests per minute"
    )
    tpm = models.PositiveIntegerField(
        null=True, blank=True, validators=[at_least_one()], help_text="Tokens per minute"
    )
    max_parallel = models.PositiveIntegerField(null=True, blank=True, validators=[at_least_one()])
    weight = models.PositiveIntegerField(
        default=1,
        validators=share_weight(),
        help_text="Its share of a full pool, against other keys' weights",
    )
    priority = models.CharField(max_length=16, choices=PRIORITIES, default="interactive")
    # The answer cache (pool/gateway/answers.py): opt-in per key.
    cache = models.BooleanField(default=False, help_text="Serve repeated requests from the answer cache")
    cache_sampled = models.BooleanField(
        default=False, help_text="Also with temperature above 0 (a stored answer is one sample)"
    )
    samples = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SAMPLES)],
        help_text="Independent answers per math request unless it asks (1: no vote)",
    )
    # Quotas (pool/gateway/quotas.py): calendar day and month in the operator's time zone.
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True, validators=[at_least_one()])
    tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True, validators=[at_least_one()])
    # Each student's own limits (a student is named by the request's `user`): none is no limit.
    user_rpm = models.PositiveIntegerField(
        null=True, blank=True, validators=[at_least_one()], help_text="Requests per minute per student"
    )
    user_parallel = models.PositiveIntegerField(
        null=True, blank=True, validators=[at_least_one()], help_text="Requests in flight per student"
    )
    user_tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True, validators=[at_least_one()])
    user_tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True, validators=[at_least_one()])
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Usage counters, flushed from the gateway's memory every few seconds.
    requests = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return self.name

    def unique_error_message(self, model_class, unique_check):
        if tuple(unique_check) == ("name",):
            return ValidationError(f"a key named {self.name!r} already exists", code="unique")
        return super().unique_error_message(model_class, unique_check)

    def clean(self) -> None:
        errors = quota_order_errors("tokens_per_day", self.tokens_per_day, self.tokens_per_month)
        errors.update(
            quota_order_errors("user_tokens_per_day", self.user_tokens_per_day, self.user_tokens_per_month)
        )
        if errors:
            raise ValidationError(errors)

    @staticmethod
    def new_raw_key() -> str:
        return "va-" + secrets.token_urlsafe(32)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
