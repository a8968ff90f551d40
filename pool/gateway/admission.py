"""Who may start a request now: a platform key's limits and the solve page's caps, written
once over the Limits interface (pool/gateway/limits.py), whichever home it has.

Tokens per minute hold under concurrency because a request reserves, when it is admitted,
the most it may use (its prompt, estimated, plus max_tokens); when it ends, the
reservation is settled to what the member reported or what the gateway counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pool.gateway import errors
from pool.gateway.limits import NOTHING, Budget, Cap, Limits, Pass, Refused
from pool.gateway.registry import KeyInfo
from pool.gateway.validation import prompt_texts
from pool.proxies import client_network

# A prompt's tokens, estimated before any member has seen it: a token per 3 bytes of
# UTF-8 (English runs about 4 characters a token, Chinese about one a character, which is
# 3 bytes), plus what the chat template adds around each message.
BYTES_PER_TOKEN = 3
TEMPLATE_TOKENS = 8


def estimate_prompt_tokens(body: dict) -> int:
    texts = prompt_texts(body)
    return sum(len(text.encode()) // BYTES_PER_TOKEN + TEMPLATE_TOKENS for text in texts)


@dataclass(frozen=True, slots=True)
class StudentCaps:
    """The solve page's limits per address and as a whole, from the Routing page."""

    per_minute: int  # problems per minute per address
    at_once: int | None = None  # answers in flight per address
    pool_slots: int | None = None  # answers in flight for all students together


class Admission:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    async def key(self, info: KeyInfo | None, *, tokens: int, user: str = "") -> Pass:
        """Admit a request on a platform key that may use `tokens` (prompt and answer); a
        request for a student (`user`) also within the key's limits for each student."""
        if info is None:  # an open API: no key, no limits
            return NOTHING
        budgets, caps = student_limits(info, user)
        if info.rpm is not None:
            budgets.append(Budget(f"rpm:key:{info.id}", info.rpm, 1))
        if info.tpm is not None:
            if tokens > info.tpm:
                raise errors.invalid(
                    f"this request may use {tokens} tokens (its prompt, estimated, and max_tokens), more than "
                    f"this key's limit of {info.tpm} tokens per minute; ask for fewer max_tokens",
                    param="max_tokens",
                    code="tokens_over_key_limit",
                )
            budgets.append(Budget(tpm_budget(info), info.tpm, tokens))
        if info.max_parallel is not None:
            caps.append(Cap(f"key:{info.id}", info.max_parallel))
        try:
            return await self.limits.admit(tuple(budgets), tuple(caps))
        except Refused as refused:
            raise key_refusal(info, refused, user) from None

    async def student(self, address: str, caps: StudentCaps) -> Pass:
        """Admit a student's problem; `address`'s whole network counts as one (client_network)."""
        address = client_network(address)
        budgets = (Budget(f"rpm:address:{address}", caps.per_minute, 1),)
        places = tuple(
            Cap(name, most)
            for name, most in ((f"address:{address}", caps.at_once), ("solve", caps.pool_slots))
            if most is not None
        )
        try:
            return await self.limits.admit(budgets, places)
        except Refused as refused:
            raise student_refusal(caps, refused) from None

    def settle(self, taken: Pass, key: KeyInfo | None, *, tokens: int) -> None:
        """The request ended having used `tokens`: correct the key's reservation, free its places."""
        if taken is NOTHING:
            return
        used = {tpm_budget(key): tokens} if key is not None and key.tpm is not None else {}
        self.limits.settle(taken, used)


def tpm_budget(info: KeyInfo) -> str:
    return f"tpm:key:{info.id}"


def student_limits(info: KeyInfo, user: str) -> tuple[list[Budget], list[Cap]]:
    """The key's limits for each student, as this student's own counters ("" names none)."""
    if not user:
        return [], []
    budgets = [Budget(f"rpm:user:{info.id}:{user}", info.user_rpm, 1)] if info.user_rpm is not None else []
    caps = [Cap(f"user:{info.id}:{user}", info.user_parallel)] if info.user_parallel is not None else []
    return budgets, caps


def key_refusal(info: KeyInfo, refused: Refused, user: str = "") -> errors.ApiError:
    return _refusal(
        refused,
        {
            "rpm:user:": (
                f"the student {user!r} has reached this key's limit of {info.user_rpm} requests per minute "
                "per student; the key's other students are not affected",
                "user_rate_limited",
            ),
            "user:": (
                f"the student {user!r} already has {info.user_parallel} requests in flight, this key's limit "
                "per student; the key's other students are not affected",
                "user_rate_limited",
            ),
            "rpm:": (
                f"this key's limit of {info.rpm} requests per minute is reached",
                "rate_limit_requests",
            ),
            "tpm:": (
                f"this key's limit of {info.tpm} tokens per minute is reached (requests in flight reserve their "
                "max_tokens until they end)",
                "rate_limit_tokens",
            ),
        },
        otherwise=(
            f"this key already has {info.max_parallel} requests in flight (its limit)",
            "rate_limit_parallel",
        ),
    )


def student_refusal(caps: StudentCaps, refused: Refused) -> errors.ApiError:
    many = "an answer is" if caps.at_once == 1 else f"{caps.at_once} answers are"
    return _refusal(
        refused,
        {
            "rpm:": (
                f"you have sent {caps.per_minute} problems in the last minute; please wait a little",
                "rate_limit_address",
            ),
            "address:": (
                f"{many} already being written for you; wait for it to finish or stop it first",
                "solve_inflight_per_address",
            ),
        },
        otherwise=(
            "the solver is busy with other students' problems right now; please try again shortly",
            "solve_pool_share",
        ),
        otherwise_waits_at_least=5,
    )


def _refusal(
    refused: Refused,
    by_limit: dict[str, tuple[str, str]],
    *,
    otherwise: tuple[str, str],
    otherwise_waits_at_least: float | None = None,
) -> errors.ApiError:
    """The 429 (message, code) of the first limit-name prefix in `by_limit` that refused, else `otherwise`."""
    wait = refused.retry_after
    for prefix, (message, code) in by_limit.items():
        if refused.limit.name.startswith(prefix):
            return errors.rate_limited(message, code=code, retry_after=wait)
    if otherwise_waits_at_least is not None:
        wait = max(wait, otherwise_waits_at_least)
    message, code = otherwise
    return errors.rate_limited(message, code=code, retry_after=wait)


def pool_share(share: float, slots: int) -> int:
    """Answers in flight that students may have together: their share of the members'
    slots, rounded down, and at least one (else a one-member pool would never answer them)."""
    return max(1, math.floor(share * slots))
