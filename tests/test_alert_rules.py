"""Alert rules fire only once their condition has held for the whole duration, resolve as
soon as it no longer does, and POST Alertmanager-style JSON once per transition."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from pool.bootstrap import first_run
from pool.loops import alerts
from pool.models import AlertEvent, AlertRule, PoolSettings

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)
HOT = {"cpu_percent": 97.0}
COOL = {"cpu_percent": 20.0}


class Webhook:
    """A tiny local HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self, status: int = 200):
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    PoolSettings.objects.update_or_create(pk=1, defaults={"alert_webhook_url": hook.url})
    yield hook
    hook.close()


@pytest.fixture
def cpu_rule():
    return AlertRule.objects.create(name="CPU use high", metric="cpu_percent", threshold=85, duration_s=300)


def at(seconds: float, values: dict) -> list[AlertEvent]:
    return alerts.evaluate(now=T0 + timedelta(seconds=seconds), values=values)


def test_a_rule_fires_only_after_its_duration(cpu_rule):
    assert at(0, HOT) == []
    assert at(299, HOT) == []
    cpu_rule.refresh_from_db()
    assert cpu_rule.breached_since == T0 and not cpu_rule.firing

    [event] = at(300, HOT)
    assert event.status == AlertEvent.FIRING and event.value == 97.0
    assert "host CPU use (%) is 97, above 85 for 300s" in event.message
    assert at(400, HOT) == []  # firing once, not every evaluation


def test_a_firing_rule_resolves_as_soon_as_the_condition_stops(cpu_rule):
    at(0, HOT)
    at(300, HOT)
    [event] = at(301, COOL)
    assert event.status == AlertEvent.RESOLVED
    assert at(302, COOL) == []
    cpu_rule.refresh_from_db()
    assert not cpu_rule.firing and cpu_rule.breached_since is None


def test_a_blip_shorter_than_the_duration_restarts_the_clock(cpu_rule):
    at(0, HOT)
    at(100, COOL)
    at(200, HOT)
    assert at(450, HOT) == []
    assert [e.status for e in at(500, HOT)] == [AlertEvent.FIRING]


def test_nothing_to_measure_never_fires(cpu_rule):
    for t in (0, 400, 800):
        assert at(t, {"cpu_percent": None}) == []


def test_disabling_a_firing_rule_resolves_it(cpu_rule):
    at(0, HOT)
    at(300, HOT)
    AlertRule.objects.filter(pk=cpu_rule.pk).update(enabled=False)
    assert [e.status for e in at(310, HOT)] == [AlertEvent.RESOLVED]


def test_a_below_rule_fires_when_the_value_drops():
    AlertRule.objects.create(
        name="Pool empty", metric="ready_members", comparison="below", threshold=1, duration_s=0
    )
    assert [e.status for e in at(0, {"ready_members": 0.0})] == [AlertEvent.FIRING]


def test_the_webhook_gets_alertmanager_json_once_per_transition(cpu_rule, webhook):
    for t in range(0, 600, 30):
        at(t, HOT)
    for t in range(600, 700, 30):
        at(t, COOL)

    assert [body["status"] for body in webhook.bodies] == ["firing", "resolved"]
    firing, resolved = webhook.bodies
    assert firing["version"] == "4" and firing["receiver"] == "vibeadmin"
    [alert] = firing["alerts"]
    assert alert["labels"] == {
        "alertname": "CPU use high",
        "severity": "warning",
        "metric": "cpu_percent",
        "service": "vibeadmin",
    }
    assert alert["startsAt"] == T0.isoformat().replace("+00:00", "Z")
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["alerts"][0]["endsAt"] == (T0 + timedelta(seconds=600)).isoformat().replace("+00:00", "Z")
    assert list(AlertEvent.objects.values_list("webhook_status", flat=True)) == ["HTTP 200", "HTTP 200"]


def test_a_webhook_that_fails_is_noted_and_does_not_stop_the_alert(cpu_rule):
    hook = Webhook(status=500)
    try:
        PoolSettings.objects.update_or_create(pk=1, defaults={"alert_webhook_url": hook.url})
        at(0, HOT)
        [event] = at(300, HOT)
    finally:
        hook.close()
    assert event.webhook_status == "HTTP 500"
    assert AlertRule.objects.get(pk=cpu_rule.pk).firing


def test_metrics_show_which_rules_fire(admin_client, cpu_rule):
    at(0, HOT)
    at(300, HOT)
    text = admin_client.get("/metrics").content.decode()
    assert 'vibeadmin_alert_firing{rule="CPU use high",severity="warning"} 1.0' in text
    assert 'vibeadmin_alert_transitions_total{rule="CPU use high",status="firing"}' in text


def test_the_first_run_creates_the_default_rules(settings):
    settings.VIBEADMIN_MEMBERS = 0
    first_run(lambda line: None, with_members=True)
    rules = {r.metric: r for r in AlertRule.objects.all()}
    assert set(rules) == {"cpu_percent", "gpu_percent", "latency_increase_percent", "error_rate_percent"}
    assert rules["cpu_percent"].threshold == 85 and rules["cpu_percent"].duration_s == 300
    assert rules["latency_increase_percent"].threshold == 200
    assert rules["error_rate_percent"].threshold == 1


def test_latency_is_compared_with_the_hour_before_the_last_five_minutes():
    baseline = alerts.LatencyBaseline()
    now = 100 * 60 + 30.0  # half-way through minute 100
    for minute in range(35, 95):
        baseline.add(minute, total_s=10 * 0.5, count=10)  # an hour at 0.5 s
    baseline.add(97, total_s=100.0, count=10)  # the last minutes are not part of the baseline
    assert baseline.mean_s(now) == pytest.approx(0.5)


def test_each_transition_is_pushed_to_the_dashboard(cpu_rule, monkeypatch):
    pushed = []
    monkeypatch.setattr(alerts.events, "broadcast", pushed.append)
    at(0, HOT)
    at(300, HOT)
    at(301, COOL)
    assert [(m["type"], m["event"]["kind"], m["event"]["status"]) for m in pushed] == [
        ("pool.event", "alert", "firing"),
        ("pool.event", "alert", "resolved"),
    ]
