"""The dashboard's pages: staff see them, everyone else is sent to log in."""

import pytest
from django.urls import reverse

from pool.models import AlertRule, ApiKey, Member, states
from pool.services.members import member_add

pytestmark = pytest.mark.django_db

PAGES = ["dashboard", "members", "routing", "keys", "cache", "alerts", "autoscaling", "audit"]


@pytest.fixture
def student(client, django_user_model):
    """Logged in, but not staff."""
    client.force_login(django_user_model.objects.create_user("student", password="x"))
    return client


@pytest.mark.parametrize("page", PAGES)
def test_an_operator_sees_each_page_with_the_navigation(admin_client, page):
    response = admin_client.get(reverse(page))
    assert response.status_code == 200
    html = response.content.decode()
    for label in (
        "Overview",
        "Members",
        "Routing",
        "API keys",
        "Alerts",
        "Autoscaling",
        "Audit",
        "Solve page",
        "Log out",
    ):
        assert label in html
    assert 'class="lead"' in html  # each page says what it is for


@pytest.mark.parametrize("page", PAGES)
def test_an_anonymous_visitor_is_sent_to_log_in(client, page):
    response = client.get(reverse(page))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_logged_in_user_who_is_not_staff_is_sent_to_log_in(student):
    response = student.get(reverse("members"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_members_page_lists_members_with_their_state_and_buttons(admin_client):
    member_add(name="alpha", weight=3)
    member_add(url="http://gpu2:8080", name="far")
    Member.objects.filter(name="alpha").update(state=states.READY)
    html = admin_client.get(reverse("members")).content.decode()
    assert 'data-member="alpha"' in html and 'data-member="far"' in html
    assert "http://gpu2:8080" in html
    assert reverse("member_action", args=["alpha", "drain"]) in html


def test_the_overview_carries_the_last_15_minutes_for_its_charts(admin_client):
    response = admin_client.get(reverse("dashboard"))
    charts = response.context["charts"]
    assert len(charts["history"]["t"]) == 15 * 60 - 1
    assert 'id="chart-data"' in response.content.decode()


def test_the_overview_says_so_where_there_is_no_gpu(admin_client, monkeypatch):
    from pool.loops import resources

    monkeypatch.setattr(resources, "latest", None)
    resources.sample([])
    assert not resources.latest.gpu.available  # no NVIDIA driver on the test machine
    html = admin_client.get(reverse("dashboard")).content.decode()
    assert 'id="no-gpu"' in html and "No GPU measured here" in html
    assert 'data-chart="gpu"' not in html


def test_a_member_page_shows_its_last_log_lines(admin_client, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    member = member_add(name="alpha")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "member-alpha.log").write_text("loading model\nllama server listening\n")
    html = admin_client.get(reverse("member", args=[member.name])).content.decode()
    assert "llama server listening" in html


def test_the_keys_and_alerts_pages_list_what_exists(admin_client):
    ApiKey.objects.create(name="campus", prefix="va-abc", key_hash="h", requests=42)
    AlertRule.objects.create(name="Queue long", metric="queue_depth", threshold=10)
    assert "campus" in admin_client.get(reverse("keys")).content.decode()
    assert "Queue long" in admin_client.get(reverse("alerts")).content.decode()
