"""A remote member is a server already running at a URL: probed and routable, never
spawned or killed. The remote server here is a tiny http.server answering /openapi.json."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pool.models import Member, states
from pool.services.members import member_add, member_stop
from pool.supervisor import health
from testing.helpers import fetch
from tests.helpers import free_port, reconcile_until

pytestmark = pytest.mark.django_db


class AnswersProbes(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/openapi.json" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class RemoteServer:
    """An HTTP server in a thread of the test, that can go away and come back on its port."""

    def __init__(self):
        self.port = free_port()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), AnswersProbes)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def remote():
    server = RemoteServer()
    server.up()
    yield server
    server.down()


def test_a_remote_member_that_answers_becomes_ready_without_a_process(supervisor, remote):
    member = member_add(url=remote.url + "/v1")

    reconcile_until(
        supervisor, lambda: fetch(member).state == states.READY, what="the remote member to be ready"
    )

    assert member.kind == states.REMOTE
    assert member.pid is None
    assert member.base_url == remote.url


def test_a_remote_member_that_does_not_answer_is_unhealthy(supervisor):
    member = member_add(url=f"http://127.0.0.1:{free_port()}")

    reconcile_until(supervisor, lambda: fetch(member).state == states.UNHEALTHY, what="unhealthy")

    assert "no answer on /health" in member.last_error  # the first path a remote member is tried on
    assert not Member.objects.routable().filter(pk=member.pk).exists()


def test_a_remote_member_that_stops_answering_is_ejected_and_readmitted_when_it_answers_again(
    supervisor, remote
):
    member = member_add(url=remote.url)
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")

    remote.down()
    reconcile_until(supervisor, lambda: fetch(member).state == states.UNHEALTHY, what="ejected")
    remote.up()
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="re-admitted")


def test_stopping_a_remote_member_only_stops_routing_to_it(supervisor, remote):
    member = member_add(url=remote.url)
    reconcile_until(supervisor, lambda: fetch(member).state == states.READY, what="ready")

    member_stop(member=member)
    reconcile_until(supervisor, lambda: fetch(member).state == states.STOPPED, what="stopped")

    assert not Member.objects.routable().filter(pk=member.pk).exists()
    assert health.probe(remote.url, 2.0).ok  # vibeadmin never owned that server
