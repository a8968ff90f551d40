"""No member outlives its supervisor: each runs under a watchdog (pool/supervisor/watchdog.py)
that holds a lease on the supervisor and stops the member VIBEADMIN_ORPHAN_GRACE_S after
the lease ends, unless a restarted supervisor adopts it first; a signal reaches the member
once, through the watchdog; a watchdog killed outright takes its member with it.

Here the member is a tiny child script (it sleeps, and says when SIGTERM came), started
through process.spawn as the supervisor starts members; the real llama-server members
and real supervisors are tests/test_member_lifetime_real.py's.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest

from pool.models import Member
from pool.supervisor import process
from tests.helpers import wait_until

SLEEPER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (print('got SIGTERM', flush=True), sys.exit(3)))\n"
    "print('serving', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def member(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.VIBEADMIN_ORPHAN_GRACE_S = 1.0
    settings.VIBEADMIN_STOP_GRACE_S = 5.0
    started: list[int] = []

    def start() -> tuple[int, psutil.Process]:
        pid = process.spawn(Member(name="w1"), [sys.executable, "-c", SLEEPER])
        started.append(pid)
        server = wait_until(lambda: psutil.Process(pid).children(), 10, what="the member to start")[0]
        wait_until(lambda: "serving" in log(tmp_path), 10, what="the member to serve")
        return pid, server

    yield start
    for pid in started:
        with_children = (
            [psutil.Process(pid), *psutil.Process(pid).children()] if psutil.pid_exists(pid) else []
        )
        for proc in with_children:
            proc.kill()
        process.forget(pid)


def log(folder) -> str:
    return (folder / "logs" / "member-w1.log").read_text()


def gone(proc: psutil.Process) -> bool:
    return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


def test_a_member_whose_supervisor_let_go_stops_after_the_grace(member, tmp_path):
    pid, server = member()

    os.close(process._leases[pid])  # as the kernel does when the supervisor dies
    del process._leases[pid]

    wait_until(lambda: gone(server), 10, what="the orphaned member to stop")
    wait_until(lambda: process.exit_code(pid) is not None, 5, what="its watchdog to exit")
    assert "got SIGTERM" in log(tmp_path)
    assert "no supervisor adopted this member" in log(tmp_path)


def test_a_member_adopted_within_the_grace_keeps_running_until_that_lease_ends(member, settings):
    pid, server = member()
    os.close(process._leases.pop(pid))

    assert process.adopt_lease(pid)  # a restarted supervisor, within the grace
    time.sleep(3 * settings.VIBEADMIN_ORPHAN_GRACE_S)
    assert not gone(server)

    os.close(process._leases.pop(pid))
    wait_until(lambda: gone(server), 10, what="the member to stop once the adopter let go too")


def test_a_stop_reaches_the_member_once_and_the_watchdog_exits_as_it_did(member, tmp_path):
    pid, server = member()

    assert process.stop(pid, 5) == "stopped"

    assert gone(server)
    assert log(tmp_path).count("got SIGTERM") == 1


def test_a_watchdog_killed_outright_takes_its_member_with_it(member):
    pid, server = member()

    process.kill(pid)

    wait_until(lambda: gone(server), 10, what="the member to die with its watchdog")
    wait_until(lambda: process.exit_code(pid) == -signal.SIGKILL, 5, what="the watchdog's end")
