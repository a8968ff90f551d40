"""Where the gateway's parts with two homes are chosen, once per process: this process's
memory, or Redis when REDIS_URL is set and several gateways act as one.

- slots: members' requests in flight and the waiting line (slots_local.py / slots_redis.py);
- limits: the keys' and the solve page's counters (limits_local.py / limits_redis.py).

The slots are also handed to pool/inflight.py, where the supervisor, the dashboard and the
autoscaler read the counts without importing the gateway.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings

from pool import inflight
from pool.gateway.limits import Limits
from pool.gateway.slots import Slots


@cache
def slots() -> Slots:
    """One per process: the gateway, the supervisor and the dashboard count the same slots."""
    chosen: Slots
    if settings.REDIS_URL:
        from pool.gateway.slots_redis import SharedSlots

        chosen = SharedSlots(settings.REDIS_URL)
    else:
        from pool.gateway.slots_local import LocalSlots

        chosen = LocalSlots()
    inflight.use(chosen)
    return chosen


def limits() -> Limits:
    """One per gateway object; with Redis, every gateway counts together anyway."""
    if settings.REDIS_URL:
        from pool.gateway.limits_redis import RedisLimits

        return RedisLimits(settings.REDIS_URL)
    from pool.gateway.limits_local import LocalLimits

    return LocalLimits()
