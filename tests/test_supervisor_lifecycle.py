"""Real members: `python -m llama_cpp.server` processes serving the default GGUF, started,
probed, restarted and adopted by the supervisor."""

import os
import signal

import psutil
import pytest

from pool.model_file import ModelChoice
from pool.models import Member, PoolEvent, states
from pool.services.members import member_add, pool_scale
from pool.supervisor import process
from testing.helpers import fetch
from tests.helpers import reconcile_until
from tests.real_members import chat_request

pytestmark = [pytest.mark.django_db, pytest.mark.real_model]

# Loading the model takes a second or two alone; give a shared, busy machine room.
LOAD_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def llama_cpp_python_members(settings):
    """llama-cpp-python's lifecycle; test_engine_llama_server.py has llama-server's."""
    settings.VIBEADMIN_ENGINE = "llama-cpp-python"


@pytest.fixture
def real_supervisor(make_supervisor, gemma_model):
    return make_supervisor(model=gemma_model, command_for=process.member_command)


def all_ready() -> bool:
    return set(Member.objects.values_list("state", flat=True)) == {states.READY}


def test_members_start_with_the_model_given_and_become_ready(real_supervisor, gemma_model):
    pool_scale(count=2)

    reconcile_until(real_supervisor, all_ready, LOAD_TIMEOUT_S, what="2 real members to be ready")

    members = list(Member.objects.all())
    assert len({m.port for m in members}) == 2
    for member in members:
        cmdline = psutil.Process(member.pid).children()[0].cmdline()  # the server, under its watchdog
        assert cmdline[1:3] == ["-m", "llama_cpp.server"]
        assert cmdline[cmdline.index("--model") + 1] == str(gemma_model.path)
        assert cmdline[cmdline.index("--port") + 1] == str(member.port)
        # Without this a second request silently cuts a streamed reply short.
        assert cmdline[cmdline.index("--interrupt_requests") + 1] == "false"
        assert cmdline[cmdline.index("--chat_format") + 1] == "gemma"


def test_a_model_llama_cpp_cannot_load_ends_failed_with_its_error(make_supervisor, tmp_path, settings):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))  # passes the start-up check, fails in llama.cpp
    supervisor = make_supervisor(
        model=ModelChoice(broken, "broken", "", False), command_for=process.member_command
    )
    member = member_add()

    reconcile_until(supervisor, lambda: fetch(member).state == states.FAILED, LOAD_TIMEOUT_S, what="failed")

    assert member.last_error == f"exited with code 1: ValueError: Failed to load model from file: {broken}"
    assert member.restarts == settings.VIBEADMIN_MAX_RESTARTS + 1


def test_a_real_member_killed_with_sigkill_is_restarted_and_ready_again(real_supervisor):
    member = member_add()
    reconcile_until(
        real_supervisor, lambda: fetch(member).state == states.READY, LOAD_TIMEOUT_S, what="ready"
    )
    first_pid = member.pid

    os.kill(first_pid, signal.SIGKILL)
    reconcile_until(
        real_supervisor,
        lambda: fetch(member).state == states.READY and member.pid != first_pid,
        LOAD_TIMEOUT_S,
        what="a new ready process",
    )

    assert member.restarts == 1
    assert member.last_error.startswith("killed by SIGKILL")
    assert "llama" in member.log_tail.lower()  # the server's own output is kept for operators


def test_a_new_supervisor_adopts_a_member_process_that_still_runs(
    make_supervisor, real_supervisor, gemma_model
):
    member = member_add()
    reconcile_until(
        real_supervisor, lambda: fetch(member).state == states.READY, LOAD_TIMEOUT_S, what="ready"
    )
    pid = member.pid
    # The new supervisor runs as if in a new OS process: the member is not its child.
    child = process._children.pop(pid)
    restarted = make_supervisor(model=gemma_model, command_for=process.member_command)

    try:
        restarted.adopt()
        for _ in range(5):
            restarted.reconcile()

        assert fetch(member).state == states.READY
        assert member.pid == pid and process.is_alive(pid)
        assert PoolEvent.objects.filter(message=f"{member.name}: adopted running process {pid}").exists()
    finally:
        restarted.shutdown()  # stops the adopted member; reaping it is still up to its parent, this test
        child.wait(timeout=30)


def test_a_real_member_refuses_requests_without_its_own_key(real_supervisor):
    """Its port is reachable around the gateway (VIBEADMIN_MEMBER_BIND=0.0.0.0 on a
    multi-host pool): only the key the supervisor gave it opens it."""
    member = member_add()
    reconcile_until(
        real_supervisor, lambda: fetch(member).state == states.READY, LOAD_TIMEOUT_S, what="ready"
    )

    assert chat_request(member.base_url, "") == 401
    assert chat_request(member.base_url, "a-guess") == 401
    assert chat_request(member.base_url, member.api_key) == 200
