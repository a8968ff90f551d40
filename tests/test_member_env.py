"""Members start with only the environment variables they need: none of vibeadmin's
secrets (the secret key, the database and Redis URLs, the metrics token) reach them.
Read from /proc/PID/environ of a member the supervisor's own spawn started (its process is
tests/stub_member.py: the same spawn starts llama-server, whose environment is the same)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pool.models import Member, states
from pool.supervisor import process
from tests.helpers import STUB_MEMBER, answers, free_port, wait_until

SECRETS = {
    "VIBEADMIN_SECRET_KEY": "s3cret-key-of-the-web-app",
    "DATABASE_URL": "postgres://vibeadmin:pw@db/vibeadmin",
    "REDIS_URL": "redis://:pw@redis:6379/0",
    "VIBEADMIN_METRICS_TOKEN": "scrape-token-0123456789abcdef",
}


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


@pytest.mark.django_db
def test_a_started_member_sees_only_the_allowed_variables_and_its_key(fast_settings, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANG", "C.UTF-8")
    member = Member.objects.create(
        name="env", kind=states.LOCAL, engine=states.LLAMA_SERVER, api_key="member-key-0123456789", gpu=0
    )
    port = free_port()

    pid = process.spawn(member, [sys.executable, str(STUB_MEMBER), "--port", str(port)])
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), 30, what="the member to start")
        seen = environ_of(pid)
    finally:
        process.stop(pid, 1.0)

    assert set(seen) <= {*process.MEMBER_ENV, "LLAMA_API_KEY"}, sorted(set(seen) - set(process.MEMBER_ENV))
    assert seen["LLAMA_API_KEY"] == "member-key-0123456789"
    assert seen["CUDA_VISIBLE_DEVICES"] == "0"
    assert seen["LANG"] == "C.UTF-8"
    assert not [value for value in seen.values() if value in SECRETS.values()]


@pytest.mark.real_model
@pytest.mark.django_db
def test_a_real_llama_server_member_sees_none_of_vibeadmins_secrets(fast_settings, monkeypatch, gemma_model):
    try:
        process.llama_server_binary()
    except process.MemberCommandError:
        pytest.skip("llama-server is not built (bin/build-llama-server)")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    member = Member.objects.create(
        name="env-real",
        kind=states.LOCAL,
        engine=states.LLAMA_SERVER,
        api_key="member-key-0123456789",
        n_ctx=512,
    )
    port = free_port()

    pid = process.spawn(member, process.member_command(member, gemma_model, port))
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), 120, what="llama-server to load")
        seen = environ_of(pid)
    finally:
        process.stop(pid, 5.0)

    assert set(seen) <= {*process.MEMBER_ENV, "LLAMA_API_KEY"}, sorted(set(seen) - set(process.MEMBER_ENV))
    assert not [value for value in seen.values() if value in SECRETS.values()]
