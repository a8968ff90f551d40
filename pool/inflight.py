"""Requests in flight per member.

Exact in one process: the gateway and the supervisor (which waits for a draining member
to go idle) share this process's counts. Several gateway processes share theirs in Redis.
"""

from __future__ import annotations

from collections import defaultdict

_counts: defaultdict[int, int] = defaultdict(int)


def acquire(member_id: int) -> None:
    _counts[member_id] += 1


def release(member_id: int) -> None:
    _counts[member_id] = max(0, _counts[member_id] - 1)


def count(member_id: int) -> int:
    return _counts.get(member_id, 0)


def snapshot() -> dict[int, int]:
    return {member_id: n for member_id, n in _counts.items() if n}
