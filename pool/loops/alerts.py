"""Alert rules: measure, compare, fire after the rule's duration, resolve, notify.

`evaluate()` is one step: the runtime calls it every few seconds, tests call it with
`now=` and `values=`. A rule fires once its metric has stayed past the threshold for
`duration_s`, and resolves as soon as it no longer is. Each transition is an AlertEvent,
a message to the dashboard group and, where configured, one Alertmanager-style POST.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import urllib.error
import urllib.request
from collections import deque
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter, Gauge

from pool import inflight, metrics
from pool.loops import resources
from pool.models import AlertEvent, AlertRule, Member, PoolSettings, states
from pool.services import events

log = logging.getLogger("pool.loops.alerts")

# What a rule can watch: metric -> what the dashboard calls it.
METRICS = {
    "cpu_percent": "host CPU use (%)",
    "gpu_percent": "busiest GPU's use (%)",
    "error_rate_percent": "failed requests, last minute (%)",
    "latency_increase_percent": "mean latency, last 5 min, against the hour before (% up)",
    "p95_latency_s": "p95 latency, last minute (s)",
    "queue_depth": "requests waiting for a member",
    "ready_members": "members ready to serve",
}

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
WEBHOOK_TIMEOUT_S = 5.0

FIRING = Gauge("vibeadmin_alert_firing", "1 while an alert rule fires", ["rule", "severity"])
VALUE = Gauge(
    "vibeadmin_alert_value", "The value each alert rule last saw (NaN: nothing to measure)", ["rule"]
)
TRANSITIONS = Counter(
    "vibeadmin_alert_transitions_total", "Alert rules that fired or resolved", ["rule", "status"]
)


def ensure_default_rules() -> int:
    """The default rules, for the first run; returns how many were created."""
    created = 0
    for rule in DEFAULT_RULES:
        _, new = AlertRule.objects.get_or_create(name=rule["name"], defaults={**rule, "duration_s": 300})
        created += new
    return created


# --- measuring ----------------------------------------------------------------------------


class LatencyBaseline:
    """Mean latency per finished minute, kept for 70 minutes, to compare the last five
    minutes against the hour before them (the gateway's window holds only 15)."""

    def __init__(self) -> None:
        self.minutes: deque[tuple[int, float, int]] = deque(maxlen=70)  # (minute, total seconds, requests)

    def add(self, minute: int, total_s: float, count: int) -> None:
        if not self.minutes or self.minutes[-1][0] < minute:
            self.minutes.append((minute, total_s, count))

    def observe(self, now: float) -> None:
        """Record the last finished minute from the gateway's per-second window."""
        minute = int(now // 60) - 1
        if self.minutes and self.minutes[-1][0] >= minute:
            return
        seconds = [s for s in metrics.window.last(120, now) if s.at // 60 == minute]
        self.add(minute, sum(s.latency.total for s in seconds), sum(s.latency.count for s in seconds))

    def mean_s(self, now: float) -> float | None:
        """Mean latency from 65 to 5 minutes ago."""
        current = int(now // 60)
        rows = [(total, n) for minute, total, n in self.minutes if current - 65 <= minute < current - 5]
        count = sum(n for _, n in rows)
        return sum(total for total, _ in rows) / count if count else None


baseline = LatencyBaseline()


def latency_increase_percent(now: float) -> float | None:
    before = baseline.mean_s(now)
    recent = metrics.summary(300, now)["mean_s"]
    if not before or recent is None:
        return None
    return (recent / before - 1) * 100


def measure(now: float | None = None) -> dict[str, float | None]:
    """Every metric a rule can watch, now; None where there is nothing to measure."""
    now = now if now is not None else timezone.now().timestamp()
    baseline.observe(now)
    minute = metrics.summary(60, now)
    return {
        "cpu_percent": resources.latest.cpu_percent if resources.latest else None,
        "gpu_percent": resources.busiest_gpu_percent(),
        "error_rate_percent": minute["error_rate"] * 100 if minute["requests"] else None,
        "latency_increase_percent": latency_increase_percent(now),
        "p95_latency_s": minute["p95_s"],
        "queue_depth": float(inflight.waiting()),
        "ready_members": float(Member.objects.filter(state=states.READY).count()),
    }


# --- one step -----------------------------------------------------------------------------


def evaluate(
    *, now: datetime | None = None, values: dict[str, float | None] | None = None
) -> list[AlertEvent]:
    """Look at every rule once; returns the transitions (fired or resolved) it made."""
    now = now or timezone.now()
    values = measure(now.timestamp()) if values is None else values
    transitions = []
    for rule in AlertRule.objects.all():
        value = values.get(rule.metric)
        VALUE.labels(rule.name).set(math.nan if value is None else value)
        event = step_rule(rule, value, now)
        if event is not None:
            transitions.append(event)
        FIRING.labels(rule.name, rule.severity).set(1 if rule.firing else 0)
    return transitions


def step_rule(rule: AlertRule, value: float | None, now: datetime) -> AlertEvent | None:
    breached = rule.enabled and rule.is_breached(value)
    if breached and rule.breached_since is None:
        # ok -> pending: the condition starts to hold; the clock for duration_s starts
        _observe(rule, breached_since=now)
    elif not breached and rule.breached_since is not None and not rule.firing:
        # pending -> ok: it did not hold long enough
        _observe(rule, breached_since=None)
    if breached and not rule.firing and (now - rule.breached_since).total_seconds() >= rule.duration_s:
        # pending -> firing: held for the whole duration
        return transition(rule, AlertEvent.FIRING, value, now)
    if not breached and rule.firing:
        # firing -> resolved: no longer holds (or the rule was disabled)
        return transition(rule, AlertEvent.RESOLVED, value, now)
    return None


def _observe(rule: AlertRule, **fields) -> None:
    AlertRule.objects.filter(pk=rule.pk).update(**fields)
    for name, value in fields.items():
        setattr(rule, name, value)


def transition(rule: AlertRule, status: str, value: float | None, now: datetime) -> AlertEvent | None:
    firing = status == AlertEvent.FIRING
    with transaction.atomic():
        # Conditional: if two evaluators race, only one records (and notifies) the transition.
        changed = AlertRule.objects.filter(pk=rule.pk, firing=not firing).update(
            firing=firing, breached_since=rule.breached_since if firing else None
        )
        if not changed:
            return None
        rule.firing = firing
        if not firing:
            rule.breached_since = None
        event = AlertEvent.objects.create(
            rule=rule, status=status, value=value, message=describe(rule, status, value)
        )
    TRANSITIONS.labels(rule.name, status).inc()
    url = PoolSettings.load().alert_webhook_url
    if url:
        event.webhook_status = notify(url, rule, event, now)
        AlertEvent.objects.filter(pk=event.pk).update(webhook_status=event.webhook_status)
    events.broadcast(
        {
            "type": "pool.event",
            "event": {
                "kind": "alert",
                "member": "",
                "status": status,
                "rule": rule.name,
                "message": event.message,
            },
        }
    )
    return event


def describe(rule: AlertRule, status: str, value: float | None) -> str:
    seen = "nothing to measure" if value is None else f"{value:.3g}"
    what = METRICS.get(rule.metric, rule.metric)
    if status == AlertEvent.FIRING:
        return f"{rule.name}: {what} is {seen}, {rule.comparison} {rule.threshold:g} for {rule.duration_s}s"
    return f"{rule.name}: resolved ({what} is {seen})"


# --- the webhook --------------------------------------------------------------------------


def alertmanager_payload(rule: AlertRule, event: AlertEvent, now: datetime) -> dict:
    """The JSON Alertmanager sends to its webhook receivers (version 4), for one alert."""
    firing = event.status == AlertEvent.FIRING
    started = rule.breached_since if firing else _fired_at(rule)
    labels = {
        "alertname": rule.name,
        "severity": rule.severity,
        "metric": rule.metric,
        "service": "vibeadmin",
    }
    annotations = {"summary": event.message, "value": "" if event.value is None else f"{event.value:g}"}
    base = f"http://{settings.HOST}:{settings.PORT}"
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{rule.name}"}}',
        "truncatedAlerts": 0,
        "status": event.status,
        "receiver": "vibeadmin",
        "groupLabels": {"alertname": rule.name},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": base + "/dashboard/alerts/",
        "alerts": [
            {
                "status": event.status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": _iso(started or now),
                "endsAt": "0001-01-01T00:00:00Z" if firing else _iso(now),
                "generatorURL": base + "/dashboard/alerts/",
                "fingerprint": hashlib.sha256(rule.name.encode()).hexdigest()[:16],
            }
        ],
    }


def _fired_at(rule: AlertRule) -> datetime | None:
    last = rule.events.filter(status=AlertEvent.FIRING).first()
    return last.created_at if last else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def notify(url: str, rule: AlertRule, event: AlertEvent, now: datetime) -> str:
    """POST the alert; returns what happened, for the event list. Never raises."""
    body = json.dumps(alertmanager_payload(rule, event, now)).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("alert webhook %s failed: %s", url, exc)
        return f"failed: {getattr(exc, 'reason', exc)}"[:64]
