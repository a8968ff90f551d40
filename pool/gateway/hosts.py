"""The gateway checks Host against VIBEADMIN_ALLOWED_HOSTS as Django does for the pages.

Without it, a web page on any site could point a name it controls at 127.0.0.1 (DNS
rebinding) and call an open /v1/ from an operator's browser as if from the same machine.

And the solve page's stream takes only its own page's requests (`check_origin`): a page on
another site could otherwise make its visitors' browsers spend the students' share of the
pool and their quota, each visitor a fresh address.
"""

from __future__ import annotations

import functools
import urllib.parse

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from pool.gateway import errors
from pool.gateway.asgi_io import header


def check_host(scope) -> None:
    host = header(scope, b"host")
    if host is None:  # HTTP/1.0: the address the request came in on, as Django takes it
        host = str((scope.get("server") or ("",))[0])
    if not _allowed(host, tuple(settings.ALLOWED_HOSTS)):
        raise errors.invalid(
            f"the Host {host[:100]!r} is not served here; the operator can add it to VIBEADMIN_ALLOWED_HOSTS",
            param="Host",
            code="invalid_host",
        )


@functools.lru_cache(maxsize=512)  # the hot path asks about the same few hosts every time
def _allowed(host: str, allowed: tuple[str, ...]) -> bool:
    domain, _ = split_domain_port(host.lower())
    return bool(domain) and validate_host(domain, list(allowed))


def check_origin(scope) -> None:
    """A browser names the page a cross-site POST comes from (Origin) and cannot be made to
    leave it out; it must be this site (the Host it was sent to) or one of
    VIBEADMIN_CSRF_TRUSTED_ORIGINS. A request with no Origin is no browser's cross-site one."""
    origin = header(scope, b"origin")
    if origin is None:
        return
    host = header(scope, b"host") or ""
    if not _same_site(origin.strip().lower(), host.lower(), tuple(settings.CSRF_TRUSTED_ORIGINS)):
        raise errors.ApiError(
            403,
            f"the solve page answers only its own page, not one on {origin[:100]!r}",
            type="invalid_request_error",
            param="Origin",
            code="cross_site_request",
        )


@functools.lru_cache(maxsize=512)
def _same_site(origin: str, host: str, trusted: tuple[str, ...]) -> bool:
    if origin in (o.lower().rstrip("/") for o in trusted):
        return True
    parts = urllib.parse.urlsplit(origin)  # "null" (a sandboxed frame, a file) has no host
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc == host
