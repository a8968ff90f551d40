"""Requests in flight per member and waiting for one, as every role reads them.

The gateway counts them in its slots (pool/gateway/slots_local.py in this process, or
slots_redis.py across the gateways that share Redis); the supervisor waits for a draining
member to go idle, the dashboard shows the counts, the autoscaler scales on them and takes
its leader lease here. Whoever assembles the slots (pool/gateway/assembly.py) hands them
over with `use()`, so no role imports another; until then the counts are this process's
own, which is exact when no Redis is shared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

# This process's own counts: the gateway's local slots write them.
_counts: defaultdict[int, int] = defaultdict(int)


class Counts(Protocol):
    def cached(self, member_id: int) -> int: ...
    def count_live(self, member_id: int) -> int: ...
    def snapshot_live(self) -> dict[int, int]: ...
    def waiting_live(self) -> int: ...
    def lead(self, role: str, ttl_s: float) -> bool: ...


_store: Counts | None = None


def use(store: Counts | None) -> None:
    """Read the counts from `store` from now on (None: this process's own)."""
    global _store, cached
    _store = store
    # The strategies ask for every member on every pick: the store's own method, no detour.
    cached = store.cached if store is not None else _own


def acquire(member_id: int) -> None:
    _counts[member_id] += 1


def release(member_id: int) -> None:
    _counts[member_id] = max(0, _counts[member_id] - 1)


def count(member_id: int) -> int:
    """Live: across every gateway when they share Redis."""
    return _store.count_live(member_id) if _store is not None else _counts.get(member_id, 0)


def _own(member_id: int) -> int:
    return _counts.get(member_id, 0)


# For the hot path: no network; what the gateway last read (`use` rebinds it).
cached: Callable[[int], int] = _own


def snapshot() -> dict[int, int]:
    if _store is not None:
        return _store.snapshot_live()
    return {member_id: n for member_id, n in _counts.items() if n}


def waiting() -> int:
    """Requests waiting for a member: in every gateway's line when they share Redis."""
    return _store.waiting_live() if _store is not None else 0


def lead(role: str, ttl_s: float) -> bool:
    """Whether this process holds `role` (the autoscaler) among all that share the slots."""
    return _store.lead(role, ttl_s) if _store is not None else True
