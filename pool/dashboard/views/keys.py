"""API keys: create (the key is shown once), revoke, limits and usage per key."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from pool import metrics, usage
from pool.dashboard.forms import KeyCreateForm, KeyLimitsForm, StudentLimitsForm
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.models import ApiKey, roles
from pool.services.keys import apikey_revoke

PAGE, PANEL = "dashboard/keys.html", "dashboard/partials/keys_panel.html"


TOP_STUDENTS = 5


def student_rows(bound: StudentLimitsForm | None = None) -> list:
    """Each active key's limits per student and its top students today."""
    today = timezone.localdate()
    return [
        (
            key,
            bound if bound and bound.instance.pk == key.pk else StudentLimitsForm(instance=key),
            usage.top_students(key.pk, today, today, limit=TOP_STUDENTS),
        )
        for key in ApiKey.objects.filter(revoked_at=None)
    ]


def panel_context(
    *,
    create_form: KeyCreateForm | None = None,
    limits: KeyLimitsForm | None = None,
    new_key: dict | None = None,
    students: StudentLimitsForm | None = None,
) -> dict:
    fair = metrics.tenant_summary()
    rows = [
        (
            key,
            limits if limits and limits.instance.pk == key.pk else KeyLimitsForm(instance=key),
            fair.get(key.name, metrics.NO_TENANT_FIGURES),
            usage.quota_use(usage.key_tenant(key), key.tokens_per_day, key.tokens_per_month),
        )
        for key in ApiKey.objects.all()
    ]
    return {
        "section": "keys",
        "rows": rows,
        "create_form": create_form or KeyCreateForm(),
        "new_key": new_key,
        "student_rows": student_rows(students),
    }


@role_required(roles.VIEW)
@require_GET
def keys(request: HttpRequest) -> HttpResponse:
    return render(request, PAGE, panel_context())


@role_required(roles.ADMINISTER)
@require_POST
def key_create(request: HttpRequest) -> HttpResponse:
    form = KeyCreateForm(request.POST)
    if not (form.is_valid() and form.submit()):
        return page_or_partial(request, PAGE, PANEL, panel_context(create_form=form))
    key, raw = form.result
    # The raw key goes out in this one response and is kept nowhere, not even in the session
    # (a database row until it expires): so no redirect here, and no copy in the browser's cache.
    response = page_or_partial(request, PAGE, PANEL, panel_context(new_key={"name": key.name, "raw": raw}))
    add_never_cache_headers(response)
    return response


@role_required(roles.ADMINISTER)
@require_POST
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=pk)
    try:
        apikey_revoke(name=key.name)
        messages.success(request, f"Revoked {key.name}; the gateway refuses it within a second.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return after_post(request, reverse("keys"), PANEL, panel_context())


@role_required(roles.ADMINISTER)
@require_POST
def key_limits(request: HttpRequest, pk: int) -> HttpResponse:
    before = get_object_or_404(ApiKey, pk=pk)
    form = KeyLimitsForm(request.POST, instance=get_object_or_404(ApiKey, pk=pk))
    if not form.is_valid():
        return page_or_partial(request, PAGE, PANEL, panel_context(limits=form))
    form.apply()
    changed = form.changes(before)
    said = ("; ".join(changed) + ". The gateway uses it within a second.") if changed else "nothing changed."
    messages.success(request, f"Saved the limits of {form.instance.name}: {said}")
    return after_post(request, reverse("keys"), PANEL, panel_context())
