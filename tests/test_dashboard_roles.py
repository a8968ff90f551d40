"""Roles: a viewer sees every page and its live data but no button it may not use; an
operator runs the pool but not its keys or users; an admin does everything. A request a role
may not make is a 403 and shows on the Audit page. `manage.py createuser` makes users."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from pool.models import ApiKey, Member, PoolEvent, PoolSettings, roles
from pool.services.members import member_add
from pool.services.users import user_create, user_set_role
from tests.helpers import routing_data

pytestmark = pytest.mark.django_db

PAGES = [
    "dashboard",
    "members",
    "routing",
    "keys",
    "cache",
    "alerts",
    "autoscaling",
    "audit",
    "quality",
    "models",
]


def client_as(role: str) -> Client:
    client = Client()
    client.force_login(user_create(name=f"a-{role}", role=role)[0])
    return client


@pytest.fixture
def viewer() -> Client:
    return client_as(roles.VIEWER)


@pytest.fixture
def operator() -> Client:
    return client_as(roles.OPERATOR)


@pytest.fixture
def admin() -> Client:
    return client_as(roles.ADMIN)


@pytest.fixture
def alpha() -> Member:
    member = member_add(name="alpha")
    Member.objects.filter(pk=member.pk).update(state="ready")
    return member


class PostButtons(HTMLParser):
    """The URLs a user can POST to from a page: each POST form's action that holds a submit
    button (a form shown read-only has none), log-out aside."""

    def __init__(self):
        super().__init__()
        self.form: str | None = None
        self.urls: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.form = attrs.get("action") if (attrs.get("method") or "").lower() == "post" else None
        elif tag == "button" and self.form and self.form != "/logout/" and attrs.get("type") == "submit":
            self.urls.add(self.form)

    def handle_endtag(self, tag):
        if tag == "form":
            self.form = None


def posts_on(html: str) -> set[str]:
    parser = PostButtons()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
def test_a_viewer_sees_every_page_without_a_button_to_change_anything(viewer, alpha, page):
    response = viewer.get(reverse(page))
    assert response.status_code == 200
    html = response.content.decode()
    assert posts_on(html) == set()
    assert "Users" not in re.sub(r"<main.*", "", html, flags=re.S)  # not in the navigation


def test_an_operator_sees_the_pools_buttons_but_not_the_keys(operator, alpha):
    ApiKey.objects.create(name="acme", prefix="va-xx", key_hash="x")
    members = operator.get(reverse("members")).content.decode()
    assert reverse("member_action", args=["alpha", "drain"]) in posts_on(members)
    assert reverse("routing_section", args=["line"]) in posts_on(
        operator.get(reverse("routing")).content.decode()
    )
    keys = operator.get(reverse("keys")).content.decode()
    assert "acme" in keys and posts_on(keys) == set()


def test_an_admin_sees_the_users_page_and_the_keys_buttons(admin):
    assert reverse("key_create") in posts_on(admin.get(reverse("keys")).content.decode())
    html = admin.get(reverse("users")).content.decode()
    assert "a-admin" in html and reverse("user_create") in posts_on(html)


@pytest.mark.parametrize(
    "url, data",
    [
        (reverse("member_action", args=["alpha", "drain"]), {}),
        (reverse("routing"), routing_data(queue_size=3)),
        (reverse("pool_scale"), {"count": 5}),
        (reverse("key_create"), {"name": "sneaky"}),
        (reverse("quality_start"), {}),
    ],
)
def test_a_viewers_post_is_a_403_changes_nothing_and_is_audited(viewer, alpha, url, data):
    before = (PoolSettings.load().queue_size, Member.objects.count(), ApiKey.objects.count())
    response = viewer.post(url, data)
    assert response.status_code == 403
    assert (PoolSettings.load().queue_size, Member.objects.count(), ApiKey.objects.count()) == before
    assert Member.objects.get(name="alpha").should_run
    denied = PoolEvent.objects.get(kind=PoolEvent.DENIED)
    assert (denied.actor, denied.subject, denied.old_value) == ("a-viewer", f"POST {url}", "viewer")


def test_an_operators_post_for_a_key_is_refused_but_a_drain_is_done(operator, alpha):
    assert operator.post(reverse("key_create"), {"name": "sneaky"}).status_code == 403
    assert not ApiKey.objects.exists()
    assert operator.post(reverse("member_action", args=["alpha", "drain"])).status_code == 302
    assert not Member.objects.get(name="alpha").should_run


def test_the_refusal_shows_on_the_audit_page(viewer, admin):
    viewer.post(reverse("pool_scale"), {"count": 9})
    page = admin.get(reverse("audit")).content.decode()
    assert "POST /dashboard/members/scale/" in page and "pool.operate" in page


def test_only_admins_see_the_users_page(viewer, operator):
    assert viewer.get(reverse("users")).status_code == 403
    assert operator.get(reverse("users")).status_code == 403


def test_an_admin_creates_a_user_whose_password_is_shown_once(admin):
    response = admin.post(reverse("user_create"), {"name": "teacher", "role": roles.VIEWER})
    password = re.search(r'id="new-password">([^<]+)<', response.content.decode()).group(1)
    assert "no-store" in response["Cache-Control"]
    user = authenticate(username="teacher", password=password)
    assert user is not None and roles.role_of(user) == roles.VIEWER
    assert password not in admin.get(reverse("users")).content.decode()


def test_an_admin_changes_a_role_and_the_change_is_audited(admin):
    teacher, _ = user_create(name="teacher", role=roles.VIEWER)
    admin.post(reverse("user_role", args=[teacher.pk]), {"role": roles.OPERATOR})
    teacher.refresh_from_db()
    assert roles.role_of(teacher) == roles.OPERATOR
    change = PoolEvent.objects.get(setting="role")
    assert (change.actor, change.old_value, change.new_value) == ("a-admin", "viewer", "operator")


def test_the_last_admin_cannot_be_demoted():
    only, _ = user_create(name="boss", role=roles.ADMIN)
    with pytest.raises(ValueError, match="last admin"):
        user_set_role(user=only, role=roles.VIEWER)
    user_create(name="deputy", role=roles.ADMIN)
    user_set_role(user=only, role=roles.VIEWER)
    assert roles.role_of(only) == roles.VIEWER


def test_a_user_without_a_role_is_sent_to_log_in_and_told_why(client):
    client.force_login(user_create(name="nobody", role=roles.NO_ROLE)[0])
    response = client.get(reverse("members"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert "has no dashboard role" in client.get(response["Location"]).content.decode()


def test_createuser_makes_a_user_in_its_role_and_prints_the_password_once(capsys):
    call_command("createuser", "ops", "--role", "operator")
    password = capsys.readouterr().out.strip().splitlines()[-1]
    user = authenticate(username="ops", password=password)
    assert user is not None and roles.role_of(user) == roles.OPERATOR
    created = PoolEvent.objects.get(subject="user ops")
    assert (created.actor, created.new_value) == ("cli", "role operator")


def test_createuser_changes_an_existing_users_role(capsys):
    user_create(name="ops", role=roles.VIEWER)
    call_command("createuser", "ops", "--role", "admin")
    assert "now admin" in capsys.readouterr().out


def test_createuser_refuses_a_bad_name():
    with pytest.raises(CommandError, match="username"):
        call_command("createuser", "no spaces allowed", "--role", "viewer")


def test_a_superuser_is_an_admin_whatever_its_groups(django_user_model):
    root = django_user_model.objects.create_superuser("root", "", "pw")
    assert roles.role_of(root) == roles.ADMIN
    with pytest.raises(ValueError, match="superuser"):
        user_set_role(user=root, role=roles.VIEWER)
