"""Routing: the strategy, the queue, the system prompts and the language hint."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from pool.dashboard.forms import RoutingForm
from pool.dashboard.views.cache import solve_context
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.models import PoolSettings, roles

PAGE, FORM = "dashboard/routing.html", "dashboard/partials/routing_form.html"


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def routing(request: HttpRequest) -> HttpResponse:
    form = RoutingForm(request.POST or None, instance=PoolSettings.load())
    if request.method == "POST" and form.is_valid():
        form.apply()
        messages.success(request, "Saved. The gateway picks the change up within a second.")
        return after_post(
            request, reverse("routing"), FORM, {"form": RoutingForm(instance=PoolSettings.load())}
        )
    return page_or_partial(request, PAGE, FORM, {"section": "routing", "form": form, **solve_context()})
