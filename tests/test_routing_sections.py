"""The Routing page in sections: each saves only its own fields and says what it changed;
an error shows on its field, tied to it; every field has a label and its help beside it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from pool.dashboard.forms import ROUTING_SECTIONS
from pool.models import PoolEvent, PoolSettings

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def page(client) -> str:
    response = client.get(reverse("routing"))
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_has_every_section_in_order_each_with_its_own_save(admin_client):
    html = page(admin_client)
    headings = re.findall(r'<h2 id="heading-([a-z]+)"', html)
    assert headings == [*ROUTING_SECTIONS, "cache"]
    for key in ROUTING_SECTIONS:
        assert f'action="{reverse("routing_section", args=[key])}"' in html
    assert html.count('<button type="submit">Save ') == len(ROUTING_SECTIONS) + 1


def test_a_section_saves_its_fields_and_says_what_changed(admin_client):
    before = PoolSettings.load()
    response = admin_client.post(
        reverse("routing_section", args=["line"]), {"queue_size": 55, "queue_timeout_s": 7}, **HTMX
    )
    html = response.content.decode()
    assert (
        f"Queue size {before.queue_size} → 55" in html
        and f"Queue deadline (s) {before.queue_timeout_s} → 7" in html
    )
    assert html.count("<section") == 1  # only this section comes back
    row = PoolSettings.load()
    assert (row.queue_size, row.queue_timeout_s) == (55, 7)
    assert (row.strategy, row.prompt_math) == (
        before.strategy,
        before.prompt_math,
    )  # other sections untouched
    assert set(PoolEvent.objects.filter(kind=PoolEvent.CHANGE).values_list("setting", flat=True)) == {
        "queue_size",
        "queue_timeout_s",
    }


def test_a_save_that_changes_nothing_says_so(admin_client):
    row = PoolSettings.load()
    response = admin_client.post(reverse("routing_section", args=["access"]), {}, **HTMX)
    assert "Nothing changed." in response.content.decode()
    assert PoolSettings.load().api_open == row.api_open is False


def test_a_long_text_is_said_changed_not_repeated(admin_client):
    data = {name: getattr(PoolSettings.load(), name) for name in ROUTING_SECTIONS["prompts"][2]}
    data.update(prompt_math="Reason carefully.", language_hint_enabled="on")
    html = admin_client.post(reverse("routing_section", args=["prompts"]), data, **HTMX).content.decode()
    assert "System prompt: math changed" in html and "Reason carefully." not in html.split("Saved:")[1]


def test_an_error_shows_on_its_field_tied_to_it_and_nothing_is_saved(admin_client):
    response = admin_client.post(
        reverse("routing_section", args=["sampling"]), {"math_temperature": 9, "math_top_p": 0.9}, **HTMX
    )
    html = response.content.decode()
    field = re.search(r'<input[^>]*name="math_temperature"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in field
    cell = re.search(r'<td class="invalid">.*?</td>', html, re.S).group(0)
    assert 'name="math_temperature"' in cell and "errorlist" in cell
    assert PoolSettings.load().math_temperature != 9


def test_a_plain_post_redirects_back_to_its_section(admin_client):
    response = admin_client.post(reverse("routing_section", args=["strategy"]), {"strategy": "least_work"})
    assert response.status_code == 302 and response["Location"].endswith("#section-strategy")
    assert PoolSettings.load().strategy == "least_work"
    assert "Strategy least connections → least work" in page(admin_client)  # the message, after the redirect


def test_every_field_has_a_label_and_its_help_is_tied_to_it(admin_client):
    html = page(admin_client)
    ids = set(re.findall(r'\sid="([^"]+)"', html))
    fields = re.findall(r"<(?:input|select|textarea)\b[^>]*>", html)
    for tag in fields:
        if 'type="hidden"' in tag:
            continue
        field_id = re.search(r'id="([^"]+)"', tag).group(1)
        assert f'for="{field_id}"' in html, f"no label for {field_id}"
        described = re.search(r'aria-describedby="([^"]+)"', tag)
        assert described, f"no help tied to {field_id}"
        assert set(described.group(1).split()) <= ids, f"{field_id} is described by a missing element"


def test_long_texts_are_folded_until_opened(admin_client):
    html = page(admin_client)
    for name in ("prompt_general", "prompt_tutor", "hint_solution"):
        assert re.search(rf'<details>\s*<summary>.*?</summary>\s*<textarea[^>]*name="{name}"', html, re.S)
