"""Routing, API keys, alert rules, the webhook and autoscaling settings through their forms."""

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse

from pool.models import AlertRule, ApiKey, PoolEvent, PoolSettings
from pool.models.apikey import hash_key
from tests.helpers import routing_data

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_routing_saves_the_strategy_and_the_rest_each_change_recorded_as_the_users(admin_client):
    response = admin_client.post(reverse("routing"), routing_data(), **HTMX)
    assert response.status_code == 200 and 'id="routing-sections"' in response.content.decode()
    row = PoolSettings.load()
    assert (row.strategy, row.queue_size, row.queue_timeout_s, row.prompt_general) == (
        "round_robin",
        100,
        10,
        "Be brief.",
    )
    assert row.language_hint_enabled and not row.api_open
    assert row.solve_rpm == 20
    changed = PoolEvent.objects.filter(kind=PoolEvent.CHANGE, actor="admin", actor_kind="user")
    assert changed.filter(setting="strategy", new_value="round_robin").exists()
    assert changed.filter(setting="queue_size", new_value="100").exists()


@pytest.mark.parametrize(
    "changes", [{"strategy": "fastest"}, {"queue_size": 0}, {"queue_timeout_s": "soon"}, {"solve_rpm": 0}]
)
def test_bad_routing_input_is_refused_and_nothing_saved(admin_client, changes):
    response = admin_client.post(reverse("routing"), routing_data(**changes))
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    row = PoolSettings.load()
    assert (row.strategy, row.queue_size) == ("least_connections", 256)


def test_a_new_key_is_shown_once_and_only_its_hash_is_kept(admin_client):
    response = admin_client.post(reverse("key_create"), {"name": "campus", "rpm": 60})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = response.content.decode().split('id="new-key">')[1].split("<")[0]
    assert not [s for s in Session.objects.all() if raw in str(s.get_decoded())], "a raw key in the session"
    key = ApiKey.objects.get(name="campus")
    assert key.key_hash == hash_key(raw) and key.rpm == 60
    assert raw not in admin_client.get(reverse("keys")).content.decode()  # not shown again


def test_htmx_gets_the_new_key_in_the_panel(admin_client):
    response = admin_client.post(reverse("key_create"), {"name": "campus"}, **HTMX)
    assert 'id="new-key">va-' in response.content.decode()


def test_a_duplicate_or_nameless_key_is_refused_on_the_form(admin_client):
    admin_client.post(reverse("key_create"), {"name": "campus"})
    response = admin_client.post(reverse("key_create"), {"name": "campus"}, **HTMX)
    assert "already exists" in response.content.decode()
    response = admin_client.post(reverse("key_create"), {"name": "", "rpm": -1})
    assert "This field is required" in response.content.decode()
    assert ApiKey.objects.count() == 1


def test_revoking_a_key_and_changing_its_limits(admin_client):
    admin_client.post(reverse("key_create"), {"name": "campus"})
    key = ApiKey.objects.get()
    admin_client.post(reverse("key_limits", args=[key.pk]), {"rpm": 30, "tpm": "", "max_parallel": 2}, **HTMX)
    key.refresh_from_db()
    assert (key.rpm, key.tpm, key.max_parallel) == (30, None, 2)
    response = admin_client.post(reverse("key_limits", args=[key.pk]), {"rpm": 0}, **HTMX)
    assert "greater than or equal to 1" in response.content.decode()
    admin_client.post(reverse("key_revoke", args=[key.pk]))
    key.refresh_from_db()
    assert key.rpm == 30 and not key.is_active


def rule_data(**changes):
    data = {
        "name": "Queue long",
        "metric": "queue_depth",
        "comparison": "above",
        "threshold": "10",
        "duration_s": 60,
        "severity": "warning",
        "enabled": "on",
    }
    return {**data, **changes}


def test_alert_rules_can_be_added_edited_and_deleted(admin_client):
    response = admin_client.post(reverse("rule_create"), rule_data(), **HTMX)
    assert "Queue long" in response.content.decode()
    rule = AlertRule.objects.get(name="Queue long")
    admin_client.post(reverse("rule_edit", args=[rule.pk]), rule_data(threshold="20", enabled=""))
    rule.refresh_from_db()
    assert rule.threshold == 20 and not rule.enabled
    assert admin_client.post(reverse("rule_delete", args=[rule.pk])).status_code == 302
    assert not AlertRule.objects.filter(name="Queue long").exists()


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"threshold": "lots"}, "Enter a number."),
        ({"metric": "mood"}, "Select a valid choice"),
        ({"duration_s": -5}, "greater than or equal to 0"),
    ],
)
def test_a_bad_rule_is_shown_back_and_not_saved(admin_client, changes, error):
    for extra in ({}, HTMX):
        response = admin_client.post(reverse("rule_create"), rule_data(**changes), **extra)
        assert error in response.content.decode()
    assert not AlertRule.objects.filter(name="Queue long").exists()


def test_the_webhook_url_is_validated(admin_client):
    response = admin_client.post(reverse("webhook"), {"alert_webhook_url": "not a url"}, **HTMX)
    assert "Enter a valid URL" in response.content.decode()
    assert PoolSettings.load().alert_webhook_url == ""
    admin_client.post(reverse("webhook"), {"alert_webhook_url": "http://hooks.local/alerts"})
    assert PoolSettings.load().alert_webhook_url == "http://hooks.local/alerts"


def autoscale_data(**changes):
    data = {
        "autoscale_enabled": "on",
        "autoscale_min": 1,
        "autoscale_max": 4,
        "autoscale_metric": "inflight_per_member",
        "autoscale_target": 0.8,
        "autoscale_cooldown_s": 60,
    }
    return {**data, **changes}


def test_autoscaling_settings_are_saved(admin_client):
    response = admin_client.post(reverse("autoscaling"), autoscale_data(), **HTMX)
    assert response.status_code == 200 and response["HX-Trigger"] == "vibe:scaling"
    row = PoolSettings.load()
    assert row.autoscale_enabled and (row.autoscale_min, row.autoscale_max, row.autoscale_cooldown_s) == (
        1,
        4,
        60,
    )


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"autoscale_min": 5, "autoscale_max": 2}, "must be at least the fewest members"),
        ({"autoscale_max": 65}, "at most 64"),
        ({"autoscale_target": 0}, "above 0"),
        ({"autoscale_target": "high"}, "Enter a number."),
    ],
)
def test_bad_autoscaling_settings_are_refused(admin_client, settings, changes, error):
    settings.VIBEADMIN_MAX_MEMBERS = 64
    response = admin_client.post(reverse("autoscaling"), autoscale_data(**changes))
    assert error in response.content.decode()
    assert not PoolSettings.load().autoscale_enabled


def test_the_capacity_hint_works_from_measured_latency(admin_client, monkeypatch):
    from pool import metrics

    monkeypatch.setattr(metrics, "window", metrics.Window())
    for _ in range(4):
        metrics.record_request(member="m1", status=200, latency_s=2.0)
    response = admin_client.get(reverse("capacity"), {"target_qps": 3, "spares": 2}, **HTMX)
    hint = response.context["hint"]
    assert hint.per_member_qps == pytest.approx(0.5) and hint.needed == 3 / 0.5 + 2
    assert "8 members" in response.content.decode()


def test_the_capacity_form_refuses_a_target_that_is_not_positive(admin_client):
    response = admin_client.get(reverse("dashboard"), {"target_qps": "-3", "spares": 2})
    assert "greater than or equal to 0.01" in response.content.decode()
