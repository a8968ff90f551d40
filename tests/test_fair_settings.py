"""Weights and classes for fair sharing, set from the CLI, the API keys page and the Routing
page, and what the gateway makes of them (its registry, loaded from the database)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from pool.gateway.registry import Registry
from pool.models import ApiKey, PoolSettings
from pool.services.keys import apikey_create
from tests.helpers import routing_data

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_cli_creates_and_sets_a_keys_weight_and_class(capsys):
    call_command("apikey", "create", "district", "--weight", "2", "--priority", "batch")
    assert ApiKey.objects.values_list("weight", "priority").get() == (2, "batch")
    call_command("apikey", "set", "district", "--weight", "5")
    assert ApiKey.objects.values_list("weight", "priority").get() == (5, "batch")
    call_command("apikey", "set", "district", "--priority", "interactive")
    assert ApiKey.objects.values_list("weight", "priority").get() == (5, "interactive")
    call_command("apikey", "list")
    assert "interactive" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, says",
    [
        (["set", "nobody", "--weight", "2"], "no key named 'nobody'"),
        (["set", "district", "--weight", "0"], "--weight must be from 1 to 100"),
        (["set", "district"], "say what to set"),
        (["create", "other", "--weight", "101"], "--weight must be from 1 to 100"),
    ],
)
def test_the_cli_refuses_a_bad_weight_in_one_clear_line(args, says):
    apikey_create(name="district")
    with pytest.raises(CommandError, match=says):
        call_command("apikey", *args)
    assert ApiKey.objects.values_list("weight", "priority").get(name="district") == (1, "interactive")


def test_the_keys_page_sets_weight_and_class_and_refuses_a_bad_weight_on_the_form(admin_client):
    admin_client.post(reverse("key_create"), {"name": "campus", "weight": 3, "priority": "batch"})
    key = ApiKey.objects.get()
    assert (key.weight, key.priority) == (3, "batch")
    admin_client.post(
        reverse("key_limits", args=[key.pk]), {"rpm": "", "weight": 2, "priority": "interactive"}, **HTMX
    )
    key.refresh_from_db()
    assert (key.weight, key.priority) == (2, "interactive")
    response = admin_client.post(reverse("key_limits", args=[key.pk]), {"weight": 0}, **HTMX)
    assert "greater than or equal to 1" in response.content.decode()
    key.refresh_from_db()
    assert key.weight == 2
    page = admin_client.get(reverse("keys")).content.decode()
    assert "Share (15 min)" in page and "Waiting" in page


def test_the_routing_page_sets_the_solve_pages_weight_and_class(admin_client):
    data = routing_data(solve_weight=4, solve_priority="batch")
    admin_client.post(reverse("routing"), data, **HTMX)
    row = PoolSettings.load()
    assert (row.solve_weight, row.solve_priority) == (4, "batch")
    response = admin_client.post(reverse("routing"), {**data, "solve_weight": 1000}, **HTMX)
    assert "less than or equal to 100" in response.content.decode()


def test_the_gateway_counts_each_key_and_the_solve_page_as_tenants_with_their_weights():
    key, _ = apikey_create(name="district", weight=2, priority="batch")
    PoolSettings.objects.get_or_create(pk=1)
    PoolSettings.objects.update(solve_weight=3)
    registry = Registry()
    registry.apply([], list(ApiKey.objects.all()), PoolSettings.load())
    tenant = registry.keys[key.key_hash].tenant
    assert (tenant.id, tenant.name, tenant.weight, tenant.batch) == (f"key:{key.pk}", "district", 2, True)
    assert (registry.policy.solve_tenant.weight, registry.policy.solve_tenant.batch) == (3, False)
    ApiKey.objects.update(weight=1, priority="interactive")
    registry.apply([], list(ApiKey.objects.all()), PoolSettings.load())
    assert registry.keys[key.key_hash].tenant.weight == 1 and not registry.keys[key.key_hash].tenant.batch
