"""Operators' data stays private: /metrics needs a dashboard session or the scrape token, the
data folder and its secrets are the owner's alone from the start, log-ins are throttled,
and /v1/ answers only under the host names the pages answer under."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import reverse

from pool.models import roles
from pool.services.users import user_create
from tests.asgi_driver import request
from tests.helpers import ROOT, clean_env, free_port, start_serve, stop_serve, wait_until

TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def operator(django_user_model):
    return user_create(name="operator", role=roles.VIEWER, password="right-password")[0]


# --- /metrics -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_are_refused_to_anonymous_and_non_staff_callers(client, django_user_model, settings):
    settings.VIBEADMIN_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token-0123456789").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    client.force_login(django_user_model.objects.create_user("student", password="x"))
    response = client.get("/metrics")
    assert response.status_code == 401
    assert "vibeadmin_" not in response.content.decode()


@pytest.mark.django_db
def test_metrics_are_served_to_the_scrape_token_and_to_staff(client, operator, settings):
    settings.VIBEADMIN_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200 and "vibeadmin_requests_total" in response.content.decode()
    client.force_login(operator)
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_without_a_token_set_no_bearer_opens_metrics(client, settings):
    settings.VIBEADMIN_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 401


# --- files ----------------------------------------------------------------------------------


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_data_folder_and_its_secrets_are_created_for_the_owner_only(tmp_path):
    data_dir = tmp_path / "new" / "data"
    # A permissive umask, as many shells have: the modes must not depend on it.
    result = subprocess.run(
        ["sh", "-c", f'umask 022 && exec "{sys.executable}" manage.py migrate --noinput -v 0'],
        cwd=ROOT,
        env=clean_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert mode(data_dir) == 0o700
    for name in ("db.sqlite3", "secret-key"):
        assert mode(data_dir / name) == 0o600, name
    leftovers = [p.name for p in data_dir.iterdir() if mode(p) & 0o077]
    assert leftovers == [], f"readable by others: {leftovers}"


def test_a_data_folder_left_readable_by_an_older_version_is_made_private_at_start(tmp_path):
    data_dir = tmp_path / "old"
    (data_dir / "logs").mkdir(parents=True)
    for name in ("secret-key", "db.sqlite3", "logs/member-1.log"):
        (data_dir / name).write_text("x")
        os.chmod(data_dir / name, 0o644)
    for folder in (data_dir, data_dir / "logs"):
        os.chmod(folder, 0o755)

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean_env(data_dir),
        capture_output=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert mode(data_dir) == mode(data_dir / "logs") == 0o700
    for name in ("secret-key", "db.sqlite3", "logs/member-1.log"):
        assert mode(data_dir / name) == 0o600, name


@pytest.mark.django_db
def test_the_admin_password_file_is_created_owner_only_whatever_the_umask(settings, tmp_path, monkeypatch):
    from pool.bootstrap import admin_password_file, ensure_admin

    settings.DATA_DIR = tmp_path
    # Its mode must come from its creation: a chmod afterwards leaves a moment it is readable.
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    previous = os.umask(0o022)
    try:
        ensure_admin(lambda line: None, "http://127.0.0.1:8000/login/")
    finally:
        os.umask(previous)
    path = admin_password_file()
    assert mode(path) == 0o600
    assert len(path.read_text().strip()) >= 12


# --- log-in throttling ----------------------------------------------------------------------


@pytest.fixture
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def log_in(client, username: str, password: str, address: str = "192.0.2.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
def test_five_failed_log_ins_lock_the_address_and_the_username_and_the_form_says_so(
    client, operator, fresh_cache
):
    for _ in range(5):
        assert "Please enter a correct username" in log_in(client, "operator", "wrong").content.decode()

    refused = log_in(client, "operator", "right-password")
    assert refused.status_code == 200 and "Try again in 15 minutes" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # The same username from elsewhere, and another username from this address: both wait.
    assert (
        "Try again in"
        in log_in(client, "operator", "right-password", address="198.51.100.7").content.decode()
    )
    assert "Try again in" in log_in(client, "someone", "x").content.decode()
    # Another user from another address is not held up.
    assert "Try again in" not in log_in(client, "someone", "x", address="198.51.100.8").content.decode()


@pytest.mark.django_db
def test_the_admins_log_in_is_throttled_the_same(client, operator, fresh_cache):
    for _ in range(5):
        log_in(client, "operator", "wrong")
    refused = client.post(
        "/admin/login/", {"username": "operator", "password": "right-password"}, REMOTE_ADDR="192.0.2.1"
    )
    assert refused.status_code == 200 and "Try again in" in refused.content.decode()


@pytest.mark.django_db
def test_a_good_log_in_clears_the_failures(client, operator, fresh_cache):
    for _ in range(4):
        log_in(client, "operator", "wrong")
    assert log_in(client, "operator", "right-password").status_code == 302
    client.logout()
    for _ in range(4):
        log_in(client, "operator", "wrong")
    assert log_in(client, "operator", "right-password").status_code == 302


@pytest.mark.django_db
def test_addresses_of_one_ipv6_64_share_one_lock(client, operator, fresh_cache):
    for i in range(5):
        log_in(client, f"nobody{i}", "wrong", address=f"2001:db8:1:2::{i + 1}")

    held = log_in(client, "someone", "x", address="2001:db8:1:2:ffff:ffff:ffff:ffff").content.decode()
    elsewhere = log_in(client, "someone", "x", address="2001:db8:1:3::1").content.decode()

    assert "Try again in" in held
    assert "Try again in" not in elsewhere


@pytest.mark.django_db
def test_a_username_in_full_width_letters_or_another_case_is_the_same_lock(client, operator, fresh_cache):
    for i, name in enumerate(["ｏｐｅｒａｔｏｒ", "OPERATOR", "Operator", "ｏｐｅｒａｔｏｒ ", "operator"]):
        log_in(client, name, "wrong", address=f"198.51.100.{i + 1}")

    refused = log_in(client, "operator", "right-password", address="203.0.113.9")

    assert "Try again in" in refused.content.decode()


def test_a_flood_of_made_up_names_does_not_evict_an_accounts_lock(fresh_cache):
    """Django's default in-process cache keeps 300 entries and drops the oldest third past
    them: a botnet's failures under made-up names would free a locked account to be guessed
    again. The cache is sized so that they do not."""
    from pool.dashboard.login_throttle import MAX_FAILURES, LoginThrottle

    for i in range(MAX_FAILURES):
        LoginThrottle(f"198.51.100.{i + 1}", "operator").failed()
    for i in range(2000):  # 4,000 entries: names and addresses never seen before
        LoginThrottle(f"10.{i // 250}.{i % 250}.1", f"made-up-{i}").failed()

    assert LoginThrottle("203.0.113.9", "operator").wait_s() > 0


# --- Host on /v1/ ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_gateway_refuses_a_host_it_does_not_serve(gateway, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "api.example.org"]
    refused = await request(gateway, "GET", "/v1/openapi.json", headers={"host": "rebound.attacker.example"})
    assert refused.status == 400
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_host"
    for host in ("api.example.org", "API.example.org:8001", "127.0.0.1:8001"):
        assert (await request(gateway, "GET", "/v1/openapi.json", headers={"host": host})).status == 200, host


def status_for(url: str, host: str) -> int:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"Host": host}), timeout=10
        ) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening yet
        return 0


def test_both_doors_of_a_served_app_refuse_a_foreign_host(data_dir, tmp_path):
    """`manage.py serve` as run: daphne's port and the API's own (uvicorn) pass Host on alike."""
    port, api_port = free_port(), free_port()
    child = start_serve(
        data_dir,
        "--no-supervisor",
        log=tmp_path / "serve.out",
        VIBEADMIN_PORT=str(port),
        VIBEADMIN_API_PORT=str(api_port),
        VIBEADMIN_MEMBERS="0",
    )
    try:
        for door in (port, api_port):
            url = f"http://127.0.0.1:{door}/v1/openapi.json"
            wait_until(
                lambda url=url, door=door: status_for(url, f"127.0.0.1:{door}") == 200,
                60,
                what=f"port {door}",
            )
            assert status_for(url, "rebound.attacker.example") == 400
            assert status_for(url, f"localhost:{door}") == 200
    finally:
        stop_serve(child, data_dir)
