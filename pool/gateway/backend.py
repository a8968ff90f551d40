"""A member as the gateway sees it: where to send, how much it may take, what it did lately."""

from __future__ import annotations

from dataclasses import dataclass, field

from pool import inflight


@dataclass(eq=False)
class Backend:
    id: int
    name: str
    base_url: str
    weight: int = 1
    max_inflight: int = 1  # the member's slots: answers it decodes at once
    api_key: str = ""  # sent to the member as a bearer token (its own key, not a client's)
    model: str = ""  # the library model it serves
    # Peak-EWMA latency state (seconds), fed by the gateway after each request.
    ewma_s: float = 0.0
    ewma_at: float = 0.0
    # Tokens the requests this process has in flight on it may generate (least work).
    work: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def inflight(self) -> int:
        return inflight.cached(self.id)

    @property
    def has_room(self) -> bool:
        return inflight.cached(self.id) < self.max_inflight

    def __repr__(self) -> str:  # never the key
        return f"<Backend {self.name} {self.inflight}/{self.max_inflight}>"
