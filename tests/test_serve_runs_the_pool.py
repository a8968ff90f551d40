"""`manage.py serve` with no settings of its own: the default model, two real members
that become ready, `pool status --json` showing them ready from another process, and all
members stopped when serve is stopped."""

import json
import signal

import pytest

from tests.helpers import free_port, manage, member_processes, start_serve, stop_serve, wait_ready

pytestmark = pytest.mark.real_model


@pytest.fixture
def served(data_dir, gemma_model, tmp_path):
    """`manage.py serve` in a child process, its output in a file; stopped with Ctrl-C after
    the test, and killed (with its members' sessions) if that does not end it."""
    # The small gemma GGUF, named: the default 1.5B would take minutes to load here.
    output = tmp_path / "serve.out"
    child = start_serve(
        data_dir,
        log=output,
        VIBEADMIN_PORT=str(free_port()),
        VIBEADMIN_MODEL=str(gemma_model.path),
        VIBEADMIN_CHAT_FORMAT="gemma",
        VIBEADMIN_N_CTX="512",
    )
    yield child, output
    stop_serve(child, data_dir)


def test_serve_brings_two_real_members_to_ready_and_stops_them_on_ctrl_c(served, data_dir):
    child, output = served

    wait_ready(child, output, 2)
    status = manage("pool", "status", "--json", data_dir=data_dir)
    assert [(m["name"], m["state"]) for m in json.loads(status.stdout)] == [("m1", "ready"), ("m2", "ready")]
    assert len(member_processes(data_dir)) == 2

    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=60) == 0, output.read_text()

    assert member_processes(data_dir) == []
    status = manage("pool", "status", "--json", data_dir=data_dir)
    assert {m["state"] for m in json.loads(status.stdout)} == {"stopped"}
