"""The overview: live charts, the pool's totals, the capacity hint and what just happened."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from pool.dashboard import snapshot
from pool.dashboard.forms import CapacityForm
from pool.dashboard.views import profile
from pool.dashboard.views.common import page_or_partial, role_required
from pool.loops import autoscale, resources
from pool.model_file import chosen_model
from pool.models import AlertRule, PoolEvent, roles


def home(request: HttpRequest) -> HttpResponse:
    return redirect("dashboard")


def capacity_context(request: HttpRequest) -> dict:
    form = CapacityForm(request.GET if "target_qps" in request.GET else None)
    hint = None
    if form.is_bound and form.is_valid():
        hint = autoscale.capacity_hint(
            target_qps=form.cleaned_data["target_qps"], spares=form.cleaned_data["spares"]
        )
    return {"capacity_form": form, "hint": hint}


@role_required(roles.VIEW)
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    context = {
        "section": "overview",
        "model": chosen_model(),
        "totals": snapshot.totals(),
        "charts": {
            "history": snapshot.chart_columns(),
            "usage": list(resources.history),
            "gpu": snapshot.gpu_status(),
        },
        "firing": AlertRule.objects.filter(firing=True),
        "events": PoolEvent.objects.all()[:12],
        **capacity_context(request),
        **profile.profile_context(request),
    }
    return render(request, "dashboard/overview.html", context)


@role_required(roles.VIEW)
@require_GET
def capacity(request: HttpRequest) -> HttpResponse:
    context = {"section": "overview", **capacity_context(request)}
    return page_or_partial(request, "dashboard/overview.html", "dashboard/partials/capacity.html", context)


@role_required(roles.VIEW)
@require_GET
def recent_events(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/partials/events.html", {"events": PoolEvent.objects.all()[:12]})
