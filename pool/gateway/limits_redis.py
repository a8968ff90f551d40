"""The limits' counters in Redis, so that they hold across gateway processes.

A budget is a hash (level, when); a cap is a sorted set of leases scored by when they
expire, renewed every few seconds by the gateway that holds them, so a gateway that
crashes frees its places within VIBEADMIN_LEASE_S. Admitting checks and takes everything
in one Lua script: two gateways can never both take a key's last token or place.
Hosts' clocks must agree (NTP), as for the in-flight slots' leases.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping

import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

from pool.gateway.leases import renew_forever
from pool.gateway.limits import MINUTE_S, NOTHING, Budget, Cap, Pass, Refused
from pool.gateway.tasks import spawn, stopping

log = logging.getLogger("pool.gateway")
PREFIX = "vibeadmin:limit:"
BUDGET_TTL_S = int(2 * MINUTE_S)  # idle that long, a budget is full again: let it go

# KEYS: the budgets' hashes, then the caps' lease sets. ARGV: now, the number of budgets,
# each budget's per_minute and amount, each cap's most, the lease, its expiry, the sets'
# ttl (ms), the budgets' ttl (s). Returns {0} admitted, or {i, seconds}: KEYS[i] refused.
ADMIT = """
local now, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local after = 2 * n + 2 + (#KEYS - n)
local levels = {}
for i = 1, n do
  local rate, amount = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  local state = redis.call('HMGET', KEYS[i], 'level', 'at')
  local level = rate
  if state[1] then level = math.min(rate, tonumber(state[1]) + (now - tonumber(state[2])) * rate / 60) end
  if level < amount then return {i, tostring((amount - level) * 60 / math.max(rate, 1))} end
  levels[i] = level - amount
end
for i = n + 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[n + 2 + i]) then return {i, '1'} end
end
for i = 1, n do
  redis.call('HSET', KEYS[i], 'level', tostring(levels[i]), 'at', ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[after + 4])
end
for i = n + 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[after + 2], ARGV[after + 1])
  redis.call('PEXPIRE', KEYS[i], ARGV[after + 3])
end
return {0}
"""

# KEYS: the budgets to correct, then the caps' lease sets. ARGV: now, the number of
# budgets, each one's per_minute and what it gets back (negative: the excess used), the
# lease, the budgets' ttl (s).
SETTLE = """
local now, n = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, n do
  local rate, back = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  local state = redis.call('HMGET', KEYS[i], 'level', 'at')
  local level = rate
  if state[1] then level = math.min(rate, tonumber(state[1]) + (now - tonumber(state[2])) * rate / 60) end
  redis.call('HSET', KEYS[i], 'level', tostring(math.min(rate, level + back)), 'at', ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2 * n + 4])
end
for i = n + 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[2 * n + 3])
end
return 0
"""


class RedisLimits:
    def __init__(self, url: str) -> None:
        self.url = url
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.held: dict[str, list[str]] = {}  # lease -> the cap sets it is in, renewed while held
        self._clients: dict[int, aioredis.Redis] = {}
        self._renewers: dict[int, asyncio.Task] = {}

    @property
    def lease_s(self) -> float:
        return settings.VIBEADMIN_LEASE_S

    def client(self) -> aioredis.Redis:
        """One client per event loop (tests run several loops in one process), each with its
        task renewing the leases."""
        loop = asyncio.get_running_loop()
        current = self._clients.get(id(loop))
        if current is None:
            current = self._clients[id(loop)] = aioredis.Redis.from_url(self.url)
        renewer = self._renewers.get(id(loop))
        if (renewer is None or renewer.done()) and not stopping():  # see SharedSlots.client
            self._renewers[id(loop)] = loop.create_task(
                renew_forever(self.client, self.held, lambda: self.lease_s)
            )
        return current

    async def admit(self, budgets: tuple[Budget, ...], caps: tuple[Cap, ...]) -> Pass:
        if not (budgets or caps):
            return NOTHING
        now = time.time()
        lease = f"{self.owner}:{uuid.uuid4().hex[:10]}" if caps else ""
        keys = [PREFIX + b.name for b in budgets] + [PREFIX + "held:" + c.name for c in caps]
        args: list[float | int | str] = [repr(now), len(budgets)]
        for budget in budgets:
            args += [budget.per_minute, budget.amount]
        args += [cap.most for cap in caps]
        args += [lease, repr(now + self.lease_s), int(self.lease_s * 2000), BUDGET_TTL_S]
        refused = await self.client().eval(ADMIT, len(keys), *keys, *args)
        if refused[0]:
            index = int(refused[0]) - 1
            limit = budgets[index] if index < len(budgets) else caps[index - len(budgets)]
            raise Refused(limit, float(refused[1]))
        if caps:
            self.held[lease] = keys[len(budgets) :]
        return Pass(budgets, caps, lease)

    def settle(self, taken: Pass, used: Mapping[str, int]) -> None:
        corrected = [b for b in taken.budgets if b.name in used and used[b.name] != b.amount]
        sets = self.held.pop(taken.lease, []) if taken.lease else []
        if not (corrected or sets):
            return
        args: list[float | int | str] = [repr(time.time()), len(corrected)]
        for budget in corrected:
            args += [budget.per_minute, budget.amount - used[budget.name]]
        args += [taken.lease, BUDGET_TTL_S]
        keys = [PREFIX + b.name for b in corrected] + sets
        spawn(self._settle(keys, args))

    async def _settle(self, keys: list[str], args: list) -> None:
        try:
            await self.client().eval(SETTLE, len(keys), *keys, *args)
        except RedisError:  # the places' leases expire by themselves; the budget misses one correction
            log.warning("could not settle a request's limits in Redis", exc_info=True)
