"""Token quotas per calendar day and month (in the operator's TIME_ZONE), for each key and
for the solve page, so a platform can be sold "2 million tokens a month".

A request reserves, when admitted, the most it may use (its prompt, estimated, plus
max_tokens) and is settled to what it used when it ends, as tokens per minute are
(pool/gateway/admission.py). A tenant is refused once what it used and holds reaches
the quota, so it can pass a quota by at most one request's reservation; a refused request
reserves nothing. Hits of the answer cache use none.

Counters: in this process (seeded once per period from the usage kept in the database,
so a restart keeps the count) or, with REDIS_URL, in Redis, checked and taken in one Lua
script so that gateways count each request exactly once. A counter Redis does not hold
(new, or lost with a Redis restarted without persistence) is seeded from the database as
it is at that moment, never from a figure read earlier: usage since then would be
forgotten. If Redis goes away the quota fails open: requests pass, the log and the
dashboard say so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Sum
from django.utils import timezone
from redis.exceptions import RedisError

from pool import webhook
from pool.gateway import errors
from pool.gateway.tasks import spawn
from pool.gateway.types import Reservation

log = logging.getLogger("pool.gateway")
PREFIX = "vibeadmin:quota:"
COUNTER_TTL_S = 40 * 24 * 3600  # a month's counter outlives its month, then goes


@dataclass(frozen=True, slots=True)
class Quota:
    tenant: str  # "key:<id>" or "solve"
    name: str  # for messages
    per_day: int | None
    per_month: int | None
    user: str = ""  # a student of the key (its own quota within the key's); "": the tenant's own
    code: str = "quota_exceeded"  # the 429's code

    @property
    def any(self) -> bool:
        return self.per_day is not None or self.per_month is not None


@dataclass(frozen=True, slots=True)
class Period:
    name: str  # day:2026-12-03 or month:2026-12
    first_day: date
    resets_at: datetime  # aware, in TIME_ZONE
    limit: int


def periods(quota: Quota, now: datetime | None = None) -> list[Period]:
    local = timezone.localtime(now)
    today = local.date()
    found = []
    if quota.per_day is not None:
        midnight = timezone.make_aware(datetime.combine(today + timedelta(days=1), datetime.min.time()))
        found.append(Period(f"day:{today.isoformat()}", today, midnight, quota.per_day))
    if quota.per_month is not None:
        first = today.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        resets = timezone.make_aware(datetime.combine(following, datetime.min.time()))
        found.append(Period(f"month:{today:%Y-%m}", first, resets, quota.per_month))
    return found


def exceeded(quota: Quota, period: Period, used: int) -> errors.ApiError:
    kind = "daily" if period.name.startswith("day:") else "monthly"
    wait = max(1.0, period.resets_at.timestamp() - time.time())
    when = period.resets_at.strftime("%Y-%m-%d %H:%M %Z")
    return errors.rate_limited(
        f"{quota.name} has used its {kind} quota of {period.limit} tokens ({used} used); it resets at {when}",
        code=quota.code,
        retry_after=wait,
    )


def student_quota(key, user: str) -> Quota | None:
    """The key's quota for each student, as `user`'s own (None: no student, or no such quota)."""
    if not user or (key.user_tokens_per_day is None and key.user_tokens_per_month is None):
        return None
    return Quota(
        f"key:{key.id}",
        f"the student {user!r} of the key {key.name!r}",
        key.user_tokens_per_day,
        key.user_tokens_per_month,
        user=user,
        code="user_quota_exceeded",
    )


def used_in(tenant: str, first_day: date, last_day: date, user: str = "") -> int:
    """Tokens the database has counted for `tenant` (or its student `user`) from `first_day`
    to `last_day` (a thread)."""
    from pool.models import StudentDay, UsageDay

    close_old_connections()
    if user:
        rows = StudentDay.objects.filter(key_id=int(tenant.removeprefix("key:")), user=user)
    else:
        rows = UsageDay.objects.filter(tenant=tenant)
    totals = rows.filter(day__gte=first_day, day__lte=last_day).aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens")
    )
    return (totals["p"] or 0) + (totals["c"] or 0)


class Quotas:
    """The counters' common part: seeding from the database and the soft threshold."""

    def __init__(self) -> None:
        self.seeds: dict[str, int] = {}  # counter -> tokens the database held when first seen
        self.warned: set[str] = set()
        self.failing = ""
        self.current: set[str] = set()  # this day's and month's periods: counters of others go

    async def seed(self, quota: Quota, found: list[Period]) -> list[int]:
        self.forget_past(found)
        missing = [p for p in found if counter(quota, p) not in self.seeds]
        for period in missing:
            today = timezone.localdate()
            self.seeds[counter(quota, period)] = await sync_to_async(used_in, thread_sensitive=False)(
                quota.tenant, period.first_day, today, quota.user
            )
        return [self.seeds[counter(quota, p)] for p in found]

    async def reserve(self, quota: Quota, amount: int) -> Reservation | None:
        if not quota.any:
            return None
        found = periods(quota)
        seeds = await self.seed(quota, found)
        try:
            levels = await self.take(quota, found, seeds, amount)
        except RedisError as exc:
            self.failing = f"quotas are not enforced: Redis is unreachable ({exc})"[:300]
            log.warning("quota for %s not checked, Redis is unreachable: %s", quota.tenant, exc)
            return Reservation((), 0, held=False)
        self.failing = ""
        for period, level in zip(found, levels, strict=True):
            # The soft threshold is the operator's alert about a tenant, not one per student.
            if not quota.user and level >= settings.VIBEADMIN_QUOTA_WARN_AT * period.limit:
                self.warn(quota, period, level)
        return Reservation(tuple(counter(quota, p) for p in found), amount)

    def warn(self, quota: Quota, period: Period, level: int) -> None:
        name = counter(quota, period)
        if name not in self.warned:
            self.warned.add(name)
            spawn(sync_to_async(send_warning, thread_sensitive=False)(quota, period, level))

    def forget_past(self, found: list[Period]) -> None:
        """When a new day or month begins, the counters of those gone are dropped: a
        platform's students, one counter each, would otherwise pile up for as long as the
        gateway runs."""
        names = {p.name for p in found}
        if names <= self.current:
            return
        for name in names:
            kind = name.split(":")[0]
            self.current = {c for c in self.current if not c.startswith(kind + ":")} | {name}
        for table in self.tables():
            for gone in [n for n in table if n.split("|")[1] not in self.current]:
                del table[gone]
        self.warned = {n for n in self.warned if n.split("|")[1] in self.current}

    def tables(self) -> list[dict[str, int]]:
        return [self.seeds]

    async def take(self, quota: Quota, found: list[Period], seeds: list[int], amount: int) -> list[int]:
        raise NotImplementedError

    def settle(self, reservation: Reservation | None, used: int) -> None:
        raise NotImplementedError


