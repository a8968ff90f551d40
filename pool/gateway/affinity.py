"""Prompt-cache affinity: a request goes back to the member that last served its prefix.

llama-server keeps each slot's KV cache after an answer (`cache_prompt`, on by default)
and starts the next request on the slot whose cache shares the longest prefix with it, so
a request whose system prompt and task that member has just seen skips most of its prompt
processing. The router asks prefer() before the operator's strategy picks; the strategy
still decides where a new prefix goes, and where the remembered member is too busy.

The load bound is HAProxy's hash-balance-factor (consistent hashing with bounded loads):
counting this request, the member may hold at most 1.25x the mean of the members' slots
in use, rounded up, so an idle member still takes it and a hot prefix spills over.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence

from pool.gateway.backend import Backend
from pool.gateway.types import RouteContext

BALANCE_FACTOR = 1.25
# Prefixes remembered, least recently served forgotten first: a pool has a few tasks and
# system prompts, but callers may send their own, one per request (a hostile caller too).
REMEMBERED = 1024
# A shorter system prompt (about 128 tokens) is processed in a moment: keeping a member for
# it would bunch the load for nothing. The default prompts are one line each.
MIN_PREFIX_CHARS = 512


def prefix_key(messages: list[dict], task: str) -> str:
    """The key of what members' caches can share: the task and the first system prompt
    ("" without one, or with a short one: nothing worth keeping a member for)."""
    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    if not isinstance(system, str) or len(system) < MIN_PREFIX_CHARS:
        return ""
    return hashlib.blake2b(f"{task}\0{system}".encode(), digest_size=12).hexdigest()


def within_bound(member: Backend, members: Sequence[Backend]) -> bool:
    """Whether `member` taking one more request stays within BALANCE_FACTOR x the mean."""
    in_use = sum(m.inflight for m in members) + 1
    return member.inflight + 1 <= math.ceil(BALANCE_FACTOR * in_use / len(members))


class Affinity:
    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self.last: OrderedDict[str, int] = OrderedDict()  # prefix -> member id

    def prefer(self, members: Sequence[Backend], ctx: RouteContext) -> Backend | None:
        """The member that last served this request's prefix, if it has room within the
        load bound; None leaves the pick to the strategy."""
        member_id = self.last.get(ctx.prefix) if ctx.prefix else None
        member = next((m for m in members if m.id == member_id), None)
        if member is None or not member.has_room or not within_bound(member, members):
            return None
        return member

    def remember(self, ctx: RouteContext, member: Backend) -> None:
        if not ctx.prefix:
            return
        self.last[ctx.prefix] = member.id
        self.last.move_to_end(ctx.prefix)
        if len(self.last) > self.size:
            self.last.popitem(last=False)
