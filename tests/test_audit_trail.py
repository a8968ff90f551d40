"""The audit trail: every change of desired state, from the dashboard, the command line and
the autoscaler, shows on the Audit page with who made it, its old and new values and when;
secrets never do; /metrics counts the changes."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from pool.loops import autoscale
from pool.loops.autoscale import Load
from pool.models import ApiKey, Member, PoolEvent, PoolSettings
from pool.services import audit
from pool.services.members import member_add, pool_scale
from tests.helpers import routing_data

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def audit_page(client, **filters) -> str:
    response = client.get(reverse("audit"), filters)
    assert response.status_code == 200
    return response.content.decode()


def rows(page: str) -> list[str]:
    """The table's rows as text, one string per change."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        " ".join(re.sub(r"<[^>]+>", " ", row).split())
        for row in body.split("</tr>")
        if "<td" in row and "colspan" not in row
    ]


def test_a_change_made_on_a_dashboard_form_shows_with_the_users_name(admin_client):
    admin_client.post(reverse("routing"), routing_data(queue_size=77), **HTMX)
    [row] = rows(audit_page(admin_client, setting="queue_size"))
    assert "admin user" in row and "pool settings" in row
    assert row.endswith("queue_size 256 77")


def test_a_change_made_on_the_command_line_shows_as_the_cli(admin_client):
    call_command("pool", "strategy", "round_robin")
    [row] = rows(audit_page(admin_client, setting="strategy"))
    assert "cli cli" in row and row.endswith("strategy least_connections round_robin")


def test_a_key_changed_on_the_command_line_shows_as_the_cli(admin_client):
    call_command("apikey", "create", "campus")
    call_command("apikey", "set", "campus", "--weight", "3")
    page = audit_page(admin_client, actor="cli", setting="weight")
    [row] = rows(page)
    assert "key campus" in row and row.endswith("weight 1 3")


def test_the_autoscalers_changes_show_as_the_autoscaler(admin_client):
    PoolSettings.objects.update_or_create(
        pk=1,
        defaults={"autoscale_enabled": True, "autoscale_min": 1, "autoscale_max": 2, "autoscale_target": 1.0},
    )
    pool_scale(count=1)
    autoscale.step(load=Load(inflight=4, queue=0))
    assert Member.objects.filter(should_run=True).count() == 2
    page = audit_page(admin_client, actor="autoscaler")
    assert rows(page) and all("autoscaler autoscaler" in row for row in rows(page))
    assert "member m2" in page


def test_a_member_action_on_the_dashboard_shows_under_that_member(admin_client):
    member_add(name="alpha")
    member_add(name="beta")
    admin_client.post(reverse("member_action", args=["alpha", "drain"]), **HTMX)
    changed = rows(audit_page(admin_client, member="alpha", actor="admin"))
    assert changed and all("member alpha" in row for row in changed)
    assert any(row.endswith("should_run on off") for row in changed)


def test_filters_narrow_by_actor_setting_and_time(admin_client):
    admin_client.post(reverse("routing"), routing_data(queue_size=77), **HTMX)
    call_command("pool", "strategy", "ip_hash")
    assert all("cli" in row for row in rows(audit_page(admin_client, actor="cli")))
    assert rows(audit_page(admin_client, since="2999-01-01T00:00")) == []
    assert (
        len(rows(audit_page(admin_client, until="2999-01-01T00:00")))
        == PoolEvent.objects.filter(kind=PoolEvent.CHANGE).count()
    )


def test_the_trail_comes_a_page_at_a_time(admin_client):
    with audit.acting_as(audit.CLI):
        for n in range(1, 56):
            row = PoolSettings.load()
            row.queue_size = n
            audit.save_row(row)
    first, second = audit_page(admin_client), audit_page(admin_client, page=2)
    assert len(rows(first)) == 50 and len(rows(second)) >= 5
    assert "Page 1 of" in first and 'rel="next"' in first


def test_secrets_never_show_on_the_audit_page(admin_client):
    created = admin_client.post(reverse("key_create"), {"name": "campus"}, **HTMX).content.decode()
    raw = re.search(r'id="new-key">([^<]+)<', created).group(1)
    admin_client.post(
        reverse("member_add"),
        {"url": "http://gpu2:8080", "name": "far", "weight": 1, "api_key": "member-secret-123"},
        **HTMX,
    )
    member = Member.objects.get(name="far")
    admin_client.post(
        reverse("member", args=["far"]),
        {"weight": 1, "api_key": "member-secret-456", "slots": ""},
        **HTMX,
    )
    hook = "https://ops:hunter2@hooks.example.com/services/T00/B00/XSECRETX?token=tok789"
    admin_client.post(reverse("webhook"), {"alert_webhook_url": hook}, **HTMX)
    assert Member.objects.get(pk=member.pk).api_key == "member-secret-456"
    assert PoolSettings.load().alert_webhook_url == hook
    page = audit_page(admin_client)
    shown = " ".join(PoolEvent.objects.values_list("message", flat=True)) + page
    for secret in (
        raw,
        ApiKey.objects.get().key_hash,
        "member-secret-123",
        "member-secret-456",
        "hunter2",
        "XSECRETX",
        "tok789",
    ):
        assert secret not in shown
    assert "https://hooks.example.com/…" in page  # which hook, without its credentials
    assert "api_key (set) (changed)" in " ".join(rows(page))