def counter(quota: Quota, period: Period) -> str:
    return (
        f"{quota.tenant}|{period.name}"
        if not quota.user
        else f"{quota.tenant}|{period.name}|user:{quota.user}"
    )


class LocalQuotas(Quotas):
    def __init__(self) -> None:
        super().__init__()
        self.levels: dict[str, int] = {}

    def tables(self) -> list[dict[str, int]]:
        return [self.seeds, self.levels]

    async def take(self, quota: Quota, found: list[Period], seeds: list[int], amount: int) -> list[int]:
        names = [counter(quota, p) for p in found]
        levels = [self.levels.setdefault(n, s) for n, s in zip(names, seeds, strict=True)]
        for period, level in zip(found, levels, strict=True):
            if level >= period.limit:
                raise exceeded(quota, period, level)
        for name in names:
            self.levels[name] += amount
        return [self.levels[n] for n in names]

    def settle(self, reservation: Reservation | None, used: int) -> None:
        if reservation is None or not reservation.held:
            return
        for name in reservation.counters:
            if name in self.levels:
                self.levels[name] += used - reservation.amount


# KEYS: the counters. ARGV: amount, ttl, then each counter's limit and seed (-1: not read).
# Returns {0, levels...} when taken, {i, level} when KEYS[i] is at its limit, or {-1} when
# a counter is missing and its seed was not read: read it now and call again.
TAKE = """
local amount, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, #KEYS do
  if tonumber(ARGV[2 * i + 2]) < 0 then
    if redis.call('EXISTS', KEYS[i]) == 0 then return {-1} end
  else
    redis.call('SET', KEYS[i], ARGV[2 * i + 2], 'NX', 'EX', ttl)
  end
end
for i = 1, #KEYS do
  local level = tonumber(redis.call('GET', KEYS[i]))
  if level >= tonumber(ARGV[2 * i + 1]) then return {i, level} end
end
local levels = {0}
for i = 1, #KEYS do levels[i + 1] = redis.call('INCRBY', KEYS[i], amount) end
return levels
"""


