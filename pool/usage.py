"""Usage per tenant, read for the operator: the quota each key (and the solve page) has
used this day and month, its history per day (chart and CSV), and what the answer cache
saved. Tenants are "key:<id>" and "solve" (the solve page and keyless callers), days those
of TIME_ZONE. The gateways write UsageDay (pool/gateway/usage_book.py) every few seconds."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db.models import F, Sum
from django.utils import timezone

from pool.models import ApiKey, CacheEntry, PoolSettings, StudentDay, UsageDay

SOLVE = "solve"


def key_tenant(key: ApiKey) -> str:
    return f"key:{key.pk}"


@dataclass(frozen=True)
class QuotaUse:
    period: str  # "day" or "month"
    used: int
    limit: int

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 1.0

    @property
    def percent(self) -> int:
        return round(100 * self.share)

    @property
    def warned(self) -> bool:
        return self.share >= settings.VIBEADMIN_QUOTA_WARN_AT

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit


def tokens_between(tenant: str, first: date, last: date) -> int:
    totals = UsageDay.objects.filter(tenant=tenant, day__gte=first, day__lte=last).aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens")
    )
    return (totals["p"] or 0) + (totals["c"] or 0)


def quota_use(tenant: str, per_day: int | None, per_month: int | None) -> list[QuotaUse]:
    today = timezone.localdate()
    found = []
    if per_day is not None:
        found.append(QuotaUse("day", tokens_between(tenant, today, today), per_day))
    if per_month is not None:
        found.append(QuotaUse("month", tokens_between(tenant, today.replace(day=1), today), per_month))
    return found


@dataclass(frozen=True)
class Spent:
    """Requests and tokens over some days."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


def spent(tenant: str, first: date, last: date, user: str = "") -> Spent:
    """What a tenant (or, with `user`, one student of the key `tenant`) used from `first` to `last`."""
    if user:
        rows = StudentDay.objects.filter(key_id=int(tenant.removeprefix("key:")), user=user)
    else:
        rows = UsageDay.objects.filter(tenant=tenant)
    totals = rows.filter(day__gte=first, day__lte=last).aggregate(
        r=Sum("requests"), p=Sum("prompt_tokens"), c=Sum("completion_tokens")
    )
    return Spent(totals["r"] or 0, totals["p"] or 0, totals["c"] or 0)


@dataclass(frozen=True)
class StudentUse:
    user: str
    spent: Spent


def top_students(key_id: int, first: date, last: date, *, limit: int, offset: int = 0) -> list[StudentUse]:
    """A key's students by tokens used from `first` to `last`, most first (then by name)."""
    rows = (
        StudentDay.objects.filter(key_id=key_id, day__gte=first, day__lte=last)
        .values("user")
        .annotate(r=Sum("requests"), p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
        .annotate(t=F("p") + F("c"))
        .order_by("-t", "user")[offset : offset + limit]
    )
    return [StudentUse(r["user"], Spent(r["r"], r["p"], r["c"])) for r in rows]


def students_csv(key: ApiKey) -> str:
    """Every day each student of the key used anything, for a platform's own billing."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["key", "user", "day", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "time_zone"]
    )
    for row in StudentDay.objects.filter(key=key).order_by("day", "user"):
        writer.writerow(
            [
                key.name,
                _cell(row.user),
                row.day.isoformat(),
                row.requests,
                row.prompt_tokens,
                row.completion_tokens,
                row.tokens,
                settings.TIME_ZONE,
            ]
        )
    return out.getvalue()


def _cell(text: str) -> str:
    """A name a platform chose, kept from being read as a formula by a spreadsheet."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def history(tenant: str, days: int = 31) -> list[UsageDay]:
    """The last `days` days, one row each (days without use as zeros), oldest first."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    kept = {row.day: row for row in UsageDay.objects.filter(tenant=tenant, day__gte=first)}
    return [
        kept.get(first + timedelta(days=i)) or UsageDay(tenant=tenant, day=first + timedelta(days=i))
        for i in range(days)
    ]


CSV_COLUMNS = [
    "day",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cache_hits",
    "saved_tokens",
]


def history_csv(tenant: str, name: str) -> str:
    """Every day the tenant used anything, for a platform's billing."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["tenant", *CSV_COLUMNS, "time_zone"])
    for row in UsageDay.objects.filter(tenant=tenant).order_by("day"):
        writer.writerow(
            [
                name,
                row.day.isoformat(),
                row.requests,
                row.prompt_tokens,
                row.completion_tokens,
                row.tokens,
                row.cache_hits,
                row.saved_tokens,
            ]
            + [settings.TIME_ZONE]
        )
    return out.getvalue()


@dataclass(frozen=True)
class CacheFigures:
    tenant: str
    name: str
    hits: int
    misses: int
    saved_tokens: int
    saved_s: float

    @property
    def hit_rate(self) -> str:
        asked = self.hits + self.misses
        return f"{100 * self.hits / asked:.0f}%" if asked else "–"


def cache_figures(days: int = 30) -> list[CacheFigures]:
    """Hit rate and savings per tenant over the last `days` days."""
    first = timezone.localdate() - timedelta(days=days - 1)
    names = {key_tenant(k): k.name for k in ApiKey.objects.all()} | {SOLVE: "solve page"}
    rows = (
        UsageDay.objects.filter(day__gte=first)
        .values("tenant")
        .annotate(h=Sum("cache_hits"), m=Sum("cache_misses"), t=Sum("saved_tokens"), s=Sum("saved_s"))
        .order_by("tenant")
    )
    return [
        CacheFigures(
            r["tenant"],
            names.get(r["tenant"], r["tenant"]),
            r["h"] or 0,
            r["m"] or 0,
            r["t"] or 0,
            r["s"] or 0.0,
        )
        for r in rows
        if r["h"] or r["m"]
    ]


def cache_size() -> int:
    return CacheEntry.objects.count()


def solve_quota_use() -> list[QuotaUse]:
    row = PoolSettings.load()
    return quota_use(SOLVE, row.solve_tokens_per_day, row.solve_tokens_per_month)
