"""What every dashboard view shares: who may see and change it (the roles, pool/models/roles.py;
acting as that user, for the audit trail), and the htmx-or-not way to answer."""

from __future__ import annotations

import functools

from django.contrib.auth.decorators import user_passes_test
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.template.loader import render_to_string

from pool.models import roles
from pool.services import audit

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def role_required(permission: str, *, to_see: str = roles.VIEW):
    """Every dashboard view has one: reading it (GET, HEAD) needs `to_see` (every role, by
    default), anything else `permission`. A visitor without a role is sent to log in; a
    request its role may not make is a 403, audited. Changes are recorded as the user's.

        @role_required(roles.OPERATE)     # viewers see it, operators and admins change it
        @role_required(roles.ADMINISTER, to_see=roles.ADMINISTER)  # admins only
    """

    def decorator(view):
        @functools.wraps(view)
        def as_the_user(request: HttpRequest, *args, **kwargs):
            needed = to_see if request.method in SAFE_METHODS else permission
            if not request.user.has_perm(needed):
                return forbidden(request, needed)
            with audit.acting_as(audit.USER, request.user.get_username()):
                return view(request, *args, **kwargs)

        return user_passes_test(lambda user: user.has_perm(roles.VIEW), login_url="login")(as_the_user)

    return decorator


def forbidden(request: HttpRequest, needed: str) -> HttpResponse:
    audit.denied(
        actor=request.user.get_username(),
        role=roles.role_of(request.user),
        attempt=f"{request.method} {request.path}",
        needed=needed,
    )
    message = f"Your role ({roles.role_of(request.user)}) may not do this: it needs {roles.codename(needed)}."
    return HttpResponseForbidden(message, content_type="text/plain; charset=utf-8")


def render_partial(request: HttpRequest, partial: str, context: dict) -> HttpResponse:
    """A partial for htmx; after a POST, the flash messages ride along out of band."""
    html = render_to_string(partial, context, request)
    if request.method == "POST":
        html += render_to_string("dashboard/partials/messages.html", {"oob": True}, request)
    return HttpResponse(html)


def page_or_partial(request: HttpRequest, page: str, partial: str, context: dict) -> HttpResponse:
    """The whole page, or for htmx just the part that changes (bound forms show their errors)."""
    if request.htmx:
        return render_partial(request, partial, context)
    return render(request, page, context)


def after_post(
    request: HttpRequest, to: str, partial: str, context: dict, *, trigger: str = ""
) -> HttpResponse:
    """A plain POST redirects, so a reload does not repeat it; an htmx POST gets the fresh
    partial, and `trigger` tells other parts of the page to refresh themselves."""
    if not request.htmx:
        return redirect(to)
    response = render_partial(request, partial, context)
    if trigger:
        response["HX-Trigger"] = trigger
    return response
