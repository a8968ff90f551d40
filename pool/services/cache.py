"""The answer cache's table: emptied by an operator (desired state: audited), and the
entries the gateways store, count and drop (observed state: the gateway's answer store
keeps them in memory in front of this table)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F

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


def store_entry(key: str, fields: dict) -> None:
    """One statement at a time: SQLite cannot turn a transaction that read into one that
    writes while another writer holds the lock (update_or_create did, and failed at once)."""
    if CacheEntry.objects.filter(key=key).update(**fields):
        return
    try:
        CacheEntry.objects.create(key=key, **fields)
    except IntegrityError:  # another gateway stored the same answer a moment ago
        CacheEntry.objects.filter(key=key).update(**fields)


def add_hits(touched: dict[str, int], now: datetime) -> None:
    for key, hits in touched.items():
        CacheEntry.objects.filter(key=key).update(hits=F("hits") + hits, used_at=now)


def drop_expired(created_before: datetime) -> None:
    CacheEntry.objects.filter(created_at__lt=created_before).delete()


def trim(limit: int) -> None:
    """Beyond `limit` entries, the least recently used go."""
    if CacheEntry.objects.count() > limit:
        keep = CacheEntry.objects.order_by("-used_at").values_list("used_at", flat=True)[limit : limit + 1]
        if keep:
            CacheEntry.objects.filter(used_at__lte=keep[0]).delete()


def drop_entry(key: str) -> None:
    CacheEntry.objects.filter(key=key).delete()


def keep_only_models(model_sha256s: Iterable[str]) -> int:
    """Entries of any other model file go; returns how many."""
    deleted, _ = CacheEntry.objects.exclude(model_sha256__in=list(model_sha256s)).delete()
    return deleted
