"""Platforms' API keys: created with the raw key shown once, stored as a hash."""

from __future__ import annotations

from django.utils import timezone

from pool.models import ApiKey
from pool.models.apikey import hash_key


def apikey_create(*, name: str, rpm: int | None = None, tpm: int | None = None,
                  max_parallel: int | None = None) -> tuple[ApiKey, str]:  # fmt: skip
    """Create a key; returns the row and the raw key, which is never stored."""
    name = name.strip()
    if not name:
        raise ValueError("give the key a name (the platform it is for)")
    for label, value in (("rpm", rpm), ("tpm", tpm), ("max-parallel", max_parallel)):
        if value is not None and value < 1:
            raise ValueError(f"--{label} must be 1 or more")
    if ApiKey.objects.filter(name=name).exists():
        raise ValueError(f"a key named {name!r} already exists")
    raw = ApiKey.new_raw_key()
    key = ApiKey.objects.create(name=name, prefix=raw[:10], key_hash=hash_key(raw), rpm=rpm, tpm=tpm,
                                max_parallel=max_parallel)  # fmt: skip
    return key, raw


def apikey_revoke(*, name: str) -> None:
    updated = ApiKey.objects.filter(name=name, revoked_at=None).update(revoked_at=timezone.now())
    if not updated:
        known = ", ".join(ApiKey.objects.filter(revoked_at=None).values_list("name", flat=True)) or "none"
        raise ValueError(f"no active key named {name!r} (active keys: {known})")
