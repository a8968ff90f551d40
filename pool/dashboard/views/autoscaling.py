"""Autoscaling: its settings, what it would do now, and every decision it took."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from pool.dashboard.forms import AutoscaleForm
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.loops import autoscale
from pool.models import PoolEvent, PoolSettings, roles

PAGE, FORM, STATUS = (
    "dashboard/autoscaling.html",
    "dashboard/partials/autoscale_form.html",
    "dashboard/partials/autoscale_status.html",
)


def status_context() -> dict:
    cfg = PoolSettings.load()
    current = autoscale.running_count()
    desired, value, why = autoscale.desired_count(cfg, current, autoscale.measure_load())
    return {
        "cfg": cfg,
        "current": current,
        "desired": desired,
        "why": why,
        "cooldown_left": autoscale.cooldown_left_s(cfg, timezone.now()),
        "decisions": PoolEvent.objects.filter(kind=PoolEvent.SCALING)[:50],
    }


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def autoscaling(request: HttpRequest) -> HttpResponse:
    form = AutoscaleForm(request.POST or None, instance=PoolSettings.load())
    if request.method == "POST" and form.is_valid():
        form.apply()
        messages.success(
            request, "Autoscaling is on." if form.instance.autoscale_enabled else "Autoscaling is off."
        )
        return after_post(
            request,
            reverse("autoscaling"),
            FORM,
            {"form": AutoscaleForm(instance=PoolSettings.load())},
            trigger="vibe:scaling",
        )
    return page_or_partial(request, PAGE, FORM, {"section": "autoscaling", "form": form, **status_context()})


@role_required(roles.VIEW)
@require_GET
def autoscale_status(request: HttpRequest) -> HttpResponse:
    return render(request, STATUS, status_context())
