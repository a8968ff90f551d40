"""Platforms' API keys: created with the raw key shown once, stored as a hash. Part of the
service layer: each change is recorded with who made it (pool/services/audit.py; the hash never is)."""

from __future__ import annotations

from django.utils import timezone

from pool.models import ApiKey
from pool.models.apikey import hash_key
from pool.services import audit, refused_as_action_error


def apikey_create(
    *,
    name: str,
    rpm: int | None = None,
    tpm: int | None = None,
    max_parallel: int | None = None,
    weight: int = 1,
    priority: str = "interactive",
    cache: bool = False,
    cache_sampled: bool = False,
    tokens_per_day: int | None = None,
    tokens_per_month: int | None = None,
    user_rpm: int | None = None,
    user_parallel: int | None = None,
    user_tokens_per_day: int | None = None,
    user_tokens_per_month: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key, which is never stored."""
    raw = ApiKey.new_raw_key()
    key = ApiKey(
        name=name.strip(),
        prefix=raw[:10],
        key_hash=hash_key(raw),
        rpm=rpm,
        tpm=tpm,
        max_parallel=max_parallel,
        weight=weight,
        priority=priority,
        cache=cache,
        cache_sampled=cache_sampled,
        tokens_per_day=tokens_per_day,
        tokens_per_month=tokens_per_month,
        user_rpm=user_rpm,
        user_parallel=user_parallel,
        user_tokens_per_day=user_tokens_per_day,
        user_tokens_per_month=user_tokens_per_month,
    )
    with refused_as_action_error():
        audit.save_row(key)
    return key, raw


STUDENT_LIMITS = ("user_rpm", "user_parallel", "user_tokens_per_day", "user_tokens_per_month")
UNSET = object()  # apikey_set: "leave as it is", where None means "no quota"


def apikey_set(
    *,
    name: str,
    weight: int | None = None,
    priority: str | None = None,
    cache: bool | None = None,
    cache_sampled: bool | None = None,
    tokens_per_day=UNSET,
    tokens_per_month=UNSET,
    **student_limits,
) -> ApiKey:
    """Change a key's share, cache, quotas and its limits per student (`student_limits`, by
    STUDENT_LIMITS' names; None removes one); the gateways pick it up at their next refresh.
    A quota set below what was already used refuses the key's next request at once."""
    unknown = set(student_limits) - set(STUDENT_LIMITS)
    if unknown:
        raise TypeError(f"apikey_set() got unknown limits {sorted(unknown)}")
    key = ApiKey.objects.filter(name=name).first()
    if key is None:
        known = ", ".join(ApiKey.objects.values_list("name", flat=True)) or "none"
        raise ValueError(f"no key named {name!r} (keys: {known})")
    fields = {"weight": weight, "priority": priority, "cache": cache, "cache_sampled": cache_sampled}
    changes = {k: v for k, v in fields.items() if v is not None}
    quotas = {"tokens_per_day": tokens_per_day, "tokens_per_month": tokens_per_month, **student_limits}
    for field, value in quotas.items():
        if value is not UNSET:
            changes[field] = value
    if not changes:
        raise ValueError(
            "say what to set: --weight, --priority, --cache/--no-cache, --cache-sampled/--no-cache-sampled, "
            "--tokens-per-day, --tokens-per-month, --user-rpm, --user-parallel, --user-tokens-per-day, "
            "--user-tokens-per-month"
        )
    for field, value in changes.items():
        setattr(key, field, value)
    with refused_as_action_error():
        audit.save_row(key, fields=list(changes))
    return key


def apikey_revoke(*, name: str) -> None:
    key = ApiKey.objects.filter(name=name, revoked_at=None).first()
    if key is None or not _revoke(key):
        known = ", ".join(ApiKey.objects.filter(revoked_at=None).values_list("name", flat=True)) or "none"
        raise ValueError(f"no active key named {name!r} (active keys: {known})")


def _revoke(key: ApiKey) -> int:
    with refused_as_action_error():
        return audit.update_row(key, revoked_at=timezone.now())


def apikey_delete(*, name: str) -> bool:
    """Delete a key outright (the accuracy check's own, made afresh); the trail keeps what it held."""
    key = ApiKey.objects.filter(name=name).first()
    if key is None:
        return False
    audit.delete_row(key)
    return True
