"""Usage per tenant and day of the operator's calendar (TIME_ZONE), kept in memory on the
request's path and added to the database (UsageDay) every few seconds from a worker
thread: the keys page's chart and CSV, the quotas' starting counts, the cache panel."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

from django.db import close_old_connections
from django.utils import timezone

from pool.services.usage import add_usage_day

FIELDS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_hits",
    "cache_misses",
    "saved_tokens",
    "saved_s",
)


class Today:
    """Today's date in the operator's time zone, worked out again only once the day (or at
    the latest an hour, so that a DST change at midnight cannot keep a wrong day long) has
    passed: `timezone.localdate()` reads the active zone through asgiref's Local, which is
    not free on the event loop, and every request asks."""

    def __init__(self) -> None:
        self.day = date.min
        self.until = 0.0  # time.time() at which to work it out again

    def __call__(self) -> date:
        now = time.time()
        if now >= self.until:
            local = timezone.localtime()
            self.day = local.date()
            midnight = timezone.make_aware(
                datetime.combine(self.day + timedelta(days=1), datetime.min.time())
            )
            self.until = min(midnight.timestamp(), now + 3600)
        return self.day


class UsageBook:
    def __init__(self) -> None:
        self.pending: dict[tuple[str, date], list[float]] = {}
        self.today = Today()

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
        row = self.pending.setdefault((tenant, self.today()), [0, 0, 0, 0, 0, 0, 0.0])
        row[0] += 1
        row[1] += prompt_tokens
        row[2] += completion_tokens
        row[3] += hit
        row[4] += miss
        row[5] += saved_tokens
        row[6] += saved_s

    def flush(self) -> None:
        """Runs in a worker thread."""
        pending, self.pending = self.pending, {}
        if not pending:
            return
        close_old_connections()
        for (tenant, day), row in pending.items():
            add_usage_day(tenant, day, dict(zip(FIELDS, row, strict=True)))
