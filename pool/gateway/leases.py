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
            pipe = client().pipeline(transaction=False)
            for lease, sets in list(held.items()):
                for key in sets:
                    pipe.zadd(key, {lease: expiry}, xx=True)
            await pipe.execute()
