"""Routing: the strategy, the line, what the model is told, sampling defaults, access, the
solve page's limits, the tutor, and the answer cache and quotas; one form per section, each
saved on its own and saying what it changed."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from pool import usage
from pool.dashboard.forms import ROUTING_SECTIONS, DesiredStateForm, RoutingForm, SolveCacheQuotaForm
from pool.dashboard.views.common import page_or_partial, render_partial, role_required
from pool.models import PoolSettings, roles

PAGE = "dashboard/routing.html"
SECTIONS, SECTION = "dashboard/partials/routing_sections.html", "dashboard/partials/routing_section.html"
PICKED_UP = "The gateway uses it within a second."


def section(key: str, form: RoutingForm, saved: str = "") -> dict:
    heading, lead, _ = ROUTING_SECTIONS[key]
    action = reverse("routing_section", args=[key])
    return {"key": key, "heading": heading, "lead": lead, "form": form, "action": action, "saved": saved}


def page_context(data=None) -> dict:
    """Every section's form; with `data` (a post of every field), each bound to it."""
    # A row each: a bound form writes its post into its instance as it validates.
    sections = [
        section(key, RoutingForm(data, instance=PoolSettings.load(), section=key)) for key in ROUTING_SECTIONS
    ]
    return {"section": "routing", "sections": [*sections, cache_section()]}


def cache_section(form: SolveCacheQuotaForm | None = None, saved: str = "") -> dict:
    """The last section: the students' answer cache, votes and quotas, a form of its own."""
    return {
        "key": "cache",
        "heading": "The answer cache and quotas",
        "lead": "A repeated problem is answered from a stored answer in milliseconds, without a member. "
        f"Quotas count the calendar day and month in {settings.TIME_ZONE}; empty means none.",
        "form": form or SolveCacheQuotaForm(instance=PoolSettings.load()),
        "action": reverse("solve_cache_quota"),
        "saved": saved,
        "quota": usage.solve_quota_use(),
    }


def saved_message(form: DesiredStateForm, before: PoolSettings) -> str:
    changed = form.changes(before)
    return ("Saved: " + "; ".join(changed) + ". " + PICKED_UP) if changed else "Nothing changed."


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def routing(request: HttpRequest) -> HttpResponse:
    """The page; a post of every section's fields at once (older scripts) saves them all."""
    if request.method == "POST":
        before = PoolSettings.load()
        form = RoutingForm(request.POST, instance=PoolSettings.load())
        if form.is_valid():
            form.apply()
            messages.success(request, saved_message(form, before))
            return (
                redirect("routing") if not request.htmx else render_partial(request, SECTIONS, page_context())
            )
        return page_or_partial(request, PAGE, SECTIONS, page_context(request.POST))
    return page_or_partial(request, PAGE, SECTIONS, page_context())


@role_required(roles.OPERATE)
@require_POST
def routing_section(request: HttpRequest, key: str) -> HttpResponse:
    if key not in ROUTING_SECTIONS:
        raise Http404(f"no section {key!r}")
    before = PoolSettings.load()
    form = RoutingForm(request.POST, instance=PoolSettings.load(), section=key)
    saved = ""
    if form.is_valid():
        form.apply()
        saved = saved_message(form, before)
        if not request.htmx:
            messages.success(request, saved)
            return redirect(reverse("routing") + f"#section-{key}")
        form = RoutingForm(instance=PoolSettings.load(), section=key)
    elif not request.htmx:
        return render(request, PAGE, page_context_with(section(key, form)))
    return render_partial(request, SECTION, {"s": section(key, form, saved)})


def page_context_with(bound: dict) -> dict:
    """The page with one section's form bound to its post, showing its errors."""
    context = page_context()
    context["sections"] = [bound if s["key"] == bound["key"] else s for s in context["sections"]]
    return context


@role_required(roles.OPERATE)
@require_POST
def solve_cache_quota(request: HttpRequest) -> HttpResponse:
    before = PoolSettings.load()
    form = SolveCacheQuotaForm(request.POST, instance=PoolSettings.load())
    if not form.is_valid():
        if request.htmx:
            return render_partial(request, SECTION, {"s": cache_section(form)})
        return render(request, PAGE, page_context_with(cache_section(form)))
    form.apply()
    saved = saved_message(form, before)
    if not request.htmx:
        messages.success(request, saved)
        return redirect(reverse("routing") + "#section-cache")
    return render_partial(request, SECTION, {"s": cache_section(saved=saved)})
