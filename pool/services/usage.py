"""What the gateways count (observed state, unaudited): each tenant's use per day, each
key's running totals, and the one quota warning per tenant and period. The gateways keep
the counts in memory on the request's path and add them here from a worker thread."""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone

from pool.models import ApiKey, QuotaWarning, StudentDay, UsageDay


def add_usage_day(tenant: str, day: date, counts: dict[str, float]) -> None:
    """Add `counts` (requests, tokens, cache hits, ...) to the tenant's row for `day`."""
    _add_counts(UsageDay, {"tenant": tenant, "day": day}, counts)


def add_student_day(key_id: int, user: str, day: date, counts: dict[str, int]) -> None:
    """The same for one student of a key (a key deleted meanwhile takes its rows with it)."""
    _add_counts(StudentDay, {"key_id": key_id, "user": user, "day": day}, counts)


def _add_counts(model: type[models.Model], row: dict, counts: dict) -> None:
    changes = {name: F(name) + value for name, value in counts.items()}
    if model._default_manager.filter(**row).update(**changes):
        return
    try:
        with transaction.atomic():
            model._default_manager.create(**row, **counts)
    except IntegrityError:  # another gateway created it a moment ago, or the key is gone
        model._default_manager.filter(**row).update(**changes)


def add_key_usage(key_id: int, *, requests: int, prompt: int, completion: int, errors: int) -> None:
    ApiKey.objects.filter(pk=key_id).update(
        requests=F("requests") + requests,
        prompt_tokens=F("prompt_tokens") + prompt,
        completion_tokens=F("completion_tokens") + completion,
        errors=F("errors") + errors,
        last_used_at=timezone.now(),
    )


def claim_quota_warning(tenant: str, period: str) -> bool:
    """True for the one gateway that gets to warn about this tenant's period (the row's
    unique constraint decides)."""
    try:
        with transaction.atomic():
            QuotaWarning.objects.create(tenant=tenant, period=period)
    except IntegrityError:
        return False
    return True
