"""Members page actions: each button changes desired state only; bad input comes back on
the form and nothing is saved. htmx gets the partial, a plain POST a redirect."""

import pytest
from django.urls import reverse

from pool.models import Member, PoolEvent, states
from pool.services.members import member_add

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def ready_member():
    member = member_add(name="alpha")
    Member.objects.filter(pk=member.pk).update(state=states.READY)
    return Member.objects.get(pk=member.pk)


def post_action(client, member, action, **extra):
    return client.post(reverse("member_action", args=[member.name, action]), **extra)


def test_drain_only_asks_the_member_to_stop_and_returns_the_table_to_htmx(admin_client, ready_member):
    response = post_action(admin_client, ready_member, "drain", **HTMX)
    assert response.status_code == 200
    assert 'class="data members"' in response.content.decode()
    ready_member.refresh_from_db()
    assert ready_member.should_run is False
    assert ready_member.state == states.READY  # the supervisor, not the view, moves it
    assert PoolEvent.objects.filter(
        message="alpha: drain requested (up to 300s for in-flight requests)"
    ).exists()


def test_a_plain_post_redirects_back_to_the_members_page(admin_client, ready_member):
    response = post_action(admin_client, ready_member, "stop")
    assert response.status_code == 302 and response["Location"] == reverse("members")
    ready_member.refresh_from_db()
    assert ready_member.should_run is False


def test_start_restart_and_remove_change_desired_state(admin_client, ready_member):
    Member.objects.filter(pk=ready_member.pk).update(should_run=False, restarts=4)
    post_action(admin_client, ready_member, "start")
    ready_member.refresh_from_db()
    assert ready_member.should_run and ready_member.restarts == 0

    post_action(admin_client, ready_member, "restart")
    ready_member.refresh_from_db()
    assert ready_member.restart_requested

    post_action(admin_client, ready_member, "remove")
    ready_member.refresh_from_db()
    assert ready_member.remove_requested and not ready_member.should_run


def test_an_unknown_action_or_a_get_does_nothing(admin_client, ready_member):
    assert post_action(admin_client, ready_member, "explode").status_code == 404
    assert admin_client.get(reverse("member_action", args=["alpha", "drain"])).status_code == 405
    ready_member.refresh_from_db()
    assert ready_member.should_run


def test_adding_a_local_and_a_remote_member(admin_client):
    response = admin_client.post(reverse("member_add"), {"weight": 2, "gpu": 0}, **HTMX)
    assert response.status_code == 200 and response["HX-Trigger"] == "vibe:members"
    response = admin_client.post(
        reverse("member_add"), {"url": "http://gpu2:8080/", "weight": 1, "name": "far"}
    )
    assert response.status_code == 302
    local, remote = Member.objects.order_by("id")
    assert (local.kind, local.weight, local.gpu) == (states.LOCAL, 2, 0)
    assert (remote.name, remote.kind, remote.url) == ("far", states.REMOTE, "http://gpu2:8080")


@pytest.mark.parametrize(
    "data, error",
    [
        ({"weight": -1}, "greater than or equal to 1"),
        ({"weight": 1, "url": "gpu2:8080"}, "is not a valid member URL"),
        ({"weight": 1, "url": "http://gpu2:port"}, "invalid port"),
        ({"weight": 1, "gpu": -2}, "greater than or equal to 0"),
        ({"weight": 1, "name": "Bad Name!"}, "not a valid member name"),
    ],
)
def test_bad_member_input_is_shown_on_the_form_and_nothing_is_added(admin_client, data, error):
    for extra in ({}, HTMX):
        response = admin_client.post(reverse("member_add"), data, **extra)
        assert response.status_code == 200
        assert error in response.content.decode()
    assert not Member.objects.exists()


def test_scale_adds_members_up_to_the_count(admin_client):
    response = admin_client.post(reverse("pool_scale"), {"count": 3}, **HTMX)
    assert response.status_code == 200
    assert Member.objects.filter(should_run=True).count() == 3
    assert "Scale to 3" in response.content.decode()  # the flash rides along, out of band


@pytest.mark.parametrize("count, error", [(-1, "greater than or equal to 0"), (65, "at most 64 members")])
def test_scale_outside_the_allowed_range_is_refused_on_the_form(admin_client, settings, count, error):
    settings.VIBEADMIN_MAX_MEMBERS = 64
    for extra in ({}, HTMX):
        response = admin_client.post(reverse("pool_scale"), {"count": count}, **extra)
        assert error in response.content.decode()
    assert not Member.objects.exists()


def test_editing_weight_and_gpu_pin(admin_client, ready_member):
    response = admin_client.post(reverse("member", args=["alpha"]), {"weight": 5, "gpu": 1}, **HTMX)
    assert response.status_code == 200
    ready_member.refresh_from_db()
    assert (ready_member.weight, ready_member.gpu) == (5, 1)
    admin_client.post(reverse("member", args=["alpha"]), {"weight": 5, "gpu": ""})
    ready_member.refresh_from_db()
    assert ready_member.gpu is None


def test_a_negative_weight_is_refused_and_the_old_one_kept(admin_client, ready_member):
    response = admin_client.post(reverse("member", args=["alpha"]), {"weight": -3, "gpu": ""})
    assert "greater than or equal to 1" in response.content.decode()
    ready_member.refresh_from_db()
    assert ready_member.weight == 1
