"""Users (admins only): who may use the dashboard and in which role; a new user's password
is shown once."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from pool.dashboard.forms import UserCreateForm, UserRoleForm
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.models import roles
from pool.services.users import user_set_role

PAGE, PANEL = "dashboard/users.html", "dashboard/partials/users_panel.html"
ADMINS_ONLY = role_required(roles.ADMINISTER, to_see=roles.ADMINISTER)


def panel_context(*, create_form: UserCreateForm | None = None, new_user: dict | None = None) -> dict:
    users = get_user_model().objects.order_by("username")
    return {
        "section": "users",
        "rows": [(user, roles.role_of(user), UserRoleForm(user=user)) for user in users],
        "create_form": create_form or UserCreateForm(),
        "new_user": new_user,
    }


@ADMINS_ONLY
@require_GET
def users(request: HttpRequest) -> HttpResponse:
    return render(request, PAGE, panel_context())


@ADMINS_ONLY
@require_POST
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST)
    if not (form.is_valid() and form.submit()):
        return page_or_partial(request, PAGE, PANEL, panel_context(create_form=form))
    user, password = form.result
    # As with API keys: the password goes out in this one response, never cached or stored.
    context = panel_context(new_user={"name": user.username, "password": password})
    response = page_or_partial(request, PAGE, PANEL, context)
    add_never_cache_headers(response)
    return response


@ADMINS_ONLY
@require_POST
def user_role(request: HttpRequest, pk: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=pk)
    form = UserRoleForm(request.POST, user=user)
    if form.is_valid():
        try:
            user_set_role(user=user, role=form.cleaned_data["role"])
            messages.success(request, f"{user.username} is now {form.cleaned_data['role']}.")
        except ValueError as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "; ".join(form.errors.get("role", ["choose a role"])))
    return after_post(request, reverse("users"), PANEL, panel_context())
