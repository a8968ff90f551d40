"""The operator's side of voting: the solve page's samples per math problem and the cap on
the Routing page, a key's default on the API keys page; bad values said on the form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from pool.models import ApiKey, PoolSettings
from pool.services.keys import apikey_create

pytestmark = pytest.mark.django_db


def test_the_routing_page_sets_the_solve_pages_samples_and_the_cap(admin_client):
    page = admin_client.get(reverse("routing")).content.decode()
    assert 'name="solve_samples"' in page and 'name="max_samples"' in page
    response = admin_client.post(reverse("solve_cache_quota"), {"solve_samples": 5, "max_samples": 6})
    assert response.status_code == 302
    row = PoolSettings.load()
    assert (row.solve_samples, row.max_samples) == (5, 6)

    kept = admin_client.post(reverse("solve_cache_quota"), {"solve_cache": "on"})  # a post that omits them
    assert kept.status_code == 302
    assert (PoolSettings.load().solve_samples, PoolSettings.load().max_samples) == (5, 6)


def test_too_many_samples_are_refused_on_the_form(admin_client):
    response = admin_client.post(
        reverse("solve_cache_quota"), {"solve_samples": 99}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "less than or equal to 16" in response.content.decode()
    assert PoolSettings.load().solve_samples == 1


def test_the_keys_page_sets_a_keys_samples(admin_client):
    key, _ = apikey_create(name="school")
    page = admin_client.get(reverse("keys")).content.decode()
    assert 'name="samples"' in page
    post = {"rpm": "", "tpm": "", "max_parallel": "", "weight": 1, "priority": "interactive", "samples": 3}
    response = admin_client.post(reverse("key_limits", args=[key.pk]), post)
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).samples == 3
