"""One interface for members' in-flight slots and the line of requests waiting for one.

Two implementations, chosen once per process (`assembly.slots()`):
`LocalSlots` (slots_local.py) counts in this process; `SharedSlots` (slots_redis.py) keeps
leases and the waiting line in Redis, so several gateway processes act as one. The router
is written once against this protocol; the one thing it asks of an implementation's nature
is `at_once`: whether a slot can be taken without a round trip, so that a freed slot goes
to its waiter inside the release itself and nothing can come between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pool.gateway.types import Lease, RouteContext, Tenant, Turn


class Slots(Protocol):
    at_once: bool  # take_now() answers from this process's own counts
    on_freed: list[Callable[[], None]]  # called on the event loop when a slot frees anywhere
    waiting: int  # requests waiting in this process's line

    # --- counting ---------------------------------------------------------------------
    def cached(self, member_id: int) -> int:
        """For the strategies' hot path: no network; what this process last knew."""

    def count_live(self, member_id: int) -> int:
        """Across every gateway (sync: the supervisor and the dashboard ask)."""

    def snapshot_live(self) -> dict[int, int]: ...

    def waiting_live(self) -> int:
        """Requests waiting in every gateway's line."""

    async def report_waiting(self) -> None:
        """Publish this process's waiting count where waiting_live() finds it."""

    def lead(self, role: str, ttl_s: float) -> bool:
        """Whether this process holds `role` (the autoscaler) among all that share the slots."""

    # --- taking and giving back ----------------------------------------------------------
    def take_now(self, member_id: int, ctx: RouteContext, turn: Turn | None) -> Lease:
        """Only where `at_once`: the strategy's pick saw room in these very counts. The
        request starts in fair time: charged now, unless its turn was charged in line."""

    async def refresh(self, member_ids: Sequence[int]) -> None:
        """Bring the cached counts of these members up to date before a pick."""

    async def take(self, member_id: int, capacity: int, turn: Turn | None, max_wait_s: float) -> Lease | None:
        """A slot, or None when the member is full; raises NotYourTurn while a request
        earlier in the line (lower fair tag) waits elsewhere. A turn with no entry is an
        arrival, charged if it gets the slot; None skips the line (retries, key limits)."""

    def give_back(self, member_id: int, lease: Lease) -> Any:
        """Free the slot; the freed-slot notifications follow."""

    def settle(self, tenant: Tenant, charged: int, used: int) -> Any:
        """A request ended: its tenant is charged what it used, not its max_tokens."""

    # --- the line ------------------------------------------------------------------------
    def turn(self, number: int, arrived: float, ctx: RouteContext | None = None) -> Turn: ...

    async def join_line(self, turn: Turn) -> Turn:
        """In line, charged: the same turn with its fair start tag."""

    def leave_line(self, turn: Turn, served: bool = True) -> Any:
        """Out of the line: the next in line, anywhere, may go. One that gave up is not charged."""

    async def next_position(self) -> int:
        """Round robin's turn: one counter for every gateway that shares these slots."""
