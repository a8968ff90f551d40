"""Log-in throttling: after 5 failed log-ins from one address (an IPv6 /64 counts as one,
pool.proxies.client_network), or for one username (in any case or Unicode form),
that address or username waits 15 minutes, and the form says so.

Counts live in Django's cache: per process by default, in Redis (shared by every web
process) where REDIS_URL is set. A username locks only its own log-in from everywhere,
which an attacker can use to keep one operator out for a while; the address lock alone
would let a botnet guess one password from many addresses.
"""

from __future__ import annotations

import hashlib
import time
import unicodedata
from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from pool.proxies import client_address, client_network

MAX_FAILURES = 5
BACK_OFF_S = 15 * 60


class LoginThrottle:
    def __init__(self, address: str, username: str) -> None:
        # Hashed: usernames are user input, and cache keys must be short and plain.
        self.keys = [
            f"vibeadmin:login:{kind}:{hashlib.sha256(value.encode()).hexdigest()}"
            for kind, value in (("address", client_network(address)), ("user", same_user(username)))
        ]

    def wait_s(self) -> float:
        """Seconds until a log-in may be tried again; 0 when it may be now."""
        now = time.time()
        blocked = [
            state["until"] for state in cache.get_many(self.keys).values() if state.get("until", 0) > now
        ]
        return max(blocked, default=now) - now

    def failed(self) -> None:
        now = time.time()
        for key in self.keys:
            state = cache.get(key) or {"failures": 0}
            state["failures"] += 1
            if state["failures"] >= MAX_FAILURES:
                state = {"failures": 0, "until": now + BACK_OFF_S}
            cache.set(key, state, BACK_OFF_S)  # failures older than the back-off are forgotten

    def succeeded(self) -> None:
        cache.delete_many(self.keys)


def same_user(username: str) -> str:
    """One lock per account, however its name is typed: Django logs in with the NFKC form
    (AbstractBaseUser.normalize_username), so full-width `ａｄｍｉｎ` is `admin`; casefold
    makes every case one lock too (it also folds what lower() leaves, like `ß`)."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


class ThrottledMixin:
    """For AuthenticationForm and its subclasses (the admin's), which set self.request."""

    request: HttpRequest
    data: Any

    def clean(self):
        meta = self.request.META
        address = client_address(meta.get("REMOTE_ADDR", ""), meta.get("HTTP_X_FORWARDED_FOR", ""))
        throttle = LoginThrottle(address, self.data.get("username") or "")
        wait = throttle.wait_s()
        if wait > 0:
            minutes = max(1, round(wait / 60))
            raise ValidationError(
                f"Too many failed log-ins from this address or for this user. Try again in {minutes} "
                f"minute{'s' if minutes != 1 else ''}.",
                code="throttled",
            )
        try:
            cleaned = super().clean()  # type: ignore[misc]
        except ValidationError:
            throttle.failed()
            raise
        throttle.succeeded()
        return cleaned


class ThrottledLoginForm(ThrottledMixin, AuthenticationForm):
    pass


class ThrottledAdminLoginForm(ThrottledMixin, AdminAuthenticationForm):
    """/admin/login/ is another door to the same accounts: it waits just the same."""
