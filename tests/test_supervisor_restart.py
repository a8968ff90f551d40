"""After its own restart the supervisor clears members whose process is gone and starts
them again. (Adopting a process that still runs needs a real llama.cpp server: see
test_supervisor_lifecycle.py.)"""

import os
import signal

import pytest

from pool.models import Member, states
from pool.services.members import member_add
from pool.supervisor import process
from testing.helpers import fetch
from tests.helpers import reconcile_until

pytestmark = pytest.mark.django_db


def test_a_member_whose_process_died_meanwhile_is_cleared_and_started_again(make_supervisor):
    before = make_supervisor()
    member = member_add()
    reconcile_until(before, lambda: fetch(member).state == states.READY, what="ready")
    old_pid = member.pid
    os.kill(old_pid, signal.SIGKILL)
    process._children.pop(old_pid).wait(timeout=10)  # gone, and no longer anyone's child

    after = make_supervisor()
    after.adopt()

    assert fetch(member).state == states.STOPPED
    assert member.pid is None
    reconcile_until(after, lambda: fetch(member).state == states.READY, what="started again")
    assert member.pid != old_pid and process.is_alive(member.pid)


def test_a_pid_now_used_by_another_program_is_not_adopted(make_supervisor):
    member = member_add()
    # A row left by a supervisor that died long ago; the pid now belongs to this very test.
    Member.objects.filter(pk=member.pk).update(state=states.READY, pid=os.getpid(), port=8)

    make_supervisor().adopt()

    assert fetch(member).state == states.STOPPED
    assert member.pid is None
