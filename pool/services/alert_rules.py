"""Alert rules: the operator's (desired state, audited: created, edited and deleted through
audit.save/delete, the defaults made here at the first run) and what the alert loop observes
of them (pool/loops/alerts.py: when a condition started to hold, firing or not, each
transition's AlertEvent and what the webhook answered)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from pool.models import AlertEvent, AlertRule
from pool.services import audit

DEFAULT_RULES = [
    {"name": "CPU use high", "metric": "cpu_percent", "threshold": 85.0, "severity": "warning"},
    {"name": "GPU use high", "metric": "gpu_percent", "threshold": 85.0, "severity": "warning"},
    {
        "name": "Latency up against the previous hour",
        "metric": "latency_increase_percent",
        "threshold": 200.0,
        "severity": "warning",
    },
    {"name": "Error rate high", "metric": "error_rate_percent", "threshold": 1.0, "severity": "critical"},
]


def ensure_default_rules() -> int:
    """The default rules that are missing, for the first run; returns how many were created."""
    created = 0
    for rule in DEFAULT_RULES:
        if not AlertRule.objects.filter(name=rule["name"]).exists():
            audit.save_row(AlertRule(**rule, duration_s=300), note="a default rule")
            created += 1
    return created


def observe(rule: AlertRule, **fields: Any) -> None:
    """Observed fields that are not a transition (when the condition started to hold)."""
    AlertRule.objects.filter(pk=rule.pk).update(**fields)
    for name, value in fields.items():
        setattr(rule, name, value)


def fire_or_resolve(rule: AlertRule, status: str, value: float | None, message: str) -> AlertEvent | None:
    """Record a transition: conditional, so that if two evaluators race only one records
    (and notifies) it. None where the other one did."""
    firing = status == AlertEvent.FIRING
    with transaction.atomic():
        changed = AlertRule.objects.filter(pk=rule.pk, firing=not firing).update(
            firing=firing, breached_since=rule.breached_since if firing else None
        )
        if not changed:
            return None
        rule.firing = firing
        if not firing:
            rule.breached_since = None
        return AlertEvent.objects.create(rule=rule, status=status, value=value, message=message)


def note_webhook(event: AlertEvent, status: str) -> None:
    event.webhook_status = status
    AlertEvent.objects.filter(pk=event.pk).update(webhook_status=status)
