"""No llama-server outlives vibeadmin, with real members (the small gemma GGUF) and real
supervisors in child processes (llama-server members; llama-cpp-python's server where
llama-server is not built): Ctrl-C of `serve` whose output went into a program that
ended first (`make run | tee log`), SIGTERM of `supervise`, and SIGKILL of `supervise`
(the OOM killer) with no supervisor after it, or with one started again within
VIBEADMIN_ORPHAN_GRACE_S, which adopts the members instead.

Where the supervisor itself must stop its members, the grace is set long (10 minutes), so
that the watchdog's own stop (pool/supervisor/watchdog.py) cannot pass for it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, clean_env, free_port, manage, member_processes, wait_ready, wait_until
from tests.real_members import llama_server_binary

pytestmark = pytest.mark.real_model
# llama-server members, as the default pool runs; llama-cpp-python's where it is not built.
ENGINE = "llama-server" if llama_server_binary() is not None else "llama-cpp-python"
LONG_GRACE = "600"


@pytest.fixture
def node(data_dir, gemma_model, tmp_path):
    """Children of this test: `supervise` (or `serve`) runs, killed with their members after."""
    env = {
        "VIBEADMIN_MODEL": str(gemma_model.path),
        "VIBEADMIN_CHAT_FORMAT": "gemma",
        "VIBEADMIN_N_CTX": "512",
        "VIBEADMIN_SLOTS": "1",
        "VIBEADMIN_ENGINE": ENGINE,
        "VIBEADMIN_MEMBERS": "1",
    }
    children: list[subprocess.Popen] = []

    class Node:
        def add_member(self) -> None:
            done = manage("pool", "add", "--name", "m1", data_dir=data_dir, **env)
            assert done.returncode == 0, done.stderr

        def supervise(self, grace: str) -> subprocess.Popen:
            log = (tmp_path / f"supervise-{len(children)}.out").open("w")
            child = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "supervise"],
                cwd=ROOT,
                env=clean_env(data_dir, VIBEADMIN_ORPHAN_GRACE_S=grace, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            children.append(child)
            return child

        def member(self) -> dict:
            done = manage("pool", "status", "--json", data_dir=data_dir, **env)
            (member,) = json.loads(done.stdout)
            return member

        def wait_ready(self) -> int:
            wait_until(lambda: self.member()["state"] == "ready", 120, interval=1, what="m1 to be ready")
            assert len(member_processes(data_dir)) == 1
            return self.member()["pid"]

    yield Node(), env
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()
    for proc in member_processes(data_dir):
        proc.kill()


def test_ctrl_c_of_serve_whose_output_pipe_closed_first_still_stops_its_members(node, data_dir, tmp_path):
    _, env = node
    output = tmp_path / "tee.out"
    serve = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "serve"],
        cwd=ROOT,
        env=clean_env(data_dir, VIBEADMIN_ORPHAN_GRACE_S=LONG_GRACE, VIBEADMIN_PORT=str(free_port()), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    with output.open("w") as out:
        tee = subprocess.Popen(["cat"], stdin=serve.stdout, stdout=out)
    assert serve.stdout is not None
    serve.stdout.close()  # only `cat` reads the pipe now, as `tee` would
    try:
        wait_ready(serve, output, 1)
        assert len(member_processes(data_dir)) == 1

        tee.send_signal(signal.SIGINT)  # Ctrl-C reaches the whole pipeline; tee ends first
        tee.wait(timeout=10)
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=60)

        wait_until(lambda: member_processes(data_dir) == [], 30, what="serve to stop its member")
    finally:
        for child in (serve, tee):
            if child.poll() is None:
                child.kill()
                child.wait()


def test_sigterm_of_the_supervisor_stops_its_members(node, data_dir):
    helper, _ = node
    helper.add_member()
    supervisor = helper.supervise(LONG_GRACE)
    helper.wait_ready()

    supervisor.send_signal(signal.SIGTERM)
    supervisor.wait(timeout=60)

    assert member_processes(data_dir) == []
    assert helper.member()["state"] == "stopped"


def test_members_of_a_supervisor_killed_outright_stop_by_themselves_after_the_grace(node, data_dir):
    helper, _ = node
    helper.add_member()
    supervisor = helper.supervise("3")
    helper.wait_ready()

    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait()

    wait_until(lambda: member_processes(data_dir) == [], 60, what="the orphaned member to stop by itself")


def test_a_supervisor_started_again_within_the_grace_adopts_the_members(node, data_dir):
    helper, _ = node
    helper.add_member()
    first = helper.supervise("8")
    pid = helper.wait_ready()

    first.send_signal(signal.SIGKILL)
    first.wait()
    second = helper.supervise("8")
    wait_until(lambda: second.poll() is not None or "adopted" in events(data_dir), 60, what="the adoption")
    time.sleep(12)  # past the first supervisor's grace

    assert helper.member()["pid"] == pid
    assert helper.member()["state"] == "ready"
    assert len(member_processes(data_dir)) == 1

    second.send_signal(signal.SIGINT)
    second.wait(timeout=60)
    assert member_processes(data_dir) == []


def events(data_dir) -> str:
    import sqlite3

    with sqlite3.connect(data_dir / "db.sqlite3", timeout=10) as db:
        return "\n".join(row[0] for row in db.execute("select message from pool_poolevent"))