def test_the_page_is_for_staff_only(client):
    response = client.get(reverse("audit"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_metrics_count_the_changes_by_actor_kind_and_setting(admin_client):
    admin_client.post(reverse("routing"), routing_data(queue_size=77), **HTMX)
    call_command("pool", "strategy", "ip_hash")
    exposed = admin_client.get("/metrics").content.decode()
    assert 'vibeadmin_desired_state_changes_total{actor_kind="user",setting="queue_size"} 1.0' in exposed
    assert 'vibeadmin_desired_state_changes_total{actor_kind="cli",setting="strategy"} 1.0' in exposed


def test_the_settings_rules_are_the_models_so_every_path_checks_them_alike():
    with pytest.raises(ValidationError) as refused:
        audit.save_row(PoolSettings(queue_size=0))
    assert refused.value.message_dict == {"queue_size": ["the queue must hold at least one request"]}
    with pytest.raises(ValidationError):
        audit.save_row(PoolSettings(autoscale_min=3, autoscale_max=2))
    assert not PoolEvent.objects.filter(kind=PoolEvent.CHANGE).exists()


def test_the_routing_pages_sampling_and_tutor_rules_hold_on_the_command_line_too(admin_client):
    """The rules the Routing page shows are PoolSettings.clean()'s: `pool config` meets the
    same messages, nothing is saved when one value fails, and a good change is the CLI's."""
    from django.core.management.base import CommandError

    for assignment, message in [
        ("math_temperature=2.5", "math_temperature: a temperature from 0 to 2"),
        ("code_top_p=0", "code_top_p: a top_p above 0 and at most 1"),
        ("solve_max_turns=0", "solve_max_turns: let a conversation send at least its question"),
        ("queue_size=0", "queue_size: the queue must hold at least one request"),
        (
            "solve_tokens_per_day=100 solve_tokens_per_month=50",
            "solve_tokens_per_day: cannot be more than the month",
        ),
        ("queue_size=many", "queue_size: "),
        ("no_such_setting=1", "no setting 'no_such_setting'"),
    ]:
        with pytest.raises(CommandError, match=re.escape(message)):
            call_command("pool", "config", "queue_size=9", *assignment.split())
    assert PoolSettings.load().queue_size == 256  # the good value beside a bad one: not saved
    assert not PoolEvent.objects.filter(kind=PoolEvent.CHANGE).exists()

    call_command("pool", "config", "math_temperature=0.3", "math_max_tokens=900")
    assert PoolSettings.load().sampling("math") == (0.3, 0.95, 900)
    [row] = rows(audit_page(admin_client, setting="math_max_tokens"))
    assert "cli cli" in row and row.endswith("math_max_tokens (none) 900")
    call_command("pool", "config", "math_max_tokens=")  # empty clears an optional setting
    assert PoolSettings.load().math_max_tokens is None

    form = admin_client.post(reverse("routing"), routing_data(math_temperature=2.5), **HTMX)
    assert "a temperature from 0 to 2" in form.content.decode()  # the same rule, on the form
    assert PoolSettings.load().math_temperature == 0.3


def test_a_form_writes_only_its_own_fields_so_counters_kept_meanwhile_survive():
    with audit.acting_as(audit.CLI):
        call_command("apikey", "create", "campus")
    key = ApiKey.objects.get()
    ApiKey.objects.update(requests=500)  # the gateway flushes usage while the operator edits
    key.rpm = 5
    with audit.acting_as(audit.USER, "admin"):
        audit.save_row(key, fields=["rpm"])
    key.refresh_from_db()
    assert (key.rpm, key.requests) == (5, 500)
    changed = PoolEvent.objects.filter(kind=PoolEvent.CHANGE, actor="admin")
    assert list(changed.values_list("setting", "old_value", "new_value")) == [("rpm", "(none)", "5")]


def test_an_alert_rule_deleted_on_the_dashboard_shows_with_what_it_held(admin_client):
    from pool.models import AlertRule

    rule = AlertRule.objects.create(name="Queue long", metric="queue_depth", threshold=5, duration_s=0)
    admin_client.post(reverse("rule_delete", args=[rule.pk]), **HTMX)
    assert not AlertRule.objects.exists()
    [row] = rows(audit_page(admin_client, setting="deleted"))
    assert "admin user" in row and "Queue long" in row and "threshold 5" in row
