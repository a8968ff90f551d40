"""The answer cache's table: emptied by an operator (desired state: audited)."""

from __future__ import annotations

from django.db import transaction

from pool.models import CacheEntry, PoolSettings
from pool.services import audit
from pool.services.pool_settings import stored


@transaction.atomic
def empty_answer_cache() -> int:
    """The dashboard's "Empty cache": every entry goes, and every gateway's front with it (a
    new epoch, which each gateway sees at its next refresh). Returns the entries deleted."""
    deleted, _ = CacheEntry.objects.all().delete()
    row = PoolSettings.objects.select_for_update().get(pk=stored().pk)
    row.cache_epoch += 1
    audit.save_row(row, fields=["cache_epoch"], note=f"the answer cache emptied: {deleted} entries")
    return deleted
