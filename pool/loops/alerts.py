"""Alert rules: measure, compare, fire after the rule's duration, resolve, notify.

`evaluate()` is one step: the runtime calls it every few seconds, tests call it with
`now=` and `values=`. A rule fires once its metric has stayed past the threshold for
`duration_s`, and resolves as soon as it no longer is. Each transition is an AlertEvent,
a message to the dashboard group and, where configured, one Alertmanager-style POST.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from datetime import datetime

from django.utils import timezone
from prometheus_client import Counter, Gauge

from pool import inflight, metrics, webhook
from pool.loops import resources
from pool.models import AlertEvent, AlertRule, Member, PoolSettings, states
from pool.models.alerts import METRICS
from pool.services import alert_rules, events

log = logging.getLogger("pool.loops.alerts")


FIRING = Gauge("vibeadmin_alert_firing", "1 while an alert rule fires", ["rule", "severity"])
VALUE = Gauge(
    "vibeadmin_alert_value", "The value each alert rule last saw (NaN: nothing to measure)", ["rule"]
)
TRANSITIONS = Counter(
    "vibeadmin_alert_transitions_total", "Alert rules that fired or resolved", ["rule", "status"]
)


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
        alert_rules.observe(rule, breached_since=now)
    elif not breached and rule.breached_since is not None and not rule.firing:
        # pending -> ok: it did not hold long enough
        alert_rules.observe(rule, breached_since=None)
    if breached and not rule.firing and (now - rule.breached_since).total_seconds() >= rule.duration_s:
        # pending -> firing: held for the whole duration
        return transition(rule, AlertEvent.FIRING, value, now)
    if not breached and rule.firing:
        # firing -> resolved: no longer holds (or the rule was disabled)
        return transition(rule, AlertEvent.RESOLVED, value, now)
    return None


def transition(rule: AlertRule, status: str, value: float | None, now: datetime) -> AlertEvent | None:
    event = alert_rules.fire_or_resolve(rule, status, value, describe(rule, status, value))
    if event is None:
        return None
    TRANSITIONS.labels(rule.name, status).inc()
    url = PoolSettings.load().alert_webhook_url
    if url:
        alert_rules.note_webhook(event, notify(url, rule, event, now))
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


def notify(url: str, rule: AlertRule, event: AlertEvent, now: datetime) -> str:
    """Send the transition to the webhook; returns what happened, for the event list."""
    firing = event.status == AlertEvent.FIRING
    started = rule.breached_since if firing else _fired_at(rule)
    alert = webhook.Alert(
        name=rule.name,
        status=event.status,
        severity=rule.severity,
        summary=event.message,
        starts_at=started or now,
        ends_at=None if firing else now,
        labels={"metric": rule.metric},
        annotations={"value": "" if event.value is None else f"{event.value:g}"},
    )
    return webhook.send(url, alert)


def _fired_at(rule: AlertRule) -> datetime | None:
    last = rule.events.filter(status=AlertEvent.FIRING).first()
    return last.created_at if last else None
