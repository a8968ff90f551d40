"""The operator's side of students: a key's limits per student set with `apikey create` and
`apikey update` and on the API keys page (checked on the form), each key's top students
today shown there, and their usage per day downloadable as CSV."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from pool.models import ApiKey, StudentDay
from pool.services.keys import apikey_create

pytestmark = pytest.mark.django_db


def limits(key: ApiKey) -> tuple:
    key.refresh_from_db()
    return (key.user_rpm, key.user_parallel, key.user_tokens_per_day, key.user_tokens_per_month)


def test_limits_per_student_are_set_with_create_and_update(capsys):
    call_command(
        "apikey",
        "create",
        "school",
        "--user-rpm",
        "10",
        "--user-parallel",
        "2",
        "--user-tokens-per-day",
        "5000",
    )
    key = ApiKey.objects.get(name="school")
    assert limits(key) == (10, 2, 5000, None)

    call_command("apikey", "update", "school", "--user-rpm", "none", "--user-tokens-per-month", "90000")
    assert limits(key) == (None, 2, 5000, 90000)
    assert "per student 2 parallel, 5000 tokens/day, 90000 tokens/month" in capsys.readouterr().out
    call_command("apikey", "list")
    assert "none; 2 parallel, 5000 tokens/day, 90000 tokens/month" in capsys.readouterr().out


def test_the_command_line_refuses_limits_per_student_that_could_not_work():
    apikey_create(name="school")
    with pytest.raises(CommandError, match="user-parallel must be 1 or more"):
        call_command("apikey", "update", "school", "--user-parallel", "0")
    with pytest.raises(CommandError, match="user-tokens-per-day cannot be more"):
        call_command(
            "apikey", "update", "school", "--user-tokens-per-day", "10", "--user-tokens-per-month", "5"
        )


def test_the_keys_page_creates_a_key_with_limits_per_student(admin_client):
    response = admin_client.post(
        reverse("key_create"), {"name": "school", "weight": 1, "priority": "interactive", "user_parallel": 3}
    )
    assert response.status_code == 200 and "va-" in response.content.decode()
    assert limits(ApiKey.objects.get(name="school")) == (None, 3, None, None)


def test_the_keys_page_sets_the_limits_per_student_and_refuses_a_day_above_the_month(admin_client):
    key, _ = apikey_create(name="school")
    fields = {"user_rpm": 6, "user_parallel": "", "user_tokens_per_day": 100, "user_tokens_per_month": 1000}
    assert admin_client.post(reverse("key_students", args=[key.pk]), fields).status_code == 302
    assert limits(key) == (6, None, 100, 1000)

    refused = admin_client.post(
        reverse("key_students", args=[key.pk]), {**fields, "user_tokens_per_day": 5000}
    )
    assert refused.status_code == 200 and "could never be used" in refused.content.decode()
    assert limits(key) == (6, None, 100, 1000)


def test_the_keys_page_shows_the_top_students_today_and_their_csv(admin_client):
    key, _ = apikey_create(name="school")
    today = timezone.localdate()
    for user, tokens in (("<b>quiet</b>", 10), ("loud", 900), ("=cmd()", 50)):
        StudentDay.objects.create(
            key=key, user=user, day=today, requests=1, prompt_tokens=0, completion_tokens=tokens
        )

    html = admin_client.get(reverse("keys")).content.decode()
    assert html.index("loud: 900") < html.index("=cmd(): 50") < html.index("&lt;b&gt;quiet&lt;/b&gt;: 10")
    response = admin_client.get(reverse("key_students_csv", args=[key.pk]))
    assert 'filename="students-school.csv"' in response["Content-Disposition"]
    rows = {row["user"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}
    assert rows["loud"]["total_tokens"] == "900" and rows["loud"]["day"] == today.isoformat()
    assert "'=cmd()" in rows  # a spreadsheet does not take it for a formula
