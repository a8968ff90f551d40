"""Members: the table that follows the supervisor live, its buttons, add, scale, edit."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pool.dashboard import snapshot
from pool.dashboard.forms import MemberAddForm, MemberEditForm, ScaleForm
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.loops import autoscale
from pool.member_logs import read_tail
from pool.models import Member, PoolEvent, roles
from pool.services import ActionError
from pool.services.members import member_drain, member_remove, member_restart, member_start, member_stop

ACTIONS = {
    "start": member_start,
    "stop": member_stop,
    "restart": member_restart,
    "drain": member_drain,
    "remove": member_remove,
}
TABLE = "dashboard/partials/members_table.html"


def table_context() -> dict:
    rows = snapshot.member_rows(list(Member.objects.select_related("model")))
    return {"rows": rows, "signature": snapshot.signature(rows), "nodes": snapshot.node_rows()}


def page_context(**forms) -> dict:
    return {
        "section": "members",
        "add_form": MemberAddForm(),
        "scale_form": ScaleForm(initial={"count": autoscale.running_count()}),
        **table_context(),
        **forms,
    }


@role_required(roles.VIEW)
@require_GET
def members(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/members.html", page_context())


@role_required(roles.VIEW)
@require_GET
def members_table(request: HttpRequest) -> HttpResponse:
    return render(request, TABLE, table_context())


@role_required(roles.OPERATE)
@require_POST
def member_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    member = get_object_or_404(Member, name=name)
    if action not in ACTIONS:
        raise Http404(f"no action {action!r}")
    try:
        ACTIONS[action](member=member)
    except ActionError as exc:
        messages.error(request, str(exc))
    return after_post(request, reverse("members"), TABLE, table_context())


@role_required(roles.OPERATE)
@require_POST
def member_add(request: HttpRequest) -> HttpResponse:
    form = MemberAddForm(request.POST)
    if form.is_valid() and form.submit():
        messages.success(request, f"Added {form.result.name}; the supervisor starts it now.")
        return after_post(
            request,
            reverse("members"),
            "dashboard/partials/member_add.html",
            {"add_form": MemberAddForm()},
            trigger="vibe:members",
        )
    return page_or_partial(
        request, "dashboard/members.html", "dashboard/partials/member_add.html", page_context(add_form=form)
    )


@role_required(roles.OPERATE)
@require_POST
def pool_scale(request: HttpRequest) -> HttpResponse:
    form = ScaleForm(request.POST)
    if form.is_valid() and form.submit():
        done = ", ".join(form.result) or "nothing to do"
        messages.success(request, f"Scale to {form.cleaned_data['count']}: {done}.")
        return after_post(
            request,
            reverse("members"),
            "dashboard/partials/member_scale.html",
            {"scale_form": ScaleForm(initial=form.cleaned_data)},
            trigger="vibe:members",
        )
    return page_or_partial(
        request,
        "dashboard/members.html",
        "dashboard/partials/member_scale.html",
        page_context(scale_form=form),
    )


def log_tail(member: Member) -> str:
    """This node's members' log files are fresher than the tail the supervisor keeps in the row."""
    if member.is_local and member.node == settings.VIBEADMIN_NODE:
        return read_tail(member) or member.log_tail
    return member.log_tail


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def member_detail(request: HttpRequest, name: str) -> HttpResponse:
    member = get_object_or_404(Member, name=name)
    form = MemberEditForm(request.POST or None, member=member)
    if request.method == "POST" and form.is_valid() and form.submit():
        messages.success(request, f"Saved {member.name}'s settings.")
        member.refresh_from_db()
        return after_post(
            request,
            reverse("member", args=[name]),
            "dashboard/partials/member_edit.html",
            {"member": member, "edit_form": MemberEditForm(member=member)},
        )
    context = {
        "section": "members",
        "member": member,
        "row": snapshot.member_rows([member])[0],
        "edit_form": form,
        "log": log_tail(member),
        "events": PoolEvent.objects.filter(member_name=name)[:20],
    }
    return page_or_partial(request, "dashboard/member.html", "dashboard/partials/member_edit.html", context)


@role_required(roles.VIEW)
@require_GET
def member_log(request: HttpRequest, name: str) -> HttpResponse:
    member = get_object_or_404(Member, name=name)
    return render(request, "dashboard/partials/member_log.html", {"member": member, "log": log_tail(member)})
