"""Platforms' API keys: created with the raw key shown once, stored as a hash. Part of the
service layer: each change is recorded with who made it (pool/services/audit.py; the hash never is)."""

from __future__ import annotations

from django.utils import timezone

from pool.models import ApiKey
from pool.models.apikey import MAX_SHARE_WEIGHT, PRIORITIES, hash_key
from pool.services import audit


def check_share(*, weight: int, priority: str) -> None:
    """A tenant's weight and class (fair sharing), as the CLI and forms accept them."""
    if not 1 <= weight <= MAX_SHARE_WEIGHT:
        raise ValueError(f"--weight must be from 1 to {MAX_SHARE_WEIGHT}")
    if priority not in dict(PRIORITIES):
        raise ValueError(f"--priority must be one of {', '.join(dict(PRIORITIES))}")


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
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key, which is never stored."""
    name = name.strip()
    if not name:
        raise ValueError("give the key a name (the platform it is for)")
    check_counts(rpm=rpm, tpm=tpm, max_parallel=max_parallel)
    check_quotas(tokens_per_day, tokens_per_month)
    check_share(weight=weight, priority=priority)
    if ApiKey.objects.filter(name=name).exists():
        raise ValueError(f"a key named {name!r} already exists")
    raw = ApiKey.new_raw_key()
    key = ApiKey(
        name=name,
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
    )
    audit.save(key)
    return key, raw


def check_counts(**counts: int | None) -> None:
    for label, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"--{label.replace('_', '-')} must be 1 or more")


def check_quotas(per_day: int | None, per_month: int | None) -> None:
    """Quotas in tokens; none is no quota. A day's above the month's could never be used."""
    check_counts(tokens_per_day=per_day, tokens_per_month=per_month)
    if per_day is not None and per_month is not None and per_day > per_month:
        raise ValueError("--tokens-per-day cannot be more than --tokens-per-month")


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
) -> ApiKey:
    """Change a key's share, cache and quotas; the gateways pick it up at their next refresh.
    A quota set below what was already used refuses the key's next request at once."""
    key = ApiKey.objects.filter(name=name).first()
    if key is None:
        known = ", ".join(ApiKey.objects.values_list("name", flat=True)) or "none"
        raise ValueError(f"no key named {name!r} (keys: {known})")
    fields = {"weight": weight, "priority": priority, "cache": cache, "cache_sampled": cache_sampled}
    changes = {k: v for k, v in fields.items() if v is not None}
    for quota, value in (("tokens_per_day", tokens_per_day), ("tokens_per_month", tokens_per_month)):
        if value is not UNSET:
            changes[quota] = value
    if not changes:
        raise ValueError(
            "say what to set: --weight, --priority, --cache/--no-cache, --cache-sampled/--no-cache-sampled, "
            "--tokens-per-day, --tokens-per-month"
        )
    for field, value in changes.items():
        setattr(key, field, value)
    check_share(weight=key.weight, priority=key.priority)
    check_quotas(key.tokens_per_day, key.tokens_per_month)
    audit.save(key, fields=list(changes))
    return key


def apikey_revoke(*, name: str) -> None:
    key = ApiKey.objects.filter(name=name, revoked_at=None).first()
    if key is None or not audit.update(key, revoked_at=timezone.now()):
        known = ", ".join(ApiKey.objects.filter(revoked_at=None).values_list("name", flat=True)) or "none"
        raise ValueError(f"no active key named {name!r} (active keys: {known})")
