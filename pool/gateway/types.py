"""What the gateway's parts share about a request, in one leaf module (it imports no other
part of the gateway, so every part may import it): whose service it counts as (`Tenant`),
what a strategy and the fair line may know of it (`RouteContext`), its place in the line
(`Turn`, `Waiter`), the slot it holds (`Lease`), what the answer cache does for it
(`Plan`) and the tokens its quotas hold for it (`Reservation`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tenant:
    """Who a request's service is counted to."""

    id: str  # "key:<pk>", or "solve"
    name: str  # for metrics and the dashboard
    weight: int = 1
    batch: bool = False

    def cost(self, tokens: int) -> float:
        """How far a request moves this tenant's finish tag."""
        return max(tokens, 1) / max(self.weight, 1)


PUBLIC = Tenant("solve", "solve")


@dataclass(frozen=True)
class RouteContext:
    """What a strategy (and the fair line) may know of the request: who sent it, how long
    it may run, whose service it counts as, and what members' caches may share with it."""

    client: str = ""
    tokens: int = 0  # max_tokens, with the gateway's default filled in
    tenant: Tenant = PUBLIC
    prefix: str = ""  # affinity.prefix_key(): the task and system prompt, hashed ("": none)
    # Within its tenant, whose turn it is (fair.py's second level): a key's student (`user`),
    # or an anonymous caller's network; "": the tenant's own.
    student: str = ""
    near: int = 0  # a member serving a sibling sample of the same request (voting.py): its slots first
    model: str = ""  # the library model whose members may take it ("": any member)


Lease = str  # "" for a slot counted in this process


class NotYourTurn(Exception):
    """A request earlier in the line waits in another gateway: it goes first."""


@dataclass(frozen=True)
class Turn:
    """A request's place in the line all gateways share: who it is, when it came, whose
    service it counts as, and (once in line) its fair start tag (fair.py)."""

    entry: str  # "" for a request that has not joined the line (it just arrived)
    arrived: float
    tenant: Tenant = PUBLIC
    tokens: int = 0
    tag: float = 0.0


@dataclass(eq=False)
class Waiter:
    """A request waiting in this process's line (router.py) for a slot."""

    ctx: RouteContext
    exclude: frozenset[int]
    turn: Turn | None = None  # its place in the line all gateways share (retries stay out)
    tag: float = float("-inf")  # its fair start tag; a retry's is -inf: it waited its turn once
    number: int = 0  # arrival order in this process's line
    second: tuple[float, int] = (0.0, 0)  # its turn between its tenant's students (fair.py)
    queued: bool = False
    predicted_s: float | None = None
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


HIT, MISS, BYPASS = "hit", "miss", "bypass"  # the X-Vibeadmin-Cache header's values
REFRESH = "refresh"  # ... of a request that asked for a fresh answer (no-cache)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the answer cache does for one request (pool/gateway/answers.py)."""

    label: str  # HIT, MISS, BYPASS or REFRESH
    key: str = ""  # "" : the cache is not used at all
    serve: bool = False  # may be answered from the cache or another request's generation
    model_sha256: str = ""


@dataclass(slots=True)
class Reservation:
    """The tokens a request's quotas hold for it until it ends (pool/gateway/quotas.py)."""

    counters: tuple[str, ...]
    amount: int
    held: bool = True  # False: failed open, nothing to settle
