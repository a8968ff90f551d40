"""Crashes: a member that dies is restarted with growing back-off, and one that keeps
dying ends `failed` with its last error kept, never in an endless crash loop. Members here
are tests/stub_member.py, so no model is needed."""

import os
import re
import signal

import psutil
import pytest

from pool.models import Member, PoolEvent, states
from pool.services.members import member_add, member_start
from pool.supervisor import process
from testing.helpers import fetch
from tests.helpers import reconcile_until, stub_command, wait_until

pytestmark = pytest.mark.django_db


def starts_logged(member: Member) -> int:
    """How many times the supervisor spawned the member: each spawn opens with this line."""
    return process.log_path(member).read_text().count("--- starting:")


def test_a_member_whose_command_exits_at_once_ends_failed_with_its_last_error_kept(make_supervisor, settings):
    supervisor = make_supervisor(command_for=stub_command("--exit", "error: model file is corrupt"))
    member = member_add()

    reconcile_until(supervisor, lambda: fetch(member).state == states.FAILED, what="the member to fail")

    assert member.pid is None
    assert "model file is corrupt" in member.last_error
    assert "code 3" in member.last_error
    assert "model file is corrupt" in member.log_tail
    assert starts_logged(member) == settings.VIBEADMIN_MAX_RESTARTS + 1


def test_it_backs_off_longer_after_each_crash(make_supervisor, settings):
    supervisor = make_supervisor(command_for=stub_command("--exit", "error: boom"))
    member = member_add()

    reconcile_until(supervisor, lambda: fetch(member).state == states.FAILED, what="the member to fail")

    messages = (
        PoolEvent.objects.filter(member_name=member.name).order_by("id").values_list("message", flat=True)
    )
    back_offs = [found for message in messages for found in re.findall(r"restart \d/\d in [\d.]+s", message)]
    assert back_offs == ["restart 1/2 in 0.05s", "restart 2/2 in 0.1s"]


def test_a_failed_member_stays_failed_until_the_operator_starts_it(make_supervisor):
    supervisor = make_supervisor(command_for=stub_command("--exit", "error: boom"))
    member = member_add()
    reconcile_until(supervisor, lambda: fetch(member).state == states.FAILED, what="the member to fail")
    spawned = starts_logged(member)

    for _ in range(5):
        supervisor.reconcile()

    assert fetch(member).state == states.FAILED
    assert starts_logged(member) == spawned


def test_starting_a_failed_member_gives_it_fresh_retries(make_supervisor):
    broken = {"yes": True}
    exits, answers = stub_command("--exit", "error: boom"), stub_command()
    supervisor = make_supervisor(command_for=lambda *a: (exits if broken["yes"] else answers)(*a))
    member = member_add()
    reconcile_until(supervisor, lambda: fetch(member).state == states.FAILED, what="the member to fail")

    broken["yes"] = False  # the operator fixed the cause
    member_start(member=member)
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="the member to come up")

    assert process.is_alive(member.pid)
    assert member.restarts == 0


def test_a_member_killed_with_sigkill_is_restarted(supervisor):
    member = member_add()
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="the member to be ready")
    first_pid = member.pid

    os.kill(first_pid, signal.SIGKILL)
    reconcile_until(
        supervisor,
        lambda: fetch(member).state == states.READY and member.pid != first_pid,
        what="a new process",
    )

    assert process.is_alive(member.pid)
    assert not process.is_alive(first_pid)
    assert member.restarts == 1
    assert "SIGKILL" in member.last_error


def test_a_member_that_never_answers_is_killed_and_counted_as_a_crash(make_supervisor, settings):
    settings.VIBEADMIN_START_TIMEOUT_S = 0.3
    settings.VIBEADMIN_MAX_RESTARTS = 0
    # The stub listens on a port of its own, so probes at the member's port never answer.
    supervisor = make_supervisor(command_for=lambda m, model, port: stub_command()(m, model, 0))
    member = member_add()

    reconcile_until(supervisor, lambda: fetch(member).state == states.FAILED, what="the member to fail")

    assert "did not answer within 0.3s" in member.last_error


def test_a_local_member_that_stays_unhealthy_is_restarted(supervisor, settings):
    settings.VIBEADMIN_UNHEALTHY_RESTART_S = 0.5
    settings.VIBEADMIN_PROBE_TIMEOUT_S = 0.2
    member = member_add()
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="the member to be ready")
    sick_pid = member.pid
    server_pid = psutil.Process(sick_pid).children()[0].pid  # the server, under its watchdog

    os.kill(server_pid, signal.SIGSTOP)  # alive, but answers nothing: a hung server
    try:
        reconcile_until(
            supervisor, lambda: fetch(member).state == states.UNHEALTHY, what="it to be unhealthy"
        )
        reconcile_until(
            supervisor,
            lambda: fetch(member).state == states.READY and member.pid != sick_pid,
            what="a fresh process to replace the sick one",
        )
    finally:
        for pid in (sick_pid, server_pid):
            if process.is_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert member.restarts == 1
    assert not process.is_alive(sick_pid)
    wait_until(lambda: not process.is_alive(server_pid), 10, what="the hung server to die with its watchdog")
    assert PoolEvent.objects.filter(member_name=member.name, message__contains="unhealthy for 0.5s").exists()


def test_a_clean_start_forgets_the_crashes_of_an_earlier_run(supervisor):
    member = member_add()
    Member.objects.filter(pk=member.pk).update(restarts=2)  # crashed twice before it was stopped
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="the member to be ready")
    assert member.restarts == 0
