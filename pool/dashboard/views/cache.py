"""The answer cache's panel (hit rate and savings per tenant, Empty cache), the solve
page's cache and quotas (on the Routing page), and a key's usage per day (chart and CSV)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pool import metrics, usage
from pool.dashboard.forms import SolveCacheQuotaForm
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.models import ApiKey, PoolSettings, roles
from pool.services.cache import empty_answer_cache

PAGE, PANEL = "dashboard/cache.html", "dashboard/partials/cache_panel.html"
SOLVE_FORM = "dashboard/partials/solve_cache_form.html"
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


def solve_context(form: SolveCacheQuotaForm | None = None) -> dict:
    return {
        "solve_form": form or SolveCacheQuotaForm(instance=PoolSettings.load()),
        "solve_quota": usage.solve_quota_use(),
        "time_zone": settings.TIME_ZONE,
    }


@role_required(roles.OPERATE)
@require_http_methods(["POST"])
def solve_cache_quota(request: HttpRequest) -> HttpResponse:
    form = SolveCacheQuotaForm(request.POST, instance=PoolSettings.load())
    if not form.is_valid():
        return page_or_partial(
            request, "dashboard/routing.html", SOLVE_FORM, {"section": "routing", **solve_context(form)}
        )
    form.apply()
    messages.success(
        request, "Saved the solve page's cache and quotas; the gateway uses them within a second."
    )
    return after_post(request, reverse("routing"), SOLVE_FORM, solve_context())


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
