"""A key's students on the API keys page: its limits per student, and their usage per day
as CSV for the platform's own billing (the top students today are in the keys panel)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pool import usage
from pool.dashboard.forms import StudentLimitsForm
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.dashboard.views.keys import PAGE, PANEL, panel_context
from pool.models import ApiKey, roles


@role_required(roles.ADMINISTER)
@require_POST
def key_students(request: HttpRequest, pk: int) -> HttpResponse:
    form = StudentLimitsForm(request.POST, instance=get_object_or_404(ApiKey, pk=pk, revoked_at=None))
    if not form.is_valid():
        return page_or_partial(request, PAGE, PANEL, panel_context(students=form))
    form.apply()
    messages.success(request, f"Saved the limits per student of {form.instance.name}.")
    return after_post(request, reverse("keys"), PANEL, panel_context())


@role_required(roles.VIEW)
@require_GET
def key_students_csv(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=pk)
    response = HttpResponse(usage.students_csv(key), content_type="text/csv; charset=utf-8")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in key.name)
    response["Content-Disposition"] = f'attachment; filename="students-{safe}.csv"'
    return response
