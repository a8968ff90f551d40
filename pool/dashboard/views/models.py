"""Models: the library (add by path, list, remove) and the rollouts that move the pool."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pool.dashboard.library_forms import ModelAddForm, RolloutForm
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.models import Member, Model, PoolSettings, Rollout, roles
from pool.services import ActionError
from pool.services.library import model_remove
from pool.services.rollouts import PROMOTE, active_rollout, rollout_abort, rollout_decide

PAGE = "dashboard/models.html"
LIBRARY = "dashboard/partials/model_library.html"
ROLLOUT = "dashboard/partials/rollout_panel.html"
START = "dashboard/partials/rollout_start.html"


def library_context() -> dict:
    primary = PoolSettings.load().primary_model_id
    serving: dict[int, list[str]] = {}
    for name, model_id in Member.objects.exclude(model=None).values_list("name", "model_id"):
        serving.setdefault(model_id, []).append(name)
    rows = [
        {"model": m, "facts": m.facts(), "primary": m.pk == primary, "members": serving.get(m.pk, [])}
        for m in Model.objects.all()
    ]
    return {"library": rows}


def rollout_context() -> dict:
    """The rollout under way (or the last one): its progress, both sides' pass rates with
    their intervals, the decision and why."""
    rollout = Rollout.objects.select_related("source", "target", "canary_tenant").first()
    figures = rollout.gate_figures if rollout is not None else {}
    return {"rollout": rollout, "canary": figures.get("canary"), "baseline": figures.get("baseline")}


def page_context(**forms) -> dict:
    return {
        "section": "models",
        "add_form": ModelAddForm(),
        "rollout_form": RolloutForm(),
        **library_context(),
        **rollout_context(),
        **forms,
    }


@role_required(roles.VIEW)
@require_GET
def models_page(request: HttpRequest) -> HttpResponse:
    return render(request, PAGE, page_context())


@role_required(roles.VIEW)
@require_GET
def model_library(request: HttpRequest) -> HttpResponse:
    return render(request, LIBRARY, library_context())


@role_required(roles.OPERATE)
@require_POST
def model_add(request: HttpRequest) -> HttpResponse:
    form = ModelAddForm(request.POST)
    if form.is_valid() and form.submit():
        messages.success(request, f"Added {form.result.name}; the supervisor computes its sha256 now.")
        return after_post(request, reverse("models"), LIBRARY, library_context())
    return page_or_partial(request, PAGE, "dashboard/partials/model_add.html", page_context(add_form=form))


@role_required(roles.OPERATE)
@require_POST
def model_remove_view(request: HttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(Model, name=name)
    try:
        model_remove(model=model)
        messages.success(request, f"Removed {name} from the library; its file stays where it is.")
    except ActionError as exc:
        messages.error(request, str(exc))
    return after_post(request, reverse("models"), LIBRARY, library_context())


@role_required(roles.VIEW)
@require_GET
def rollout_panel(request: HttpRequest) -> HttpResponse:
    return render(request, ROLLOUT, rollout_context())


@role_required(roles.OPERATE)
@require_POST
def rollout_start_view(request: HttpRequest) -> HttpResponse:
    form = RolloutForm(request.POST)
    if form.is_valid() and form.submit():
        messages.success(request, f"Rollout {form.result.pk} to {form.result.target.name} started.")
        return after_post(
            request, reverse("models"), START, {"rollout_form": RolloutForm()}, trigger="vibe:rollout"
        )
    return page_or_partial(request, PAGE, START, page_context(rollout_form=form))


@role_required(roles.OPERATE)
@require_POST
def rollout_action(request: HttpRequest, action: str) -> HttpResponse:
    try:
        rollout = active_rollout()
        if action == "abort":
            rollout_abort(rollout=rollout)
        elif action == "promote":
            rollout_decide(rollout=rollout, verdict=PROMOTE, why=f"promoted by {request.user.get_username()}")
        else:
            raise ActionError(f"no rollout action {action!r}")
        messages.success(request, f"Rollout {rollout.pk}: {action} requested.")
    except ActionError as exc:
        messages.error(request, str(exc))
    return after_post(request, reverse("models"), ROLLOUT, rollout_context())
