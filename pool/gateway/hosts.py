"""The gateway checks Host against VIBEADMIN_ALLOWED_HOSTS as Django does for the pages.

Without it, a web page on any site could point a name it controls at 127.0.0.1 (DNS
rebinding) and call an open /v1/ from an operator's browser as if from the same machine.
"""

from __future__ import annotations

import functools

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
