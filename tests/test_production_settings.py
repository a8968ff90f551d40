"""VIBEADMIN_PUBLIC_URL=https://... is the one switch production needs: secure cookies,
HSTS, https redirects, X-Forwarded-Proto believed only from the trusted proxies, and
`manage.py check --deploy` has nothing to warn about."""

from __future__ import annotations

import pytest

from tests.helpers import manage

PRODUCTION = {"VIBEADMIN_PUBLIC_URL": "https://vibe.example.org", "VIBEADMIN_TRUSTED_PROXIES": "10.0.0.5"}


def test_check_deploy_passes_with_the_public_url_set(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", data_dir=tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_it(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", data_dir=tmp_path)
    assert result.returncode == 1
    assert "SECURE_HSTS_SECONDS" in result.stderr and "SESSION_COOKIE_SECURE" in result.stderr


def test_the_public_host_is_allowed_and_its_origin_trusted(tmp_path):
    shown = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; "
        "print(s.ALLOWED_HOSTS[-1], s.CSRF_TRUSTED_ORIGINS, s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)",
        data_dir=tmp_path,
        **PRODUCTION,
    )
    assert shown.stdout.splitlines()[-1] == "vibe.example.org ['https://vibe.example.org'] True 31536000"


@pytest.fixture
def behind_a_proxy(settings):
    settings.VIBEADMIN_TRUSTED_PROXIES = ["10.0.0.5"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    return settings


@pytest.mark.django_db
def test_x_forwarded_proto_is_believed_only_from_a_trusted_proxy(client, behind_a_proxy):
    from_proxy = client.get("/solve/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="10.0.0.5")
    assert from_proxy.status_code == 200
    forged = client.get("/solve/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="203.0.113.9")
    assert forged.status_code == 301 and forged["Location"].startswith("https://")
