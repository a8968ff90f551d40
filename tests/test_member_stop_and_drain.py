"""Stopping is graceful: drain (no new requests, in-flight ones finish up to a deadline),
then SIGTERM, then SIGKILL once the grace period is over. Members are stub scripts."""

import signal

import pytest

from pool import inflight
from pool.models import Member, PoolEvent, states
from pool.services.members import (
    member_add,
    member_drain,
    member_remove,
    member_restart,
    member_start,
    member_stop,
)
from pool.supervisor import process
from testing.helpers import fetch
from tests.helpers import reconcile_until, stub_command

pytestmark = pytest.mark.django_db


def ready_member(supervisor) -> Member:
    member = member_add()
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="the member to be ready")
    return member


def popen_of(member: Member):
    """The child's Popen, kept by the test to read how the process ended after it is reaped."""
    return process._children[member.pid]


def test_drain_waits_for_an_in_flight_request(supervisor):
    member = ready_member(supervisor)
    inflight.acquire(member.pk)
    try:
        member_drain(member=member)
        reconcile_until(supervisor, lambda: fetch(member).state == states.DRAINING, what="draining")
        for _ in range(10):
            supervisor.reconcile()
        assert fetch(member).state == states.DRAINING
        assert process.is_alive(member.pid)
    finally:
        inflight.release(member.pk)

    pid = member.pid
    reconcile_until(supervisor, lambda: fetch(member).state == states.STOPPED, what="the member to stop")
    assert not process.is_alive(pid)
    assert member.pid is None and member.port is None
    assert PoolEvent.objects.filter(message=f"{member.name}: draining -> stopped (drained)").exists()


def test_drain_stops_the_member_anyway_once_its_deadline_passes(supervisor):
    member = ready_member(supervisor)
    inflight.acquire(member.pk)
    try:
        member_drain(member=member, timeout_s=0.2)
        reconcile_until(supervisor, lambda: fetch(member).state == states.STOPPED, what="the member to stop")
    finally:
        inflight.release(member.pk)

    assert PoolEvent.objects.filter(message__contains="deadline passed with 1 in flight").exists()


def test_stop_during_a_long_drain_shortens_the_wait(supervisor, settings):
    settings.VIBEADMIN_STOP_DRAIN_S = 0.2
    member = ready_member(supervisor)
    inflight.acquire(member.pk)
    try:
        member_drain(member=member, timeout_s=300)
        reconcile_until(supervisor, lambda: fetch(member).state == states.DRAINING, what="draining")
        member_stop(member=member)
        reconcile_until(supervisor, lambda: fetch(member).state == states.STOPPED, what="the member to stop")
    finally:
        inflight.release(member.pk)

    assert PoolEvent.objects.filter(message__contains="deadline passed with 1 in flight").exists()


def test_a_draining_member_started_again_goes_back_to_ready_with_the_same_process(supervisor):
    member = ready_member(supervisor)
    pid = member.pid
    inflight.acquire(member.pk)
    try:
        member_drain(member=member)
        reconcile_until(supervisor, lambda: fetch(member).state == states.DRAINING, what="draining")
        member_start(member=member)
        reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready again")
    finally:
        inflight.release(member.pk)

    assert member.pid == pid and process.is_alive(pid)


def test_stop_ends_a_well_behaved_member_with_sigterm(supervisor):
    member = ready_member(supervisor)
    child = popen_of(member)

    member_stop(member=member)
    reconcile_until(supervisor, lambda: fetch(member).state == states.STOPPED, what="the member to stop")

    assert child.returncode == -signal.SIGTERM
    assert "ignored SIGTERM" not in member.last_error


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(make_supervisor):
    supervisor = make_supervisor(command_for=stub_command("--ignore-sigterm"))
    member = ready_member(supervisor)
    child = popen_of(member)

    member_stop(member=member)
    reconcile_until(supervisor, lambda: fetch(member).state == states.STOPPED, what="the member to stop")

    assert child.returncode == -signal.SIGKILL
    assert member.last_error == "ignored SIGTERM; killed after 1s"


def test_restart_replaces_the_process_with_a_new_one(supervisor):
    member = ready_member(supervisor)
    old_pid = member.pid

    member_restart(member=member)
    reconcile_until(
        supervisor,
        lambda: fetch(member).state == states.READY and member.pid != old_pid,
        what="a new process",
    )

    assert not process.is_alive(old_pid)
    assert process.is_alive(member.pid)
    assert not member.restart_requested


def test_remove_stops_the_member_and_deletes_it(supervisor):
    member = ready_member(supervisor)
    pid = member.pid

    member_remove(member=member)
    reconcile_until(
        supervisor, lambda: not Member.objects.filter(pk=member.pk).exists(), what="the row to go"
    )

    assert not process.is_alive(pid)


def test_a_stopped_member_started_again_becomes_ready(supervisor):
    member = ready_member(supervisor)
    member_stop(member=member)
    reconcile_until(supervisor, lambda: fetch(member).state == states.STOPPED, what="the member to stop")

    member_start(member=member)
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready again")

    assert process.is_alive(member.pid)
