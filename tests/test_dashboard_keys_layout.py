"""The API keys page in the Routing page's layout: each field of a new key and of a key's
limits with its own label and help beside it (no placeholder standing in for a label), and a
save that says what changed."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from pool.models import ApiKey
from pool.services.keys import apikey_create

pytestmark = pytest.mark.django_db


def test_every_field_has_a_label_its_help_and_no_placeholder(admin_client):
    apikey_create(name="acme")
    html = admin_client.get(reverse("keys")).content.decode()
    ids = set(re.findall(r'\sid="([^"]+)"', html))
    for section in ("new-key-form", f"limits-{ApiKey.objects.get().pk}"):
        part = html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
        fields = [t for t in re.findall(r"<(?:input|select)\b[^>]*>", part) if 'type="hidden"' not in t]
        assert any('name="weight"' in t for t in fields)
        for tag in fields:
            field_id = re.search(r'id="([^"]+)"', tag).group(1)
            assert f'for="{field_id}"' in html, f"no label for {field_id}"
            assert "placeholder" not in tag and "aria-label" not in tag
            described = re.search(r'aria-describedby="([^"]+)"', tag).group(1)
            assert set(described.split()) <= ids


def test_saving_a_keys_limits_says_what_changed(admin_client):
    key, _ = apikey_create(name="acme")
    response = admin_client.post(
        reverse("key_limits", args=[key.pk]), {"rpm": 30, "weight": 2, "priority": "interactive"}, follow=True
    )
    assert "Saved the limits of acme: Requests/min default → 30; Weight 1 → 2." in response.content.decode()
    assert (ApiKey.objects.get().rpm, ApiKey.objects.get().weight) == (30, 2)
