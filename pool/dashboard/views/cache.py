"""The answer cache's panel (hit rate and savings per tenant, Empty cache) and a key's usage
per day (chart and CSV). The solve page's cache and quotas are a section of the Routing page."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pool import metrics, usage
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.models import ApiKey, roles
from pool.services.cache import empty_answer_cache

PAGE, PANEL = "dashboard/cache.html", "dashboard/partials/cache_panel.html"
CHART_DAYS = 31


def cache_context() -> dict:
    failing = [msg for msg in metrics.degraded.values() if msg]
    return {
        "section": "cache",
        "figures": usage.cache_figures(),
        "entries": usage.cache_size(),
        "failing": failing,
    }


@role_required(roles.VIEW)
@require_GET
def cache(request: HttpRequest) -> HttpResponse:
    return page_or_partial(request, PAGE, PANEL, cache_context())


@role_required(roles.OPERATE)
@require_POST
def cache_empty(request: HttpRequest) -> HttpResponse:
    deleted = empty_answer_cache()
    messages.success(
        request, f"Emptied the answer cache ({deleted} answers); every gateway forgets them within a second."
    )
    return after_post(request, reverse("cache"), PANEL, cache_context())


@role_required(roles.VIEW)
@require_GET
def key_usage(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=pk)
    days = usage.history(usage.key_tenant(key), CHART_DAYS)
    top = max((d.tokens for d in days), default=0) or 1
    bars = [
        {
            "day": d.day,
            "tokens": d.tokens,
            "hits": d.cache_hits,
            "x": i * 20,
            "y": 160 - round(150 * d.tokens / top),
            "height": round(150 * d.tokens / top),
        }
        for i, d in enumerate(days)
    ]
    context = {
        "section": "keys",
        "key": key,
        "bars": bars,
        "width": 20 * len(bars),
        "top": top,
        "quotas": usage.quota_use(usage.key_tenant(key), key.tokens_per_day, key.tokens_per_month),
    }
    return render(request, "dashboard/key_usage.html", context)


@role_required(roles.VIEW)
@require_GET
def key_usage_csv(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=pk)
    response = HttpResponse(
        usage.history_csv(usage.key_tenant(key), key.name), content_type="text/csv; charset=utf-8"
    )
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in key.name)
    response["Content-Disposition"] = f'attachment; filename="usage-{safe}.csv"'
    return response
