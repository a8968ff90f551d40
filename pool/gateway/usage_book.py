"""Usage per tenant and day of the operator's calendar (TIME_ZONE), kept in memory on the
request's path and added to the database (UsageDay) every few seconds from a worker
thread: the keys page's chart and CSV, the quotas' starting counts, the cache panel."""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

FIELDS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_hits",
    "cache_misses",
    "saved_tokens",
    "saved_s",
)


class UsageBook:
    def __init__(self) -> None:
        self.pending: dict[tuple[str, date], list[float]] = {}

    def add(
        self,
        tenant: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        hit: bool = False,
        miss: bool = False,
        saved_tokens: int = 0,
        saved_s: float = 0.0,
    ) -> None:
        row = self.pending.setdefault((tenant, timezone.localdate()), [0, 0, 0, 0, 0, 0, 0.0])
        row[0] += 1
        row[1] += prompt_tokens
        row[2] += completion_tokens
        row[3] += hit
        row[4] += miss
        row[5] += saved_tokens
        row[6] += saved_s

    def flush(self) -> None:
        """Runs in a worker thread."""
        from pool.models import UsageDay

        pending, self.pending = self.pending, {}
        if not pending:
            return
        close_old_connections()
        for (tenant, day), row in pending.items():
            changes = {name: F(name) + value for name, value in zip(FIELDS, row, strict=True)}
            if UsageDay.objects.filter(tenant=tenant, day=day).update(**changes):
                continue
            try:
                with transaction.atomic():
                    UsageDay.objects.create(tenant=tenant, day=day, **dict(zip(FIELDS, row, strict=True)))
            except IntegrityError:  # another gateway created it a moment ago
                UsageDay.objects.filter(tenant=tenant, day=day).update(**changes)
