"""Requests in flight per member.

Exact in one process: the gateway and the supervisor (which waits for a draining member
to go idle) share this process's counts. With REDIS_URL set, several gateway processes
share theirs as leases in Redis (pool/shared_slots.py): `count` then asks Redis, and
`cached` gives the strategies what the gateway read just before picking.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from django.conf import settings

_counts: defaultdict[int, int] = defaultdict(int)


@cache
def shared():
    """The Redis-backed slots when REDIS_URL is set, else None (counts stay in this process)."""
    if not settings.REDIS_URL:
        return None
    from pool.gateway.shared_slots import SharedSlots

    return SharedSlots(settings.REDIS_URL)


def acquire(member_id: int) -> None:
    _counts[member_id] += 1


def release(member_id: int) -> None:
    _counts[member_id] = max(0, _counts[member_id] - 1)


def count(member_id: int) -> int:
    """Live: across every gateway when they share Redis."""
    slots = shared()
    return slots.count_live(member_id) if slots else _counts.get(member_id, 0)


def cached(member_id: int) -> int:
    """For the hot path: no network; what the gateway last read."""
    slots = shared()
    return slots.cached(member_id) if slots else _counts.get(member_id, 0)


def snapshot() -> dict[int, int]:
    slots = shared()
    if slots:
        return slots.snapshot_live()
    return {member_id: n for member_id, n in _counts.items() if n}
