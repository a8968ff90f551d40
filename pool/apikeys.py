"""Platforms' API keys: created with the raw key shown once, stored as a hash. Part of the
service layer: each change is recorded with who made it (pool/audit.py; the hash never is)."""

from __future__ import annotations

from django.utils import timezone

from pool import audit
from pool.models import ApiKey
from pool.models.apikey import MAX_SHARE_WEIGHT, PRIORITIES, hash_key


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
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the raw key, which is never stored."""
    name = name.strip()
    if not name:
        raise ValueError("give the key a name (the platform it is for)")
    for label, value in (("rpm", rpm), ("tpm", tpm), ("max-parallel", max_parallel)):
        if value is not None and value < 1:
            raise ValueError(f"--{label} must be 1 or more")
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
    )
    audit.save(key)
    return key, raw


def apikey_set_share(*, name: str, weight: int | None = None, priority: str | None = None) -> ApiKey:
    """Change a key's weight and/or class; the gateways pick it up at their next refresh."""
    key = ApiKey.objects.filter(name=name).first()
    if key is None:
        known = ", ".join(ApiKey.objects.values_list("name", flat=True)) or "none"
        raise ValueError(f"no key named {name!r} (keys: {known})")
    if weight is None and priority is None:
        raise ValueError("say what to set: --weight N and/or --priority interactive|batch")
    key.weight = key.weight if weight is None else weight
    key.priority = key.priority if priority is None else priority
    check_share(weight=key.weight, priority=key.priority)
    audit.save(key, fields=["weight", "priority"])
    return key


def apikey_revoke(*, name: str) -> None:
    key = ApiKey.objects.filter(name=name, revoked_at=None).first()
    if key is None or not audit.update(key, revoked_at=timezone.now()):
        known = ", ".join(ApiKey.objects.filter(revoked_at=None).values_list("name", flat=True)) or "none"
        raise ValueError(f"no active key named {name!r} (active keys: {known})")
