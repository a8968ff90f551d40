"""/metrics for Prometheus, for the dashboard's users only: a session in any role, or the
scrape token.

The series name every member, key and alert: who may read them is an operator's choice,
set in VIBEADMIN_METRICS_TOKEN and sent by Prometheus as `Authorization: Bearer ...`.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView

from pool.gateway.auth import bearer_token
from pool.models import roles
from pool.services import audit  # noqa: F401 (registers the changes counter)


def metrics(request: HttpRequest) -> HttpResponse:
    if request.user.has_perm(roles.VIEW) or _has_token(request):
        return ExportToDjangoView(request)
    response = HttpResponse(
        "/metrics needs a dashboard session or 'Authorization: Bearer <VIBEADMIN_METRICS_TOKEN>'\n",
        status=401,
        content_type="text/plain",
    )
    response["WWW-Authenticate"] = 'Bearer realm="vibeadmin metrics"'
    return response


def _has_token(request: HttpRequest) -> bool:
    expected = settings.VIBEADMIN_METRICS_TOKEN
    sent = bearer_token(request.headers.get("Authorization"))
    if not expected or not sent:
        return False
    # compare_digest: how long the check takes says nothing about how much of it matched.
    return hmac.compare_digest(sent.encode(), expected.encode())
