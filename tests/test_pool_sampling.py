"""The pool's resources and member states are sampled by a loop of their own, so alert rules
and /metrics see them whether or not anyone has the dashboard open."""

from __future__ import annotations

import asyncio

import pytest

from pool.loops import alerts, resources, runtime
from pool.models import Member, roles
from pool.services.users import user_create


@pytest.mark.django_db
def test_a_sample_feeds_the_alert_rules_without_a_dashboard_snapshot(monkeypatch):
    monkeypatch.setattr(resources, "latest", None)
    assert alerts.measure()["cpu_percent"] is None
    runtime.sample_pool()
    assert alerts.measure()["cpu_percent"] is not None


@pytest.mark.django_db
def test_a_sample_exports_each_members_state(client, django_user_model):
    Member.objects.create(name="m1", state="ready")
    runtime.sample_pool()
    client.force_login(user_create(name="ops", role=roles.VIEWER)[0])
    exposed = client.get("/metrics").content.decode()
    assert 'vibeadmin_member_state{member="m1",state="ready"} 1.0' in exposed
    assert 'vibeadmin_member_state{member="m1",state="stopped"} 0.0' in exposed


async def test_the_background_work_includes_the_sampling_loop():
    tasks = runtime.start_background(asyncio.get_running_loop())
    try:
        assert "pool-sampling" in {task.get_name() for task in tasks}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
