"""What every dashboard view shares: staff only (and acting as that user, for the audit
trail), and the htmx-or-not way to answer."""

from __future__ import annotations

import functools

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string

from pool.services import audit


def staff_required(view):
    """Staff only; every change of desired state the view makes is recorded as the user's."""

    @functools.wraps(view)
    def as_the_user(request: HttpRequest, *args, **kwargs):
        with audit.acting_as(audit.USER, request.user.get_username()):
            return view(request, *args, **kwargs)

    return staff_member_required(as_the_user, login_url="login")


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
