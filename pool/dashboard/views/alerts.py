"""Alerts: the rules (add, edit, delete), the webhook, and the events as they happen."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from pool.dashboard.forms import AlertRuleForm, WebhookForm
from pool.dashboard.views.common import after_post, page_or_partial, role_required
from pool.models import AlertEvent, AlertRule, PoolSettings, roles
from pool.services import audit

PAGE, RULES, WEBHOOK = (
    "dashboard/alerts.html",
    "dashboard/partials/alert_rules.html",
    "dashboard/partials/webhook.html",
)


def page_context(**forms) -> dict:
    return {
        "section": "alerts",
        "rules": AlertRule.objects.all(),
        "rule_form": AlertRuleForm(),
        "webhook_form": WebhookForm(instance=PoolSettings.load()),
        "alert_events": AlertEvent.objects.select_related("rule")[:50],
        **forms,
    }


@role_required(roles.VIEW)
@require_GET
def alerts(request: HttpRequest) -> HttpResponse:
    return render(request, PAGE, page_context())


@role_required(roles.OPERATE)
@require_POST
def rule_create(request: HttpRequest) -> HttpResponse:
    form = AlertRuleForm(request.POST)
    if not form.is_valid():
        return page_or_partial(request, PAGE, RULES, page_context(rule_form=form))
    rule = form.apply()
    messages.success(request, f"Added the rule {rule.name}.")
    return after_post(request, reverse("alerts"), RULES, page_context())


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=pk)
    form = AlertRuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        form.apply()
        messages.success(request, f"Saved the rule {rule.name}.")
        return after_post(
            request,
            reverse("alerts"),
            "dashboard/partials/alert_rule_form.html",
            {"rule": rule, "form": AlertRuleForm(instance=rule)},
        )
    context = {"section": "alerts", "rule": rule, "form": form}
    return page_or_partial(
        request, "dashboard/alert_rule.html", "dashboard/partials/alert_rule_form.html", context
    )


@role_required(roles.OPERATE)
@require_POST
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=pk)
    audit.delete_row(rule)
    messages.success(request, f"Deleted the rule {rule.name} and its events.")
    return after_post(request, reverse("alerts"), RULES, page_context())


@role_required(roles.OPERATE)
@require_POST
def webhook(request: HttpRequest) -> HttpResponse:
    form = WebhookForm(request.POST, instance=PoolSettings.load())
    if not form.is_valid():
        return page_or_partial(request, PAGE, WEBHOOK, page_context(webhook_form=form))
    form.apply()
    messages.success(request, "Saved the webhook." if form.instance.alert_webhook_url else "Webhook off.")
    return after_post(request, reverse("alerts"), WEBHOOK, page_context())


@role_required(roles.VIEW)
@require_GET
def alert_events(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/partials/alert_events.html",
        {"alert_events": AlertEvent.objects.select_related("rule")[:50]},
    )
