"""Scaling changes how many local members want to run; the supervisor converges to it.
Members are stub scripts."""

import pytest

from pool.models import Member, states
from pool.services import ActionError
from pool.services.members import pool_scale
from pool.supervisor import process
from tests.helpers import reconcile_until

pytestmark = pytest.mark.django_db


def states_by_name() -> dict[str, str]:
    return dict(Member.objects.values_list("name", "state"))


def test_scaling_up_starts_members_until_all_are_ready(supervisor):
    pool_scale(count=3)

    reconcile_until(
        supervisor, lambda: states_by_name() == {"m1": "ready", "m2": "ready", "m3": "ready"}, what="3 ready"
    )

    assert all(process.is_alive(pid) for pid in Member.objects.values_list("pid", flat=True))


def test_scaling_down_drains_the_newest_and_keeps_the_rest(supervisor):
    pool_scale(count=3)
    reconcile_until(supervisor, lambda: set(states_by_name().values()) == {states.READY}, what="3 ready")
    pids = dict(Member.objects.values_list("name", "pid"))

    pool_scale(count=1)
    reconcile_until(
        supervisor,
        lambda: states_by_name() == {"m1": "ready", "m2": "stopped", "m3": "stopped"},
        what="1 ready",
    )

    assert Member.objects.get(name="m1").pid == pids["m1"]
    assert not process.is_alive(pids["m2"]) and not process.is_alive(pids["m3"])


def test_scaling_up_again_starts_stopped_members_before_adding_new_ones(supervisor):
    pool_scale(count=2)
    reconcile_until(supervisor, lambda: set(states_by_name().values()) == {states.READY}, what="2 ready")
    pool_scale(count=1)
    reconcile_until(supervisor, lambda: states_by_name()["m2"] == states.STOPPED, what="m2 to stop")

    pool_scale(count=2)
    reconcile_until(supervisor, lambda: states_by_name() == {"m1": "ready", "m2": "ready"}, what="m2 back")


def test_scaling_to_the_number_already_running_does_nothing(supervisor):
    pool_scale(count=2)

    assert pool_scale(count=2) == []


def test_scaling_past_the_member_limit_is_refused_and_adds_nobody(settings, db):
    settings.VIBEADMIN_MAX_MEMBERS = 2

    with pytest.raises(ActionError, match="at most 2 members"):
        pool_scale(count=3)
    assert not Member.objects.exists()