# KEYS: the counters; ARGV[1]: the change. A counter Redis lost is not made again from a
# settlement alone (it would start near zero, or below): the next take seeds it whole.
SETTLE = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[1]) end
end
return 0
"""


class RedisQuotas(Quotas):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._clients: dict[int, aioredis.Redis] = {}

    def client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        current = self._clients.get(id(loop))
        if current is None:
            # Generous: a busy Redis must not fail the quota open; one that is gone fails at connect.
            current = self._clients[id(loop)] = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=2.0, socket_timeout=10.0
            )
        return current

    async def seed(self, quota: Quota, found: list[Period]) -> list[int]:
        return [-1] * len(found)  # read only when Redis lacks a counter (take)

    async def take(self, quota: Quota, found: list[Period], seeds: list[int], amount: int) -> list[int]:
        keys = [PREFIX + counter(quota, p) for p in found]
        result = await self.eval_take(keys, found, seeds, amount)
        if int(result[0]) == -1:
            today = timezone.localdate()
            fresh = [
                await sync_to_async(used_in, thread_sensitive=False)(
                    quota.tenant, p.first_day, today, quota.user
                )
                for p in found
            ]
            result = await self.eval_take(keys, found, fresh, amount)
        if result[0]:
            index = int(result[0]) - 1
            raise exceeded(quota, found[index], int(result[1]))
        return [int(level) for level in result[1:]]

    async def eval_take(self, keys: list[str], found: list[Period], seeds: list[int], amount: int) -> list:
        args: list[int] = [amount, COUNTER_TTL_S]
        for period, seed in zip(found, seeds, strict=True):
            args += [period.limit, seed]
        return await self.client().eval(TAKE, len(keys), *keys, *args)

    def settle(self, reservation: Reservation | None, used: int) -> None:
        if reservation is None or not reservation.held or used == reservation.amount:
            return
        spawn(self._settle([PREFIX + c for c in reservation.counters], used - reservation.amount))

    async def _settle(self, keys: list[str], change: int) -> None:
        try:
            await self.client().eval(SETTLE, len(keys), *keys, change)
        except RedisError as exc:
            log.warning("could not settle a quota in Redis: %s", exc)


def make_quotas() -> Quotas:
    return RedisQuotas(settings.REDIS_URL) if settings.REDIS_URL else LocalQuotas()


# --- the soft threshold ---------------------------------------------------------------------


def send_warning(quota: Quota, period: Period, level: int) -> bool:
    """Tell the alert webhook once per tenant and period, whichever gateway gets here first
    (the row's unique constraint decides). Returns whether this call sent it."""
    from pool.models import PoolSettings
    from pool.services.usage import claim_quota_warning

    close_old_connections()
    if not claim_quota_warning(quota.tenant, period.name):
        return False
    share = level / period.limit
    message = f"{quota.name} has used {share:.0%} of its {period.name.split(':')[0]}ly quota of {period.limit} tokens"
    log.warning("quota: %s", message)
    url = PoolSettings.load().alert_webhook_url
    if url:
        post_alert(url, quota, period, message)
    return True


def post_alert(url: str, quota: Quota, period: Period, message: str) -> str:
    """The soft threshold as an alert, sent as the alert rules send theirs."""
    alert = webhook.Alert(
        name="QuotaSoftLimit",
        status=webhook.FIRING,
        severity="warning",
        summary=message,
        starts_at=datetime.now(UTC),
        labels={"tenant": quota.name},
        annotations={"period": period.name},
    )
    return webhook.send(url, alert)
