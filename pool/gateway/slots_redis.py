"""In-flight slots shared by several gateway processes, in Redis.

A slot is a lease: a member's sorted set holds one entry per request in flight, scored
by when it expires. The gateway that holds it renews it every few seconds; a gateway
that crashes stops renewing, and its slots free themselves within VIBEADMIN_LEASE_S.
Taking a slot checks the member's capacity and adds the lease in one Lua script, so two
gateways can never both fill a member's last slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Sequence

import redis
import redis.asyncio as aioredis
from django.conf import settings

from pool.gateway.fair import BATCH_OFFSET
from pool.gateway.leases import renew_forever
from pool.gateway.tasks import spawn, stopping
from pool.gateway.types import PUBLIC, Lease, NotYourTurn, RouteContext, Tenant, Turn

PREFIX = "vibeadmin:inflight:"
# Given-back slots are announced here, so waiters in every gateway look at once.
FREED_CHANNEL = "vibeadmin:freed"

# The fair line (fair.py) in Redis: start-time fair queuing with one virtual time and one
# finish tag per tenant for every gateway, so the order is the same whichever gateway a
# request came to. A line entry is "<owner>|<number>|<arrival>", scored by its start tag
# (plus BATCH_OFFSET for batch tenants); the number is zero-padded, so that Redis's order
# of equal tags (by entry) is the gateway's own (by number).
FAIR_V = "vibeadmin:fair:v"
FAIR_FINISH = "vibeadmin:fair:finish"
FAIR_JOINED = "vibeadmin:fair:joined"

# KEYS: the line, V, the finish tags, this gateway's heartbeat, the last join tags. ARGV:
# entry, tenant, cost (max_tokens / weight), class offset. Tags the entry and charges its
# tenant; returns the tag. A tag is never below the tenant's last join tag, though settling
# may have moved its finish tag back: within a tenant, the line keeps arrival order.
JOIN = """
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = math.max(v, tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0'),
                       tonumber(redis.call('HGET', KEYS[5], ARGV[2]) or '0'))
redis.call('HSET', KEYS[3], ARGV[2], tostring(start + tonumber(ARGV[3])))
redis.call('HSET', KEYS[5], ARGV[2], tostring(start))
redis.call('ZADD', KEYS[1], start + tonumber(ARGV[4]), ARGV[1])
redis.call('SET', KEYS[4], 1, 'EX', 3)
return tostring(start)
"""

# KEYS: the member's lease set, the line, V, the finish tags, the last join tags. ARGV: now, capacity, expiry,
# lease id, ttl ms, the caller's entry ('' for an arrival), '1' to respect the line ('' to
# skip it: key limits, retries), the longest any request may wait, tenant ('' to charge
# no one), cost, class offset, the entry's tag with its offset. Returns 1 taken, 0 full,
# -1 a request with a lower tag waits elsewhere. An arrival that takes a slot is charged.
# ARGV[13]: '1' if this gateway has seen the fence before. A fence that is gone means Redis
# lost its data (a restart without persistence) and with it the leases of requests still
# running: no slot is taken until every gateway has renewed its own (ARGV[14] ms), or a
# member would be given more requests than it has slots.
TAKE = """
if redis.call('EXISTS', KEYS[6]) == 0 then
  redis.call('SET', KEYS[6], 1)
  if ARGV[13] == '1' then redis.call('SET', KEYS[7], 1, 'PX', ARGV[14]) end
end
if redis.call('EXISTS', KEYS[7]) == 1 then return 0 end
local v = tonumber(redis.call('GET', KEYS[3]) or '0')
local mine = tonumber(ARGV[12] ~= '' and ARGV[12] or '0')
if ARGV[6] == '' and ARGV[9] ~= '' then
  mine = math.max(v, tonumber(redis.call('HGET', KEYS[4], ARGV[9]) or '0'),
                  tonumber(redis.call('HGET', KEYS[5], ARGV[9]) or '0')) + tonumber(ARGV[11])
elseif ARGV[6] ~= '' then
  mine = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[6]) or mine)
end
if ARGV[7] ~= '' then
  for _ = 1, 8 do
    local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local owner, arrived = string.match(head[1], '^(.+)|[^|]*|([^|]+)$')
    local fresh = arrived and tonumber(arrived) > tonumber(ARGV[1]) - tonumber(ARGV[8])
    if owner and fresh and redis.call('EXISTS', 'vibeadmin:alive:' .. owner) == 1 then
      if head[1] ~= ARGV[6] and tonumber(head[2]) <= mine then return -1 end  -- a tie: who waits goes first
      break
    end
    redis.call('ZREM', KEYS[2], head[1])  -- its gateway is gone, or it waited past any deadline
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[9] ~= '' then
  local start = mine - tonumber(ARGV[11])
  if ARGV[6] == '' then
    redis.call('HSET', KEYS[4], ARGV[9], tostring(start + tonumber(ARGV[10])))
  end
  if start > v then redis.call('SET', KEYS[3], tostring(start)) end
