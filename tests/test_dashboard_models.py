"""The Models page: the library listed with what each GGUF says of itself, a model added by
its path (a bad file refused on the form), removed unless a member serves it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from pool.models import Model, PoolEvent
from pool.services.library import model_add
from pool.services.members import member_add
from testing.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_page_lists_each_model_with_its_metadata_and_members(admin_client, tmp_path):
    model = model_add(path=write_tiny_gguf(tmp_path / "tiny.gguf"), name="tiny", alias="small")
    member_add(name="m1", model=model)
    page = admin_client.get(reverse("models")).content.decode()
    assert 'data-model="tiny"' in page and "alias small" in page and "llama" in page and "Q4_K_M" in page
    assert "hashing" in page  # its sha256 is still being computed: progress shown
    assert "m1" in page


def test_a_model_is_added_by_its_path_and_audited_as_the_user(admin_client, tmp_path):
    path = write_tiny_gguf(tmp_path / "new.gguf")
    response = admin_client.post(reverse("model_add"), {"path": str(path), "name": "new"}, **HTMX)
    assert response.status_code == 200 and 'data-model="new"' in response.content.decode()
    assert Model.objects.get(name="new").path == str(path)
    assert PoolEvent.objects.get(subject="model new").actor == "admin"


def test_a_file_that_is_not_a_gguf_is_refused_on_the_form(admin_client, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a model")
    response = admin_client.post(reverse("model_add"), {"path": str(path)}, **HTMX)
    assert "is not a GGUF file" in response.content.decode()
    assert not Model.objects.exists()


def test_a_served_model_is_not_removed(admin_client, tmp_path):
    model = model_add(path=write_tiny_gguf(tmp_path / "tiny.gguf"), name="tiny")
    member_add(name="m1", model=model)
    response = admin_client.post(reverse("model_remove", args=["tiny"]), **HTMX)
    assert "served by m1" in response.content.decode()
    assert Model.objects.filter(name="tiny").exists()


def test_a_rollout_started_on_the_page_shows_live_with_its_abort_button(admin_client, tmp_path):
    from pool.model_file import ModelChoice
    from pool.services.library import library_ensure_configured

    library_ensure_configured(ModelChoice(write_tiny_gguf(tmp_path / "old.gguf"), "old", "", False))
    model_add(path=write_tiny_gguf(tmp_path / "new.gguf"), name="new")
    member_add(name="m1")
    response = admin_client.post(
        reverse("rollout_start"), {"target": "new", "canary": "20", "gate": "on"}, **HTMX
    )
    assert response["HX-Trigger"] == "vibe:rollout"  # the panel refreshes itself
    panel = admin_client.get(reverse("rollout_panel")).content.decode()
    assert "old → new" in panel and "canary 20%" in panel and "gated" in panel
    assert 'data-state="pending"' in panel and "abort" in panel
    panel = admin_client.post(reverse("rollout_action", args=["abort"]), **HTMX).content.decode()
    assert "abort requested" in panel


def test_a_rollout_the_model_cannot_do_is_refused_on_the_form(admin_client, tmp_path):
    from pool.model_file import ModelChoice
    from pool.services.library import library_ensure_configured

    library_ensure_configured(ModelChoice(write_tiny_gguf(tmp_path / "old.gguf"), "old", "", False))
    response = admin_client.post(reverse("rollout_start"), {"target": "old"}, **HTMX)
    assert "old is the primary model already" in response.content.decode()


def test_a_member_s_model_is_changed_on_its_page_and_audited(admin_client, tmp_path):
    from pool.models import Member

    model_add(path=write_tiny_gguf(tmp_path / "tiny.gguf"), name="tiny")
    member_add(name="m1")
    response = admin_client.post(reverse("member", args=["m1"]), {"weight": 1, "model": "tiny"}, **HTMX)
    assert response.status_code == 200
    assert Member.objects.get(name="m1").model.name == "tiny"
    assert PoolEvent.objects.filter(subject="member m1", setting="model", new_value="tiny").exists()
