"""The operator's sampling defaults per task (the Routing page): what a request gets for
each of temperature, top_p and max_tokens that its client did not send. A client's own
value always wins; validation has already held it within the caps (VIBEADMIN_MAX_TOKENS,
the solve page's longest answer), and a default is held within them here."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Sampling:
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None  # None: VIBEADMIN_DEFAULT_MAX_TOKENS


def apply_defaults(sent: dict, forwarded: dict, defaults: Sampling, *, ceiling: int) -> None:
    """Fill `forwarded` (what goes to the member) from `defaults` where `sent` (the client's
    body) has no value of its own."""
    if sent.get("temperature") is None and defaults.temperature is not None:
        forwarded["temperature"] = defaults.temperature
    if sent.get("top_p") is None and defaults.top_p is not None:
        forwarded["top_p"] = defaults.top_p
    if sent.get("max_tokens") is None:
        wanted = defaults.max_tokens or settings.VIBEADMIN_DEFAULT_MAX_TOKENS
        forwarded["max_tokens"] = min(wanted, ceiling, settings.VIBEADMIN_MAX_TOKENS)
