"""Keeping a gateway's leases in Redis alive.

Slots and limits' caps are leases: entries in sorted sets scored by when they expire. The
gateway that holds one renews it every third of its life; a gateway that crashes stops
renewing, and its places free themselves within VIBEADMIN_LEASE_S.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import redis.asyncio as aioredis

from pool.gateway.tasks import stopping


async def renew_forever(
    client: Callable[[], aioredis.Redis], held: Mapping[str, Sequence[str]], lease_s: Callable[[], float]
) -> None:
    """Renew every lease in `held` (lease id -> the sorted sets it is in) until cancelled."""
    while not stopping():
        await asyncio.sleep(lease_s() / 3)
        if held:
            expiry = time.time() + lease_s()
            renewed = list(held.items())
            pipe = client().pipeline(transaction=False)
            for lease, sets in renewed:
                for key in sets:
                    # Not ZADD XX: a Redis restarted without its data must get back the
                    # leases of requests still running, or another gateway overfills them.
                    pipe.zadd(key, {lease: expiry})
            await pipe.execute()
            # A lease given back while the renewal was on its way may have been added
            # again after its ZREM: take those out once more.
            stale = [(lease, sets) for lease, sets in renewed if lease not in held]
            if stale:
                pipe = client().pipeline(transaction=False)
                for lease, sets in stale:
                    for key in sets:
                        pipe.zrem(key, lease)
                await pipe.execute()
