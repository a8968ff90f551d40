"""HTTP headers for every response Django serves, and the proxy headers it may believe
(pool/proxies.py says whose).

The solve page shows model output, which is hostile: the sanitizer in static/js/solve.js
is the first wall, the Content-Security-Policy the second. Scripts only from our own files
(no inline script, no eval), so markup that slips through cannot run. Style attributes are
allowed because KaTeX sizes every formula with them; style elements only from our files.
The other security headers come from Django's SecurityMiddleware (nosniff, Referrer-Policy,
Cross-Origin-Opener-Policy) and XFrameOptionsMiddleware (DENY).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from pool.proxies import is_trusted_proxy

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # browsers without the two below: KaTeX still renders
        "style-src-elem 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",  # fetch() of the answer stream and the dashboard's websocket
        "object-src 'none'",
        "frame-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


# MiddlewareMixin serves sync and async requests alike: no thread hop under daphne.


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response


class TrustedProxyMiddleware(MiddlewareMixin):
    """X-Forwarded-Proto says whether the user's connection was https (SECURE_PROXY_SSL_HEADER);
    anyone can send it, so it is dropped unless it comes from VIBEADMIN_TRUSTED_PROXIES."""

    def process_request(self, request: HttpRequest) -> None:
        if not is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            request.META.pop("HTTP_X_FORWARDED_PROTO", None)
            request.META.pop("HTTP_X_FORWARDED_FOR", None)
