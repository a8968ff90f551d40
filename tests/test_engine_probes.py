"""Probes that fit the engine, and a remote member's slots read from its server.

The servers here are tiny http.server stand-ins that answer like llama-server (/health,
/props) or like llama-cpp-python (/openapi.json only) and record what they were asked: exact
and fast. test_engine_llama_server.py does the same against a real llama-server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from pool.models import states
from pool.services.members import member_add, member_restart
from testing.helpers import fetch
from tests.helpers import free_port, reconcile_until

pytestmark = pytest.mark.django_db

KEY = "remote-secret"


class StandIn:
    """An HTTP server in a thread: `routes` maps a path to (status, JSON body); paths listed
    in `keyed` answer 401 unless the request carries `Bearer KEY`."""

    def __init__(self, routes: dict[str, tuple[int, object]], keyed: tuple[str, ...] = ()):
        self.routes, self.keyed = routes, keyed
        self.seen: list[tuple[str, str]] = []  # (path, Authorization header)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                stand_in.seen.append((self.path, auth))
                status, body = stand_in.routes.get(self.path, (404, {"error": "not found"}))
                if self.path in stand_in.keyed and auth != f"Bearer {KEY}":
                    status, body = 401, {"error": {"message": "Invalid API Key"}}
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode() if isinstance(body, str) else json.dumps(body).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> set[str]:
        return {path for path, _ in self.seen}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_ins():
    made: list[StandIn] = []

    def make(routes, keyed=()) -> StandIn:
        made.append(StandIn(routes, keyed))
        return made[-1]

    yield make
    for server in made:
        server.close()


def like_llama_server(slots: int = 4) -> dict:
    return {
        "/health": (200, {"status": "ok"}),
        "/props": (200, {"total_slots": slots, "model_path": "x.gguf"}),
        "/metrics": (200, ""),
    }


def test_a_remote_llama_server_becomes_ready_with_the_slots_its_props_report(supervisor, stand_ins):
    server = stand_ins(like_llama_server(slots=4), keyed=("/props", "/metrics"))
    member = member_add(url=server.url, api_key=KEY)

    reconcile_until(
        supervisor, lambda: fetch(member).state == states.READY, what="the remote llama-server ready"
    )

    assert member.max_inflight == 4
    assert member.slots is None  # nothing was set: the server's own count is used
    assert member.engine == states.LLAMA_SERVER
    assert all(auth == f"Bearer {KEY}" for _, auth in server.seen)  # every probe sends the key


def test_slots_set_by_the_operator_win_over_the_props(supervisor, stand_ins):
    server = stand_ins(like_llama_server(slots=4))
    member = member_add(url=server.url, slots=2)

    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")

    assert member.max_inflight == 2
    assert "/props" not in server.paths()


def test_a_remote_llama_server_that_refuses_the_key_is_unhealthy_and_says_why(supervisor, stand_ins):
    server = stand_ins(like_llama_server(), keyed=("/props",))
    member = member_add(url=server.url, api_key="the-wrong-key")

    reconcile_until(supervisor, lambda: fetch(member).state == states.UNHEALTHY, what="unhealthy")

    assert "HTTP 401 from /props" in member.last_error
    assert "key" in member.last_error


def test_a_remote_llama_cpp_python_server_is_probed_on_openapi_json_never_on_v1_models(supervisor, stand_ins):
    server = stand_ins({"/openapi.json": (200, {"openapi": "3.1.0"}), "/v1/models": (200, {"data": []})})
    member = member_add(url=server.url)

    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")

    assert "/v1/models" not in server.paths()  # it takes llama-cpp-python's model lock
    assert member.max_inflight == 1 and member.engine == states.LLAMA_CPP_PYTHON


def test_a_remote_server_with_only_v1_models_becomes_ready(supervisor, stand_ins):
    server = stand_ins({"/v1/models": (200, {"data": [{"id": "m"}]})})
    member = member_add(url=server.url)

    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")

    assert "/v1/models" in server.paths()


def test_hostile_props_leave_the_slots_alone(supervisor, stand_ins):
    server = stand_ins({"/health": (200, {}), "/props": (200, {"total_slots": 10**9})})
    member = member_add(url=server.url)

    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")

    assert member.max_inflight == 1


def test_a_local_llama_server_member_is_probed_on_health_with_its_own_key(make_supervisor, settings):
    """tests/stub_member.py answers /health and /openapi.json; the key reaches its environment."""
    supervisor = make_supervisor()
    member = member_add(engine=states.LLAMA_SERVER, slots=3)

    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")

    assert member.max_inflight == 3
    assert len(member.api_key) >= 32
    assert psutil.Process(member.pid).environ()["LLAMA_API_KEY"] == member.api_key


def test_each_start_makes_a_new_key(make_supervisor):
    supervisor = make_supervisor()
    member = member_add(engine=states.LLAMA_CPP_PYTHON)
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")
    first = member.api_key

    member_restart(member=member)
    reconcile_until(
        supervisor,
        lambda: fetch(member).state == states.READY and member.api_key != first,
        what="ready again with a new key",
    )

    assert psutil.Process(member.pid).environ()["API_KEY"] == member.api_key


def test_a_llama_server_member_without_the_binary_fails_with_one_clear_line(
    make_supervisor, settings, tmp_path
):
    from pool.supervisor import process

    settings.VIBEADMIN_LLAMA_SERVER = tmp_path / "no-such-llama-server"
    supervisor = make_supervisor(command_for=process.member_command)
    member = member_add(engine=states.LLAMA_SERVER)

    reconcile_until(supervisor, lambda: fetch(member).state == states.FAILED, what="failed")

    assert member.last_error == (
        f"llama-server not found at {tmp_path / 'no-such-llama-server'}: "
        "set VIBEADMIN_LLAMA_SERVER to a llama-server binary"
    )
    supervisor.reconcile()
    assert fetch(member).state == states.FAILED  # no retry every tick: the operator starts it again


def test_a_llama_server_members_own_counters_reach_metrics(supervisor, stand_ins, admin_client):
    routes = like_llama_server()
    routes["/metrics"] = (
        200,
        "# HELP llamacpp:tokens_predicted_total x\nllamacpp:tokens_predicted_total 1234\n"
        "llamacpp:n_decode_total 56\nllamacpp:bogus_total not-a-number\n",
    )
    server = stand_ins(routes)
    member = member_add(url=server.url, name="gpu7")

    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")

    exposed = admin_client.get("/metrics").content.decode()
    assert 'vibeadmin_member_engine_series{member="gpu7",series="tokens_predicted_total"} 1234.0' in exposed
    assert 'vibeadmin_member_engine_series{member="gpu7",series="n_decode_total"} 56.0' in exposed
    assert "bogus" not in exposed
