"""Audit: every change of desired state, with who made it, from what to what, and when, and
every request a role was refused (a 403);
filtered by member, setting, actor and time, newest first, a page at a time."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from pool.dashboard.forms import AuditFilterForm
from pool.dashboard.views.common import role_required
from pool.models import PoolEvent, roles

PER_PAGE = 50


@role_required(roles.VIEW)
@require_GET
def audit(request: HttpRequest) -> HttpResponse:
    changes = PoolEvent.objects.filter(kind__in=[PoolEvent.CHANGE, PoolEvent.DENIED])
    form = AuditFilterForm(request.GET or None, changes=changes)
    if form.is_valid():
        changes = form.filtered(changes)
    page = Paginator(changes, PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboard/audit.html",
        {"section": "audit", "form": form, "page": page, "query": query.urlencode()},
    )
