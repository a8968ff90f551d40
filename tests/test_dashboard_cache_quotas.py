"""The operator's side of the answer cache and quotas: a key's cache and quotas set on the
keys page and with `apikey`, its quota use shown (the warning past 80%), its usage per day
charted and downloadable as CSV, the solve page's cache and quotas on the Routing page, and
the cache panel with its Empty button."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from pool.models import ApiKey, CacheEntry, PoolSettings, UsageDay
from pool.services.keys import apikey_create

pytestmark = pytest.mark.django_db


def limits_post(**changes) -> dict:
    return {"rpm": "", "tpm": "", "max_parallel": "", "weight": 1, "priority": "interactive", **changes}


def test_a_key_is_created_with_its_cache_and_quotas_on_the_command_line(capsys):
    call_command(
        "apikey", "create", "school", "--cache", "--tokens-per-day", "1000", "--tokens-per-month", "20000"
    )
    key = ApiKey.objects.get(name="school")
    assert (key.cache, key.cache_sampled, key.tokens_per_day, key.tokens_per_month) == (
        True,
        False,
        1000,
        20000,
    )

    call_command("apikey", "set", "school", "--no-cache", "--tokens-per-day", "none", "--cache-sampled")
    key.refresh_from_db()
    assert (key.cache, key.cache_sampled, key.tokens_per_day, key.tokens_per_month) == (
        False,
        True,
        None,
        20000,
    )
    call_command("apikey", "list")
    assert "20000/month" in capsys.readouterr().out


def test_the_command_line_refuses_a_quota_that_is_not_a_count():
    apikey_create(name="school")
    with pytest.raises(CommandError, match="tokens-per-month must be 1 or more"):
        call_command("apikey", "set", "school", "--tokens-per-month", "0")
    with pytest.raises(CommandError, match="say what to set"):
        call_command("apikey", "set", "school")


def test_the_keys_page_sets_a_keys_quotas_and_cache_and_shows_the_warning(admin_client):
    key, _ = apikey_create(name="school")
    response = admin_client.post(
        reverse("key_limits", args=[key.pk]),
        limits_post(tokens_per_day=100, tokens_per_month=1000, cache="on"),
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.tokens_per_day, key.tokens_per_month, key.cache, key.cache_sampled) == (
        100,
        1000,
        True,
        False,
    )

    UsageDay.objects.create(
        tenant=f"key:{key.pk}", day=timezone.localdate(), prompt_tokens=40, completion_tokens=45
    )
    html = admin_client.get(reverse("keys")).content.decode()
    assert "85% of the day" in html and "state-unhealthy" in html
    assert reverse("key_usage", args=[key.pk]) in html


def test_the_keys_page_refuses_a_day_quota_above_the_month_on_the_form(admin_client):
    key, _ = apikey_create(name="school")
    response = admin_client.post(
        reverse("key_limits", args=[key.pk]), limits_post(tokens_per_day=5000, tokens_per_month=1000)
    )
    assert response.status_code == 200
    assert "could never be used" in response.content.decode()
    key.refresh_from_db()
    assert key.tokens_per_day is None


def test_a_keys_usage_per_day_is_charted_and_downloadable_as_csv(admin_client):
    key, _ = apikey_create(name="school, north")
    today = timezone.localdate()
    UsageDay.objects.create(
        tenant=f"key:{key.pk}", day=today, requests=3, prompt_tokens=30, completion_tokens=70
    )

    page = admin_client.get(reverse("key_usage", args=[key.pk])).content.decode()
    assert "<svg" in page and f"{today:%Y-%m-%d}: 100 tokens" in page
    response = admin_client.get(reverse("key_usage_csv", args=[key.pk]))
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="usage-school__north.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows == [
        {
            "tenant": "school, north",
            "day": today.isoformat(),
            "requests": "3",
            "prompt_tokens": "30",
            "completion_tokens": "70",
            "total_tokens": "100",
            "cache_hits": "0",
            "saved_tokens": "0",
            "time_zone": "UTC",
        }
    ]


def test_the_routing_page_sets_the_solve_pages_cache_and_quotas(admin_client):
    assert "The answer cache and quotas" in admin_client.get(reverse("routing")).content.decode()
    response = admin_client.post(
        reverse("solve_cache_quota"), {"solve_cache_sampled": "on", "solve_tokens_per_month": 50000}
    )
    assert response.status_code == 302
    row = PoolSettings.load()
    assert (
        row.solve_cache,
        row.solve_cache_sampled,
        row.solve_tokens_per_day,
        row.solve_tokens_per_month,
    ) == (
        False,
        True,
        None,
        50000,
    )


def test_the_cache_panel_shows_hit_rates_and_savings_and_empties_the_cache(admin_client):
    key, _ = apikey_create(name="judge")
    UsageDay.objects.create(
        tenant=f"key:{key.pk}",
        day=timezone.localdate(),
        cache_hits=3,
        cache_misses=1,
        saved_tokens=900,
        saved_s=12.5,
    )
    now = timezone.now()
    CacheEntry.objects.create(
        key="a" * 64, model_sha256="b" * 64, tenant="solve", answer="{}", created_at=now, used_at=now
    )
    html = admin_client.get(reverse("cache")).content.decode()
    assert (
        "Stored answers: 1" in html and "judge" in html and "75%" in html and "900" in html and "12.5" in html
    )

    epoch = PoolSettings.load().cache_epoch
    assert admin_client.post(reverse("cache_empty")).status_code == 302
    assert CacheEntry.objects.count() == 0
    assert PoolSettings.load().cache_epoch == epoch + 1


def test_the_cache_panel_says_when_quotas_fail_open(admin_client, monkeypatch):
    from pool import metrics

    # What the gateway's sampling loop reports when Redis is away (Gateway.sample).
    monkeypatch.setitem(metrics.degraded, "quotas", "quotas are not enforced: Redis is unreachable (refused)")
    html = admin_client.get(reverse("cache")).content.decode()
    assert "quotas are not enforced: Redis is unreachable" in html
