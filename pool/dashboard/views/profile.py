"""The overview's profile panel: start and stop `pool profile`, its table and plot, Apply
(through pool/services/members.py), and the capacity it works out from its measured pace."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pool.dashboard.profile_forms import ProfileApplyForm, ProfileCapacityForm, ProfileStartForm
from pool.dashboard.views.common import after_post, page_or_partial, render_partial, role_required
from pool.models import ProfileRun, roles
from pool.profiling import capacity, job, report
from pool.profiling import plan as planning
from pool.services import ActionError, jobs

PANEL = "dashboard/partials/profile.html"
CAPACITY = "dashboard/partials/profile_capacity.html"


def profile_context(request: HttpRequest, **forms) -> dict:
    """The newest profile (running or not) and the newest one with figures to show."""
    active = job.running()
    newest = active or ProfileRun.objects.first()
    shown = newest if newest is not None and newest.points else job.latest()
    return {
        "profile": newest,
        "profile_shown": shown,
        "profile_rows": report.rows(shown, typical_tokens=planning.TYPICAL_ANSWER_TOKENS) if shown else [],
        "profile_levels": shown.plan.get("levels", []) if shown else [],
        "profile_chart": report.chart(shown) if shown else None,
        "typical_tokens": planning.TYPICAL_ANSWER_TOKENS,
        "start_form": forms.get("start_form") or ProfileStartForm(),
        "apply_form": forms.get("apply_form") or ProfileApplyForm(),
        **sizing_context(request),
    }


def sizing_context(request: HttpRequest) -> dict:
    form = ProfileCapacityForm(request.GET if "peak" in request.GET else None)
    sized = None
    shown = job.latest()
    if shown is not None and form.is_bound and form.is_valid():
        data = form.cleaned_data
        sized = capacity.size(
            planning.measured_points(shown),
            planning.planned_layouts(shown),
            gpu=shown.gpu,
            peak=data["peak"],
            answer_tokens=data["answer_tokens"],
            within_s=data["within_s"],
            spares=data["spares"],
        )
    return {"sizing_form": form, "sizing": sized, "sizing_profile": shown}


@role_required(roles.VIEW)
@require_GET
def profile_panel(request: HttpRequest) -> HttpResponse:
    return render_partial(request, PANEL, profile_context(request))


@role_required(roles.OPERATE)
@require_POST
def profile_start(request: HttpRequest) -> HttpResponse:
    form = ProfileStartForm(request.POST)
    if form.is_valid():
        try:
            run = job.new_profile(budget_s=form.cleaned_data["budget_s"])
        except job.ProfileError as exc:
            messages.error(request, str(exc))
        else:
            jobs.launch(run, "profile")
            messages.success(request, f"Profile {run.pk} started: it measures for up to {run.budget_s:g} s.")
        return after_post(request, reverse("dashboard"), PANEL, profile_context(request))
    return page_or_partial(
        request, "dashboard/overview.html", PANEL, profile_context(request, start_form=form)
    )


@role_required(roles.OPERATE)
@require_POST
def profile_stop(request: HttpRequest) -> HttpResponse:
    active = job.running()
    if active is None:
        messages.error(request, "No profile is running.")
    else:
        jobs.request_stop(active)
        messages.success(request, f"Stopping profile {active.pk}: what it measured is kept, marked partial.")
    return after_post(request, reverse("dashboard"), PANEL, profile_context(request))


@role_required(roles.OPERATE)
@require_POST
def profile_apply(request: HttpRequest) -> HttpResponse:
    form = ProfileApplyForm(request.POST)
    shown = job.latest()
    if form.is_valid():
        if shown is None:
            messages.error(request, "No profile has been measured yet: start one first.")
        else:
            try:
                layout, done = job.apply(
                    shown, target=form.cleaned_data["target"], load=form.cleaned_data["load"]
                )
            except (job.ProfileError, ActionError) as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request, f"Applied {layout.label}: {', '.join(done) or 'the pool had it already'}."
                )
        return after_post(
            request,
            reverse("dashboard"),
            PANEL,
            profile_context(request, apply_form=form),
            trigger="vibe:members",
        )
    return page_or_partial(
        request, "dashboard/overview.html", PANEL, profile_context(request, apply_form=form)
    )


@role_required(roles.VIEW)
@require_GET
def profile_capacity(request: HttpRequest) -> HttpResponse:
    context = {"section": "overview", **profile_context(request)}
    return page_or_partial(request, "dashboard/overview.html", CAPACITY, context)
