"""A bad setting stops start-up with one line that names the variable: no traceback, and
nothing created on the way (no database)."""

import pytest

from tests.helpers import manage, one_line_error


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("VIBEADMIN_MEMBERS", "two", "VIBEADMIN_MEMBERS must be a whole number, got 'two'"),
        ("VIBEADMIN_MEMBERS", "-1", "VIBEADMIN_MEMBERS must be at least 0, got -1"),
        ("VIBEADMIN_PORT", "99999", "VIBEADMIN_PORT must be at most 65535, got 99999"),
        ("VIBEADMIN_PROBE_INTERVAL_S", "often", "VIBEADMIN_PROBE_INTERVAL_S must be a number, got 'often'"),
        ("VIBEADMIN_DEBUG", "maybe", "VIBEADMIN_DEBUG must be true or false, got 'maybe'"),
        (
            "DATABASE_URL",
            "mysql://db/vibe",
            "DATABASE_URL must be a sqlite or postgres or postgresql or pgsql URL",
        ),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must be a redis or rediss or unix URL"),
        (
            "VIBEADMIN_TRUSTED_PROXIES",
            "10.0.0.1,lb",
            "VIBEADMIN_TRUSTED_PROXIES must list IP addresses or networks, got 'lb'",
        ),
        (
            "VIBEADMIN_PUBLIC_URL",
            "vibe.example.org",
            "VIBEADMIN_PUBLIC_URL must be an http:// or https:// address",
        ),
        (
            "VIBEADMIN_PUBLIC_URL",
            "https://vibe.example.org/app",
            "VIBEADMIN_PUBLIC_URL must be a scheme and host only",
        ),
        (
            "VIBEADMIN_PUBLIC_URL",
            "https://vibe.example.org",
            "VIBEADMIN_PUBLIC_URL is https:// but VIBEADMIN_TRUSTED_PROXIES names no proxy",
        ),
        ("VIBEADMIN_METRICS_TOKEN", "short", "VIBEADMIN_METRICS_TOKEN must be at least 16 characters"),
    ],
)
def test_a_bad_value_stops_serve_with_one_line_naming_the_variable(tmp_path, variable, value, message):
    result = manage("serve", data_dir=tmp_path, **{variable: value})

    assert one_line_error(result).startswith(f"vibeadmin: configuration error: {message}")
    assert not (tmp_path / "db.sqlite3").exists()


def test_the_pool_command_reports_a_bad_setting_the_same_way(tmp_path):
    result = manage("pool", "status", data_dir=tmp_path, VIBEADMIN_MEMBERS="two")

    assert (
        one_line_error(result)
        == "vibeadmin: configuration error: VIBEADMIN_MEMBERS must be a whole number, got 'two'"
    )
