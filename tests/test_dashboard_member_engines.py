"""The members page sets each member's engine, slots and (remote) key, and the table shows
slots in use / slots. Django's test client, a real database."""

import pytest
from django.urls import reverse

from pool.models import Member, states
from pool.services.members import member_add

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_adding_a_llama_server_member_with_its_slots(admin_client):
    response = admin_client.post(
        reverse("member_add"), {"weight": 1, "engine": "llama-server", "slots": 6}, **HTMX
    )

    assert response.status_code == 200
    member = Member.objects.get()
    assert (member.engine, member.slots, member.max_inflight) == (states.LLAMA_SERVER, 6, 6)


def test_slots_on_a_llama_cpp_python_member_come_back_on_the_form(admin_client):
    response = admin_client.post(
        reverse("member_add"), {"weight": 1, "engine": "llama-cpp-python", "slots": 4}
    )

    assert "one answer at a time" in response.content.decode()
    assert not Member.objects.exists()


def test_a_remote_members_key_is_kept_but_never_shown(admin_client):
    admin_client.post(
        reverse("member_add"), {"weight": 1, "url": "http://gpu2:8080", "api_key": "s3cret-key"}
    )
    member = Member.objects.get()
    assert member.api_key == "s3cret-key" and member.slots is None

    page = admin_client.get(reverse("member", args=[member.name])).content.decode()

    assert "s3cret-key" not in page
    admin_client.post(reverse("member", args=[member.name]), {"weight": 1, "gpu": "", "slots": 3})
    member.refresh_from_db()
    assert (member.api_key, member.slots, member.max_inflight) == (
        "s3cret-key",
        3,
        3,
    )  # empty key field: kept


def test_editing_a_local_members_engine_and_slots(admin_client):
    member = member_add(name="alpha", engine=states.LLAMA_SERVER, slots=8)

    admin_client.post(
        reverse("member", args=["alpha"]), {"weight": 1, "gpu": "", "engine": "llama-server", "slots": 2}
    )
    member.refresh_from_db()
    assert member.slots == 2
    admin_client.post(
        reverse("member", args=["alpha"]), {"weight": 1, "gpu": "", "engine": "llama-cpp-python", "slots": 2}
    )
    member.refresh_from_db()
    assert (member.engine, member.slots) == (states.LLAMA_CPP_PYTHON, 1)


def test_the_members_table_shows_slots_in_use_of_slots(admin_client):
    member = member_add(name="alpha", engine=states.LLAMA_SERVER, slots=8)
    Member.objects.filter(pk=member.pk).update(state=states.READY)

    table = admin_client.get(reverse("members_table")).content.decode()

    assert '<span data-field="inflight">0</span> / <span data-field="slots">8</span>' in table
    assert "llama-server" in table