end
return 1
"""
LINE = "vibeadmin:waiting"
FENCE = "vibeadmin:inflight-fence"
RECOVERING = "vibeadmin:inflight-recovering"


class SharedSlots:
    """The Slots protocol (slots.py) in Redis. Also the key limits' parallel leases."""

    at_once = False  # every take is a round trip to Redis

    def __init__(self, url: str, prefix: str = PREFIX):
        self.url = url
        self.prefix = prefix
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.cache: dict[int | str, int] = {}  # member id (or "key:<id>") -> count at the last refresh
        self.held: dict[str, tuple[str]] = {}  # lease id -> (its member's set), renewed while held
        self._sync = redis.Redis.from_url(url)
        self._clients: dict[int, aioredis.Redis] = {}
        self._renewer: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        self._heart: asyncio.Task | None = None
        self.fenced = False  # seen the fence: a Redis without it has lost our leases
        self.on_freed: list = []  # called (on the event loop) when any gateway frees a slot
        self.waiting = 0  # requests waiting in this gateway's line, reported to the others

    @property
    def lease_s(self) -> float:
        return settings.VIBEADMIN_LEASE_S

    def key(self, name: int | str) -> str:
        return f"{self.prefix}{name}"

    def client(self) -> aioredis.Redis:
        """One async client per event loop (tests run several loops in one process)."""
        loop = asyncio.get_running_loop()
        current = self._clients.get(id(loop))
        if current is None:
            current = self._clients[id(loop)] = aioredis.Redis.from_url(self.url)
        # (Re)started when one died, but not by a task on its way out: those would outlive
        # the loop's shutdown, which cancels only the tasks it found.
        if (self._renewer is None or self._renewer.done()) and not stopping():
            self._renewer = loop.create_task(renew_forever(self.client, self.held, lambda: self.lease_s))
            self._listener = loop.create_task(self.listen_forever())
            self._heart = loop.create_task(self.heartbeat_forever())
        return current

    # --- the gateway's side (async, on its event loop) -----------------------------------

    async def refresh(self, names: Sequence[int | str]) -> None:
        """Read the live counts of these members (one round trip) into the cache."""
        if not names:
            return
        now = time.time()
        pipe = self.client().pipeline(transaction=False)
        for name in names:
            pipe.zcount(self.key(name), now, "+inf")
        for name, n in zip(names, await pipe.execute(), strict=True):
            self.cache[name] = n

    def take_now(self, member_id: int, ctx: RouteContext, turn: Turn | None) -> Lease:
        raise NotImplementedError("shared slots are taken with a round trip: take()")

    async def take(
        self, name: int | str, capacity: int, turn: Turn | None = None, max_wait_s: float = 60.0
    ) -> Lease | None:
        """A lease on one of `name`'s slots, or None if it is full. With a `turn`, raises
        NotYourTurn while a request that arrived earlier waits in any gateway; a place in
        line older than `max_wait_s` (the queue's deadline) is stale, its leave lost."""
        now = time.time()
        lease = f"{self.owner}:{uuid.uuid4().hex[:10]}"
        key = self.key(name)
        args: list[float | str] = [
            now,
            capacity,
            now + self.lease_s,
            lease,
            int(self.lease_s * 2000),
            turn.entry if turn else "",
            "1" if turn else "",
            max_wait_s,
        ]
        if turn is None:
            args += ["", 0, 0, ""]
        else:
            offset = BATCH_OFFSET if turn.tenant.batch else 0.0
            args += [
                turn.tenant.id,
                turn.tenant.cost(turn.tokens),
                offset,
                turn.tag + offset if turn.entry else "",
            ]
        args += ["1" if self.fenced else "", int(self.lease_s * 500)]
        keys = (key, LINE, FAIR_V, FAIR_FINISH, FAIR_JOINED, FENCE, RECOVERING)
        taken = await self.client().eval(TAKE, len(keys), *keys, *args)
        self.fenced = True  # the script leaves the fence in place
        if taken == -1:
            raise NotYourTurn
        if not taken:
            self.cache[name] = capacity
            return None
        self.held[lease] = (key,)
        self.cache[name] = self.cache.get(name, 0) + 1
        return lease

    def give_back(self, name: int | str, lease: Lease) -> asyncio.Task | None:
        """Free the lease in the background (awaitable, for who must know it is done)."""
        sets = self.held.pop(lease, None)
        if sets is None:
            return None
        self.cache[name] = max(0, self.cache.get(name, 1) - 1)
        return spawn(self._give_back(name, sets[0], lease))

    async def _give_back(self, name: int | str, key: str, lease: Lease) -> None:
        pipe = self.client().pipeline(transaction=False)
        pipe.zrem(key, lease)
        pipe.publish(FREED_CHANNEL, str(name))
        await pipe.execute()

    async def join_line(self, turn: Turn) -> Turn:
        """In the line every gateway shares, at its fair tag (the heartbeat is set with it,
        before its first beat)."""
        offset = BATCH_OFFSET if turn.tenant.batch else 0.0
        tag = await self.client().eval(
            JOIN,
            5,
            LINE,
            FAIR_V,
            FAIR_FINISH,
            f"vibeadmin:alive:{self.owner}",
            FAIR_JOINED,
            turn.entry,
            turn.tenant.id,
            turn.tenant.cost(turn.tokens),
            offset,
        )
        return dataclasses.replace(turn, tag=float(tag))

    def settle(self, tenant: Tenant, charged: int, used: int) -> asyncio.Task | None:
        if used >= charged:
            return None
        refund = (max(charged, 1) - used) / max(tenant.weight, 1)
        return spawn(self._refund(tenant, refund))

    async def _refund(self, tenant: Tenant, cost: float) -> None:
        await self.client().hincrbyfloat(FAIR_FINISH, tenant.id, -cost)

    def leave_line(self, turn: Turn, served: bool = True) -> asyncio.Task:
        """Out of the line: the next in line, anywhere, may go. One that gave up is not charged."""
        return spawn(self._leave_line(turn, served))

    async def _leave_line(self, turn: Turn, served: bool) -> None:
        pipe = self.client().pipeline(transaction=False)
        pipe.zrem(LINE, turn.entry)
        if not served:
            pipe.hincrbyfloat(FAIR_FINISH, turn.tenant.id, -turn.tenant.cost(turn.tokens))
        pipe.publish(FREED_CHANNEL, "line")
        await pipe.execute()

    def turn(self, number: int, arrived: float, ctx: RouteContext | None = None) -> Turn:
        tenant, tokens = (ctx.tenant, ctx.tokens) if ctx else (PUBLIC, 0)
        return Turn(f"{self.owner}|{number:012d}|{arrived:.3f}", arrived, tenant, tokens)

    async def heartbeat_forever(self) -> None:
        """Says this gateway lives: the line forgets the waiters of one that stopped saying so."""
        while not stopping():
            await self.client().set(f"vibeadmin:alive:{self.owner}", 1, ex=3)
            await asyncio.sleep(1.0)

    async def listen_forever(self) -> None:
        pubsub = self.client().pubsub()
        await pubsub.subscribe(FREED_CHANNEL)
        async for message in pubsub.listen():
            if stopping():
                break
            if message.get("type") == "message":
                for callback in self.on_freed:
                    callback()

    async def next_position(self) -> int:
        """Round robin's turn, shared: gateways take turns from one counter."""
        return int(await self.client().incr("vibeadmin:rr:next")) - 1

    async def report_waiting(self) -> None:
        """This gateway's waiting count, kept a few seconds: a dead gateway's drops out."""
        await self.client().set(f"vibeadmin:queue:{self.owner}", self.waiting, ex=5)

    def cached(self, name: int | str) -> int:
        return self.cache.get(name, 0)

    # --- everyone else's side (sync: the supervisor, the dashboard) ----------------------

    def count_live(self, name: int | str) -> int:
        return int(self._sync.zcount(self.key(name), time.time(), "+inf"))

    def lead(self, role: str, ttl_s: float) -> bool:
        """Whether this process holds `role` (e.g. the autoscaler) among all that share Redis.
        The holder renews it each time it asks; if it dies, another takes over after `ttl_s`."""
        key = f"vibeadmin:leader:{role}"
        ttl_ms = int(ttl_s * 1000)
        if self._sync.set(key, self.owner, nx=True, px=ttl_ms):
            return True
        if self._sync.get(key) == self.owner.encode():
            self._sync.pexpire(key, ttl_ms)
            return True
        return False

    def waiting_live(self) -> int:
        """Requests waiting in every gateway's queue."""
        return sum(int(self._sync.get(key) or 0) for key in self._sync.scan_iter(match="vibeadmin:queue:*"))

    def snapshot_live(self) -> dict[int, int]:
        now = time.time()
        counts = {}
        for key in self._sync.scan_iter(match=self.prefix + "*"):
            n = int(self._sync.zcount(key, now, "+inf"))
            name = key.decode()[len(self.prefix) :]
            if n and name.isdigit():
                counts[int(name)] = n
        return counts
